"""Request input parsing beyond the schema: ids as the dataset's id type, context keys the model knows."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import polars as pl
from fastapi import HTTPException

from recsys.context import TIME_KEYS

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: An integer id as text: what ``int()`` accepts minus spaces, ``_`` and non-ASCII digits (``"1_0"`` is not ``10``).
_INTEGER = re.compile(r"-?[0-9]+")


def parse_id(value: Any, dtype: pl.DataType, what: str) -> int | str:
    """A JSON or path value as the dataset's id type; a mismatch is a 422 naming the expected type. Integer ids as
    text must be exactly ASCII digits: ``" 1 "``, ``"1_0"`` or ``"١"`` (Arabic-Indic one) are refused, not read as 1, 10, 1."""
    if dtype == pl.Int64:
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, str) and _INTEGER.fullmatch(value):
            number = int(value)
        else:
            number = None
        if number is None:
            raise HTTPException(
                422, f"{what} id {value!r} is not an integer (ASCII digits, optional leading '-', no spaces or '_'), but this dataset's {what} ids are integers"
            )
        if not INT64_MIN <= number <= INT64_MAX:
            raise HTTPException(422, f"{what} id {value!r} is out of the 64-bit integer range")
        return number
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise HTTPException(422, f"{what} id {value!r} must be a string")
    return str(value)


def check_context(context: Mapping[str, Any], known: list[str]) -> dict[str, Any]:
    """Refuse unknown keys (listing the known ones) and timestamps out of range, before the model sees them."""
    unknown = sorted(set(context) - set(TIME_KEYS) - set(known))
    if unknown:
        raise HTTPException(422, f"unknown context key(s) {', '.join(unknown)}; this model knows: {', '.join([*TIME_KEYS, *known])}")
    if "timestamp" in context:
        try:
            ts = dt.datetime.fromisoformat(str(context["timestamp"]))
        except ValueError as exc:
            raise HTTPException(422, f"context timestamp is not ISO 8601: {exc}") from None
        if not 1900 <= ts.year <= 2999:
            raise HTTPException(422, f"context timestamp {context['timestamp']!r} is out of range (years 1900-2999)")
    return dict(context)




def finite(value: Any) -> Any:
    """NaN/inf floats (not valid JSON) become None."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value
