"""IdLookup gives the rows a polars left join on the non-strictly cast ids gives, for every id and query type."""

import numpy as np
import polars as pl
import pytest

from recsys.service.ids import IdLookup


def join_rows(ids: pl.Series, values: list) -> np.ndarray:
    """The lookup the service did before: cast the query to the ids' dtype (nulls where it fails), left join."""
    frame = pl.DataFrame({"id": ids, "row": np.arange(len(ids), dtype=np.int64)})
    q = pl.DataFrame({"id": pl.Series(values).cast(ids.dtype, strict=False)})
    return q.join(frame, on="id", how="left", maintain_order="left")["row"].fill_null(-1).to_numpy().astype(np.int64)


INT_IDS = pl.Series("id", [40, 7, 1_000_000_007, -3, 12], dtype=pl.Int64)
STR_IDS = pl.Series("id", ["B00X", "a1", "12", "", "zz"], dtype=pl.String)

QUERIES = [
    [12, 7, 40, 99, -3, 12],  # python ints, a repeat, an unknown
    list(np.array([1_000_000_007, 5, 7], dtype=np.int64)),  # numpy scalars
    np.array([7, 12], dtype=np.uint16),
    ["12", "7", "x"],  # strings for integer ids: cast
    [7.0, 12.5],  # floats: cast
    [True, 12],
    [2**70, 7],  # beyond int64
    [None, 7],
    ["a1", "zz", "nope", ""],
    [12, "a1"],
]


ID_COLUMNS = [INT_IDS, INT_IDS.cast(pl.Int32), pl.Series("id", [40, 7, 1_000_000_007, 12], dtype=pl.UInt64), STR_IDS]


@pytest.mark.parametrize("ids", ID_COLUMNS, ids=["i64", "i32", "u64", "str"])
@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
def test_rows_match_the_join(ids, query):
    try:
        expected = join_rows(ids, list(query))
    except Exception as exc:  # noqa: BLE001 - a query polars cannot even build fails the same way through the lookup
        with pytest.raises(type(exc)):
            IdLookup(ids).rows(query)
        return
    got = IdLookup(ids).rows(query)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


def test_fast_path_for_int_and_string_ids():
    """Integer and string ids answer without a polars query (the join frame is never built for their own type)."""
    for ids, query in ((INT_IDS, [7, 12, 99]), (STR_IDS, ["zz", "q"])):
        lookup = IdLookup(ids)
        assert list(lookup.rows(query)) == list(join_rows(ids, query))
        assert lookup._frame is None


def test_empty():
    assert IdLookup(INT_IDS).rows([]).tolist() == []
    assert IdLookup(INT_IDS.clear()).rows([7, 8]).tolist() == [-1, -1]
