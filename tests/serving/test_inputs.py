"""Request inputs beyond the schema: ids read as the dataset's id type (exact ASCII integers), context keys and
timestamps checked before the model sees them, non-finite numbers made JSON-safe."""

from __future__ import annotations

import math

import polars as pl
import pytest
from fastapi import HTTPException

from recsys.serving.inputs import check_context, finite, parse_id


@pytest.mark.parametrize("value, expected", [(7, 7), ("7", 7), ("-12", -12), (2**63 - 1, 2**63 - 1), ("0042", 42)])
def test_integer_ids(value, expected):
    assert parse_id(value, pl.Int64, "user") == expected


@pytest.mark.parametrize("value, message", [(" 1 ", "not an integer"), ("1_0", "not an integer"), ("\u0661", "not an integer"), (True, "not an integer"),
                                            ("1.0", "not an integer"), (2**63, "64-bit"), (str(-(2**63) - 1), "64-bit")])  # fmt: skip
def test_bad_integer_ids_are_422_naming_the_kind(value, message):
    with pytest.raises(HTTPException) as exc:
        parse_id(value, pl.Int64, "item")
    assert exc.value.status_code == 422 and message in exc.value.detail and exc.value.detail.startswith("item id")


def test_string_ids():
    assert parse_id(5, pl.String, "item") == "5" and parse_id("B00X", pl.String, "item") == "B00X"
    for bad in (True, 1.5, None, ["a"]):
        with pytest.raises(HTTPException) as exc:
            parse_id(bad, pl.String, "user")
        assert exc.value.status_code == 422 and "must be a string" in exc.value.detail


def test_context_keys_and_timestamps():
    ctx = {"device": "tv", "time": "evening", "timestamp": "2024-05-01T20:00:00"}
    assert check_context(ctx, ["device"]) == ctx
    with pytest.raises(HTTPException) as exc:
        check_context({"device": "tv", "moon": "full", "aura": 1}, ["device"])
    assert exc.value.status_code == 422 and "aura, moon" in exc.value.detail and "device" in exc.value.detail
    for ts, message in (("yesterday", "ISO 8601"), ("3000-01-01T00:00:00", "out of range"), ("1899-12-31", "out of range")):
        with pytest.raises(HTTPException, match=message):
            check_context({"timestamp": ts}, [])


def test_finite_replaces_non_finite_numbers_at_any_depth():
    value = {"a": math.nan, "b": [1.5, math.inf, {"c": -math.inf}], "d": "nan", "e": 3}
    assert finite(value) == {"a": None, "b": [1.5, None, {"c": None}], "d": "nan", "e": 3}
