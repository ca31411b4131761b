"""Dataset validation: every problem is reported with file, column, 1-based data row and value.

All checks are polars expressions over whole columns; the first offending row is located only once a check
has failed.
"""

from __future__ import annotations

import polars as pl

from recsys.data import schema as S
from recsys.errors import DataValidationError

REQUIRED = {
    "interactions": (S.USER_ID, S.ITEM_ID, S.TIMESTAMP),
    "items": (S.ITEM_ID,),
    "users": (S.USER_ID,),
}


def _first_row(frame: pl.DataFrame, mask: pl.Expr) -> tuple[int, object]:
    hit = frame.with_row_index("__row").filter(mask).head(1)
    return int(hit["__row"][0]) + 1, hit


def check_columns(frame: pl.DataFrame, table: str, file: str) -> None:
    if frame.height == 0:
        raise DataValidationError(f"the {table} table is empty", file=file)
    for col in REQUIRED[table]:
        if col not in frame.columns:
            raise DataValidationError(
                f"required column is missing from the {table} table (found: {', '.join(frame.columns)})",
                file=file,
                column=col,
            )


def check_ids(frame: pl.DataFrame, col: str, file: str, *, unique: bool) -> None:
    dtype = frame.schema[col]
    if dtype not in S.ID_DTYPES:
        raise DataValidationError(f"ids must be integers or strings, found type {dtype}", file=file, column=col)
    nulls = frame[col].is_null()
    if nulls.any():
        row, _ = _first_row(frame, pl.col(col).is_null())
        raise DataValidationError("id is null", file=file, column=col, row=row)
    if dtype == pl.String:
        if (frame[col].str.strip_chars() == "").any():
            row, _ = _first_row(frame, pl.col(col).str.strip_chars() == "")
            raise DataValidationError("id is empty", file=file, column=col, row=row)
    if unique and frame[col].is_duplicated().any():
        row, hit = _first_row(frame, pl.col(col).is_duplicated() & ~pl.col(col).is_first_distinct())
        raise DataValidationError("duplicate id", file=file, column=col, row=row, value=hit[col][0])


def check_references(inter: pl.DataFrame, ref: pl.DataFrame, col: str, file: str, ref_file: str) -> None:
    if inter.schema[col] != ref.schema[col]:
        raise DataValidationError(
            f"type {inter.schema[col]} does not match {ref_file}'s {col} type {ref.schema[col]}", file=file, column=col
        )
    unknown = ~inter[col].is_in(ref[col].implode())
    if unknown.any():
        row, hit = _first_row(inter, ~pl.col(col).is_in(ref[col].implode()))
        n = int(unknown.sum())
        raise DataValidationError(
            f"{n} interaction(s) point at ids that are not in {ref_file}", file=file, column=col, row=row, value=hit[col][0]
        )


def validate_dataset(
    inter: pl.DataFrame,
    items: pl.DataFrame,
    users: pl.DataFrame | None,
    origin: dict[str, str] | None = None,
) -> None:
    """Raise DataValidationError on the first problem; return None when the dataset is well-formed."""
    origin = origin or {}
    f_int = origin.get("interactions", S.INTERACTIONS_FILE)
    f_items = origin.get("items", S.ITEMS_FILE)
    f_users = origin.get("users", S.USERS_FILE)

    check_columns(inter, "interactions", f_int)
    check_columns(items, "items", f_items)
    check_ids(items, S.ITEM_ID, f_items, unique=True)
    check_ids(inter, S.USER_ID, f_int, unique=False)
    check_ids(inter, S.ITEM_ID, f_int, unique=False)
    ts = inter.schema[S.TIMESTAMP]
    if ts != S.TIMESTAMP_DTYPE:
        raise DataValidationError(f"timestamps must be {S.TIMESTAMP_DTYPE}, found {ts}", file=f_int, column=S.TIMESTAMP)
    if inter[S.TIMESTAMP].is_null().any():
        row, _ = _first_row(inter, pl.col(S.TIMESTAMP).is_null())
        raise DataValidationError("timestamp is null", file=f_int, column=S.TIMESTAMP, row=row)
    for col in (S.RATING, S.WEIGHT):
        if col in inter.columns:
            if not inter.schema[col].is_numeric():
                raise DataValidationError(f"must be numeric, found {inter.schema[col]}", file=f_int, column=col)
            if inter[col].is_null().any():
                row, _ = _first_row(inter, pl.col(col).is_null())
                raise DataValidationError("value is null", file=f_int, column=col, row=row)
    check_references(inter, items, S.ITEM_ID, f_int, f_items)
    if users is not None:
        check_columns(users, "users", f_users)
        check_ids(users, S.USER_ID, f_users, unique=True)
        check_references(inter, users, S.USER_ID, f_int, f_users)
