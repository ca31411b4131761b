"""MovieLens importer: the real 100K (shared fixture, skipped when absent) and a synthetic 100K-format directory."""

from __future__ import annotations

import polars as pl

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.data.importers.movielens import import_movielens


def test_movielens_100k_counts_and_columns(movielens_100k_dataset: Dataset) -> None:
    ds = movielens_100k_dataset
    assert ds.interactions.height == 100_000
    assert ds.items.height == 1_682
    assert ds.users is not None and ds.users.height == 943
    assert ds.interactions[S.USER_ID].n_unique() == 943
    assert ds.interactions.schema[S.TIMESTAMP] == S.TIMESTAMP_DTYPE
    assert ds.interactions.schema[S.USER_ID] == pl.Int64 and ds.items.schema[S.ITEM_ID] == pl.Int64
    assert {"title", "genres", "year"} <= set(ds.items.columns)
    assert {"age", "gender", "occupation"} <= set(ds.users.columns)
    assert ds.manifest["counts"] == {"interactions": 100_000, "items": 1_682, "users": 943, "profiles": 943}


def test_movielens_100k_titles_and_order(movielens_100k_dataset: Dataset) -> None:
    ds = movielens_100k_dataset
    suspects = ds.items.filter(pl.col("title") == "The Usual Suspects")
    assert suspects.height == 1
    assert suspects["year"][0] == 1995
    first = ds.interactions.row(0, named=True)
    assert (first[S.USER_ID], first[S.ITEM_ID]) == (196, 242)
    assert ds.interactions[S.RATING][0] == 3.0


def test_synthetic_100k_import(synthetic_ml100k_dir, tmp_path) -> None:
    ds, source = import_movielens(synthetic_ml100k_dir)
    saved = ds.save(tmp_path / "ds", source=source)
    assert source["variant"] == "100k"
    assert saved.interactions.height == 10
    assert saved.interactions.row(0)[:2] == (3, 2)  # source order kept, not sorted by time
    items = saved.items.sort(S.ITEM_ID)
    assert items["title"].to_list() == ["The Invented Film", "Another Story", "A Caf\xe9 Days", "Untitled"]
    assert items["year"].to_list() == [1999, 2001, 1987, None]
    assert items["genres"].to_list() == [["Action"], ["Comedy", "Drama"], ["Drama"], ["unknown"]]


def test_reimport_is_byte_identical(synthetic_ml100k_dir, tmp_path) -> None:
    paths = []
    for k in range(2):
        ds, source = import_movielens(synthetic_ml100k_dir)
        paths.append(ds.save(tmp_path / f"ds{k}", source=source).path)
    for name in (S.INTERACTIONS_FILE, S.ITEMS_FILE, S.USERS_FILE):
        assert (paths[0] / name).read_bytes() == (paths[1] / name).read_bytes()
