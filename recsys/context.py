"""Request context: parse ``time=evening,device=mobile`` and turn it into the one-row frame the towers read
(a ``timestamp`` plus the dataset's context columns). Shared by retrieve, batch scoring and serving.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from recsys.data import schema as S
from recsys.errors import RecsysError

#: start hour of each part of the day (UTC unless the timestamps carry a zone): the one time-of-day rule that
#: request parsing, the rendered texts (``recsys.text``) and the demo data (``recsys.data.demo``) share
TIME_OF_DAY_STARTS = {"night": 0, "morning": 6, "afternoon": 12, "evening": 18}
TIMES_OF_DAY = list(TIME_OF_DAY_STARTS)
#: representative hour of each time-of-day bucket (what ``time=evening`` in a request sets the hour to)
TIME_OF_DAY_HOURS = {"night": 2, "morning": 9, "afternoon": 15, "evening": 20}
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def time_of_day(hour: int, starts: Mapping[str, int] | None = None) -> str:
    """The part of the day an hour falls in: the bucket with the latest start at or before ``hour`` (before the
    earliest start: the last bucket, wrapping over midnight). ``starts`` defaults to ``TIME_OF_DAY_STARTS``."""
    ordered = sorted((starts or TIME_OF_DAY_STARTS).items(), key=lambda kv: kv[1])
    name = ""
    for label, start in ordered:
        if hour % 24 >= start:
            name = label
    return name or ordered[-1][0]


#: UTC hour (0-23) -> its part of the day under the default starts
HOUR_TO_TIME_OF_DAY = [time_of_day(h) for h in range(24)]


def time_of_day_expr(col: str = S.TIMESTAMP) -> pl.Expr:
    """Polars expression mapping a timestamp column to its part of the day (String), by the default starts."""
    return pl.col(col).dt.hour().cast(pl.Int64).replace_strict(list(range(24)), HOUR_TO_TIME_OF_DAY, return_dtype=pl.String)
TIME_KEYS = ("time", "time_of_day", "hour", "weekday", "timestamp")


def parse_context(text: str | None) -> dict[str, str]:
    """'time=evening,device=mobile' -> {'time': 'evening', 'device': 'mobile'}."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise RecsysError(f"context entry {part.strip()!r} must look like key=value (e.g. time=evening,device=mobile)")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def context_frame(context: Mapping[str, Any] | None, columns: Sequence[str], *, now: dt.datetime | None = None) -> pl.DataFrame:
    """One-row frame: the request time (``now`` adjusted by time/hour/weekday keys) and the context columns.

    Unknown keys are an error that lists the keys this model knows, so a typo never silently does nothing.
    """
    context = dict(context or {})
    ts = now or dt.datetime.now(dt.timezone.utc)
    if "timestamp" in context:
        try:
            ts = dt.datetime.fromisoformat(str(context.pop("timestamp")))
        except ValueError as exc:
            raise RecsysError(f"context timestamp is not ISO 8601: {exc}") from None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.timezone.utc)
    for key in ("time", "time_of_day"):
        if key in context:
            label = str(context.pop(key)).lower()
            if label not in TIME_OF_DAY_HOURS:
                raise RecsysError(f"context {key}={label!r}: expected one of {', '.join(TIME_OF_DAY_HOURS)}")
            ts = ts.replace(hour=TIME_OF_DAY_HOURS[label], minute=0, second=0, microsecond=0)
    if "hour" in context:
        raw = context.pop("hour")
        try:
            hour = int(raw)
            if not 0 <= hour <= 23:
                raise ValueError
        except (TypeError, ValueError, OverflowError):  # OverflowError: int() of an infinite float
            raise RecsysError(f"context hour={raw!r}: expected an integer 0-23") from None
        ts = ts.replace(hour=hour)
    if "weekday" in context:
        raw = str(context.pop("weekday")).lower()
        match = [i for i, d in enumerate(WEEKDAYS) if d.startswith(raw[:3])] if len(raw) >= 3 else []
        if not match:
            raise RecsysError(f"context weekday={raw!r}: expected a day name such as saturday or sat")
        ts = ts + dt.timedelta(days=(match[0] - ts.weekday()) % 7)
    unknown = set(context) - set(columns)
    if unknown:
        known = ", ".join([*TIME_KEYS, *columns])
        raise RecsysError(f"unknown context key(s) {', '.join(sorted(unknown))}; this model knows: {known}")
    row: dict[str, Any] = {S.TIMESTAMP: [ts]}
    for c in columns:
        row[c] = [None if context.get(c) is None else str(context[c])]
    frame = pl.DataFrame(row).with_columns(pl.col(S.TIMESTAMP).dt.cast_time_unit("us").dt.convert_time_zone("UTC"))
    return frame.cast({c: pl.String for c in columns})
