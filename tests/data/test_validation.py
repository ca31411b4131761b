"""Every class of bad input gives a DataValidationError whose message names the file, the column and the row."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.data.importers.table import import_table
from recsys.data.validate import validate_dataset
from recsys.errors import DataValidationError, RecsysError

ITEMS = "item_id,title\n1,One\n2,Two\n"
USERS = "user_id,age\n1,30\n2,40\n"


def _files(tmp_path: Path, inter: str | bytes, items: str = ITEMS, users: str | None = None) -> dict:
    i = tmp_path / "inter.csv"
    i.write_bytes(inter if isinstance(inter, bytes) else inter.encode())
    it = tmp_path / "items.csv"
    it.write_text(items)
    out = {"interactions": i, "items": it}
    if users is not None:
        u = tmp_path / "users.csv"
        u.write_text(users)
        out["users"] = u
    return out


def _error(tmp_path: Path, inter: str | bytes, items: str = ITEMS, users: str | None = None, **kw) -> DataValidationError:
    f = _files(tmp_path, inter, items, users)
    with pytest.raises(DataValidationError) as info:
        import_table(f["interactions"], f["items"], f.get("users"), **kw)
    return info.value


def _assert_names(err: DataValidationError, file: str, column: str | None, row: int | None, value: object = None) -> None:
    msg = str(err)
    assert file in msg and err.file is not None and err.file.endswith(file)
    if column is not None:
        assert f"column '{column}'" in msg and err.column == column
    if row is not None:
        assert f"row {row}" in msg and err.row == row
    if value is not None:
        assert repr(value) in msg and err.value == value


# --------------------------------------------------------------------------------------------- file level


def test_non_utf8_csv(tmp_path) -> None:
    err = _error(tmp_path, b"user_id,item_id,timestamp\n1,1,0\n2,2,caf\xe9\n")
    _assert_names(err, "inter.csv", None, 2)
    assert "UTF-8" in str(err) and "0xe9" in str(err) and "line 3" in str(err)


def test_empty_file(tmp_path) -> None:
    err = _error(tmp_path, b"")
    _assert_names(err, "inter.csv", None, None)
    assert "empty" in str(err)


def test_header_only(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\n")
    _assert_names(err, "inter.csv", None, None)
    assert "no data rows" in str(err)


def test_unknown_extension(tmp_path) -> None:
    p = tmp_path / "x.xlsx"
    p.write_text("nope")
    with pytest.raises(RecsysError, match="x.xlsx.*unknown file type"):
        import_table(p, p)


def test_not_parquet(tmp_path) -> None:
    p = tmp_path / "inter.parquet"
    p.write_text("user_id,item_id\n1,1\n")
    it = tmp_path / "items.csv"
    it.write_text(ITEMS)
    with pytest.raises(DataValidationError, match="inter.parquet.*not a readable parquet"):
        import_table(p, it)


def test_malformed_csv(tmp_path) -> None:
    err = _error(tmp_path, 'user_id,item_id,timestamp\n1,1,0\n"a,b",1,0\n1,2,3,4,5\n')
    _assert_names(err, "inter.csv", None, 3, "1,2,3,4,5")
    assert "more fields than the header" in str(err)


# --------------------------------------------------------------------------------------------- columns


def test_missing_column_lists_found_columns(tmp_path) -> None:
    err = _error(tmp_path, "userId,item_id,timestamp\n1,1,0\n")
    _assert_names(err, "inter.csv", "user_id", None)
    assert "found: userId, item_id, timestamp" in str(err) and "--map user_id=COLUMN" in str(err)


def test_missing_item_id_in_items(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\n1,1,0\n", items="movie,title\n1,One\n")
    _assert_names(err, "items.csv", "item_id", None)
    assert "found: movie, title" in str(err)


def test_mapping_to_absent_column(tmp_path) -> None:
    f = _files(tmp_path, "user_id,item_id,timestamp\n1,1,0\n")
    with pytest.raises(RecsysError, match="no file has a column 'customer'"):
        import_table(f["interactions"], f["items"], mapping={"user_id": "customer"})
    with pytest.raises(DataValidationError) as info:
        import_table(f["interactions"], f["items"], mapping={"items.item_id": "movie"})
    _assert_names(info.value, "items.csv", "movie", None)
    assert "found: item_id, title" in str(info.value)


def test_order_column_absent_or_not_numeric(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,seq\n1,1,3\n", order_column="position")
    _assert_names(err, "inter.csv", "position", None)
    err = _error(tmp_path, "user_id,item_id,seq\n1,1,3\n2,2,third\n", order_column="seq")
    _assert_names(err, "inter.csv", "seq", 2, "third")
    err = _error(tmp_path, "user_id,item_id,seq\n1,1,3\n2,2,\n", order_column="seq")
    _assert_names(err, "inter.csv", "seq", 2)


# --------------------------------------------------------------------------------------------- ids


def test_null_user_id(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\n1,1,0\n,2,1\n")
    _assert_names(err, "inter.csv", "user_id", 2)
    assert "null" in str(err)


def test_blank_string_id(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\na,1,0\n  ,2,1\n")
    _assert_names(err, "inter.csv", "user_id", 2)
    assert "empty" in str(err)


def test_null_id_reported_under_source_column_name(tmp_path) -> None:
    err = _error(tmp_path, "customer,item_id,timestamp\n1,1,0\n1,2,1\n,1,2\n", mapping={"user_id": "customer"})
    _assert_names(err, "inter.csv", "customer", 3)


def test_duplicate_item_id(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\n1,1,0\n", items="item_id,title\n1,One\n2,Two\n1,Again\n")
    _assert_names(err, "items.csv", "item_id", 3, 1)
    assert "duplicate" in str(err)


def test_unknown_item(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\n1,1,0\n1,2,1\n2,7,2\n2,8,3\n")
    _assert_names(err, "inter.csv", "item_id", 3, 7)
    assert "2 interaction(s)" in str(err) and "items.csv" in str(err)


def test_unknown_user(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\n1,1,0\n3,2,1\n", users=USERS)
    _assert_names(err, "inter.csv", "user_id", 2, 3)
    assert "users.csv" in str(err)


def test_duplicate_user_profile(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\n1,1,0\n", users="user_id,age\n1,3\n1,4\n")
    _assert_names(err, "users.csv", "user_id", 2, 1)


# --------------------------------------------------------------------------------------------- values


def test_unparseable_timestamp(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\n1,1,2024-01-01\n1,2,2024-01-02\n2,1,yesterday\n")
    _assert_names(err, "inter.csv", "timestamp", 3, "yesterday")
    assert "ISO 8601" in str(err)


def test_impossible_date(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,when\n1,1,2024-02-30T10:00:00\n", mapping={"timestamp": "when"})
    _assert_names(err, "inter.csv", "when", 1, "2024-02-30T10:00:00")


def test_timestamp_not_matching_format(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\n1,1,01/02/2020\n1,2,2020-02-01\n", timestamp_format="%d/%m/%Y")
    _assert_names(err, "inter.csv", "timestamp", 2, "2020-02-01")
    assert "%d/%m/%Y" in str(err)


def test_missing_timestamp(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp\n1,1,5\n1,2,\n")
    _assert_names(err, "inter.csv", "timestamp", 2)


def test_rating_not_a_number(tmp_path) -> None:
    err = _error(tmp_path, "user_id,item_id,timestamp,rating\n1,1,0,4\n1,2,1,five\n")
    _assert_names(err, "inter.csv", "rating", 2, "five")


def test_timestamp_and_order_column_conflict(tmp_path) -> None:
    f = _files(tmp_path, "user_id,item_id,timestamp,seq\n1,1,0,1\n")
    with pytest.raises(RecsysError, match="--order-column is only for files without a timestamp column"):
        import_table(f["interactions"], f["items"], order_column="seq")


# --------------------------------------------------------------------------------------------- validate_dataset directly


def test_validate_dataset_rejects_naive_timestamps() -> None:
    inter = pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [0]})
    items = pl.DataFrame({"item_id": [1]})
    with pytest.raises(DataValidationError, match="column 'timestamp'.*timestamps must be"):
        validate_dataset(inter, items, None, origin={"interactions": "x.parquet"})


def test_failed_save_keeps_existing_dataset(tmp_path) -> None:
    good_inter = pl.DataFrame({"user_id": [1], "item_id": [1]}).with_columns(
        pl.lit(0).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(S.TIMESTAMP)
    )
    items = pl.DataFrame({"item_id": [1]})
    out = Dataset(good_inter, items).save(tmp_path / "ds", source={"name": "t"})
    before = {p.name: p.read_bytes() for p in out.path.iterdir()}
    bad = good_inter.with_columns(pl.lit(9).alias("item_id"))
    with pytest.raises(DataValidationError):
        Dataset(bad, items).save(tmp_path / "ds", source={"name": "t"})
    assert {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
