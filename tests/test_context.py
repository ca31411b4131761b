"""The one time-of-day/weekday rule (recsys.context) as parsing, rendering and the demo data read it."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from recsys.context import (
    TIME_OF_DAY_HOURS,
    TIMES_OF_DAY,
    WEEKDAYS,
    context_frame,
    parse_context,
    time_of_day,
    time_of_day_expr,
)
from recsys.errors import RecsysError
from recsys.text import TextTemplates
from recsys.text import time_of_day as text_time_of_day


def test_time_of_day_buckets_and_custom_starts():
    assert [time_of_day(h) for h in (0, 5, 6, 11, 12, 17, 18, 23)] == [
        "night", "night", "morning", "morning", "afternoon", "afternoon", "evening", "evening"
    ]
    starts = {"day": 8, "night": 20}
    assert [time_of_day(h, starts) for h in (3, 8, 19, 20)] == ["night", "day", "day", "night"]  # wraps over midnight
    assert text_time_of_day(3, TextTemplates(times_of_day=starts)) == "night"
    assert all(text_time_of_day(h) == time_of_day(h) for h in range(24))


def test_the_polars_expression_agrees_with_the_function():
    stamps = [dt.datetime(2024, 1, 1, h, 30, tzinfo=dt.timezone.utc) for h in range(24)]
    got = pl.DataFrame({"timestamp": stamps}).select(time_of_day_expr("timestamp"))["timestamp"].to_list()
    assert got == [time_of_day(h) for h in range(24)]


def test_a_request_time_lands_in_its_own_bucket():
    now = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)  # a Wednesday
    for label in TIMES_OF_DAY:
        ts = context_frame({"time": label, "weekday": "sat"}, [], now=now)["timestamp"][0]
        assert time_of_day(ts.hour) == label and ts.hour == TIME_OF_DAY_HOURS[label]
        assert WEEKDAYS[ts.weekday()] == "saturday"


def test_bad_context_names_the_entry():
    with pytest.raises(RecsysError, match="time='brunch'"):
        context_frame({"time": "brunch"}, [])
    with pytest.raises(RecsysError, match="key=value"):
        parse_context("evening")
