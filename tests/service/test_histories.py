"""Prepared per-chunk histories (recsys.service.histories): exactly ``UserHistories``' histories, built atomically, reused
while the dataset is unchanged and rebuilt when it changes."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import polars as pl
import pytest

from recsys.data.dataset import Dataset
from recsys.errors import RecsysError
from recsys.service.histories import HISTORIES_KIND, HistoryStore, _count_users, prepare_histories
from recsys.manifest import read_manifest
from recsys.service.histories import UserHistories

SOURCE = {"name": "histories-test"}


def _dataset(tmp_path, *, string_ids: bool, users: int = 60, seed: int = 0, name: str = "ds") -> Dataset:
    """A log in shuffled source order with many same-second ties and items the model's catalogue lacks."""
    rng = np.random.default_rng(seed)
    n = users * 15
    u = rng.integers(0, users, n)
    item = rng.integers(0, 40, n)
    # 5 distinct seconds only: most of a user's interactions tie, so the source row decides their order
    ts = [dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 5, n)]
    uid = pl.Series([f"user-{x}" for x in u]) if string_ids else pl.Series(u * 7919 % 100_003)  # ids not in row order
    iid = pl.Series([f"i{x}" for x in item]) if string_ids else pl.Series(item + 1000)
    inter = pl.DataFrame({"user_id": uid, "item_id": iid, "timestamp": pl.Series(ts).dt.cast_time_unit("us")})
    items = pl.DataFrame({"item_id": iid.unique().sort(), "title": [f"t{k}" for k in range(iid.n_unique())]})
    return Dataset(inter, items).save(tmp_path / name, source=SOURCE)


def _catalogue(ds: Dataset) -> pl.Series:
    """A model catalogue that knows only some items (in its own order): unknown items must drop out of histories."""
    return ds.items["item_id"].sample(fraction=0.7, seed=1, shuffle=True)


def _assert_same(full: UserHistories, lazy: UserHistories, users: list) -> None:
    for a, b in zip(full.rows(users), lazy.rows(users), strict=True):
        assert a >= 0 and b >= 0
        (cat_a, seen_a), (cat_b, seen_b) = full.history(int(a)), lazy.history(int(b))
        np.testing.assert_array_equal(cat_a, cat_b)
        assert seen_a.tolist() == seen_b.tolist()


@pytest.mark.parametrize("string_ids", [False, True], ids=["int-ids", "string-ids"])
@pytest.mark.parametrize("bucket_rows", [10**9, 97], ids=["one-sort", "spilled-buckets"])
def test_lazy_histories_equal_in_memory_histories(tmp_path, string_ids, bucket_rows):
    ds = _dataset(tmp_path, string_ids=string_ids)
    cat = _catalogue(ds)
    full = UserHistories(ds, cat)
    store = prepare_histories(Dataset.load(ds.path, with_interactions=False), tmp_path / "h", bucket_rows=bucket_rows)
    assert (len(store.parts) == 1) == (bucket_rows > ds.interactions.height)
    users = store.user_ids()
    assert users.equals(full.user_ids.sort())
    assert store.user_dtype == ds.interactions.schema["user_id"]
    # contiguous chunks (``--users all``) and a scattered, reversed subset with an unknown user (a --users file)
    for lo in range(0, len(users), 7):
        chunk = users.slice(lo, 7).to_list()
        _assert_same(full, store.histories(chunk, cat), chunk)
    subset = users.to_list()[::5][::-1]
    lazy = store.histories([*subset, "nobody" if string_ids else -1], cat)
    _assert_same(full, lazy, subset)
    assert lazy.rows(["nobody" if string_ids else -1])[0] == -1
    assert lazy.user_ids.len() == len(subset)


@pytest.mark.parametrize("string_ids", [False, True], ids=["int-ids", "string-ids"])
def test_user_counts_merge_partial_counts_of_every_batch(tmp_path, string_ids):
    """Counted batch by batch (users scattered over the whole log) with many merges: the same counts as one group_by."""
    ds = _dataset(tmp_path, string_ids=string_ids)
    expected = ds.interactions.group_by("user_id").agg(pl.len().cast(pl.Int64).alias("n")).sort("user_id")
    for batch_rows, merge_rows in ((7, 5), (100, 10**9), (10**6, 1)):
        counts = _count_users(ds.interactions_file, batch_rows=batch_rows, merge_rows=merge_rows)
        assert counts.equals(expected), (batch_rows, merge_rows)
    assert expected["n"].sum() == ds.interactions.height and expected.height > 40


def test_ties_follow_source_rows_not_item_ids(tmp_path):
    ts = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    inter = pl.DataFrame({
        "user_id": [2, 1, 1, 1, 2],
        "item_id": [30, 30, 10, 20, 10],
        "timestamp": [ts, ts, ts, ts - dt.timedelta(seconds=1), ts],
    }).with_columns(pl.col("timestamp").dt.cast_time_unit("us"))
    ds = Dataset(inter, pl.DataFrame({"item_id": [10, 20, 30]})).save(tmp_path / "ds", source=SOURCE)
    for bucket_rows in (10**9, 1):
        store = prepare_histories(Dataset.load(ds.path, with_interactions=False), tmp_path / f"h{bucket_rows}", bucket_rows=bucket_rows)
        assert store.read([1, 2]).rows() == [(1, 20), (1, 30), (1, 10), (2, 30), (2, 10)]


def test_preparation_is_reused_and_rebuilt_when_the_dataset_changes(tmp_path):
    ds = _dataset(tmp_path, string_ids=False)
    root = tmp_path / "out" / ".histories"
    first = prepare_histories(Dataset.load(ds.path, with_interactions=False), root)
    assert first.path == root / ds.fingerprint
    part = first.path / first.parts[0]["file"]
    stamp = (part.stat().st_ino, part.stat().st_mtime_ns, read_manifest(first.path, HISTORIES_KIND)["created"])
    again = prepare_histories(Dataset.load(ds.path, with_interactions=False), root)
    assert again.path == first.path
    assert (part.stat().st_ino, part.stat().st_mtime_ns, read_manifest(again.path, HISTORIES_KIND)["created"]) == stamp

    # a new dataset at the same path: new fingerprint, new preparation, the old one removed
    changed = _dataset(tmp_path, string_ids=False, users=50, seed=5)
    assert changed.fingerprint != ds.fingerprint
    rebuilt = prepare_histories(Dataset.load(changed.path, with_interactions=False), root)
    assert [p.name for p in root.iterdir()] == [changed.fingerprint]
    assert rebuilt.n_users == changed.interactions["user_id"].n_unique()
    _assert_same(UserHistories(changed, _catalogue(changed)), rebuilt.histories(rebuilt.user_ids(), _catalogue(changed)), rebuilt.user_ids().to_list())

    # the interactions file rewritten in place (manifest untouched): rebuilt too
    swapped = changed.interactions.with_columns(pl.col("item_id").reverse())
    swapped.write_parquet(changed.interactions_file)
    os.utime(changed.interactions_file, ns=(1, 1))
    store = prepare_histories(Dataset.load(changed.path, with_interactions=False), root)
    assert store.manifest["source"]["mtime_ns"] == 1
    assert store.read(store.user_ids())["item_id"].sort().equals(swapped["item_id"].sort())

    # what is not an older preparation of this dataset path survives a rebuild: a file the user put there, another
    # dataset's preparation
    (root / "notes.txt").write_text("mine")
    other = _dataset(tmp_path, string_ids=False, users=30, seed=7, name="other")
    kept = prepare_histories(Dataset.load(other.path, with_interactions=False), root)
    newer = _dataset(tmp_path, string_ids=False, users=40, seed=6)
    prepare_histories(Dataset.load(newer.path, with_interactions=False), root)
    assert sorted(p.name for p in root.iterdir()) == sorted(["notes.txt", kept.path.name, newer.fingerprint])
    assert (root / "notes.txt").read_text() == "mine"


def test_failed_preparation_leaves_the_previous_one_and_no_debris(tmp_path):
    ds = _dataset(tmp_path, string_ids=True)
    root = tmp_path / ".histories"
    good = prepare_histories(Dataset.load(ds.path, with_interactions=False), root)
    before = sorted(p.name for p in good.path.iterdir())
    lazy = Dataset.load(ds.path, with_interactions=False)
    ds.interactions_file.write_bytes(b"PAR1 this is not parquet")  # damaged after loading: the build itself fails
    with pytest.raises(RecsysError, match=r"interactions.parquet: cannot prepare histories"):
        prepare_histories(lazy, root)
    assert [p.name for p in root.iterdir()] == [ds.fingerprint]  # no temporary directory left behind
    assert sorted(p.name for p in good.path.iterdir()) == before
    assert HistoryStore(good.path).user_ids().len() == ds.interactions["user_id"].n_unique()


def test_dataset_loaded_without_interactions_refuses_full_histories(tmp_path):
    ds = _dataset(tmp_path, string_ids=False)
    lazy = Dataset.load(ds.path, with_interactions=False)
    assert lazy.interactions.height == 0 and lazy.interactions.schema == ds.interactions.schema
    with pytest.raises(RecsysError, match="without its interactions"):
        UserHistories(lazy, ds.items["item_id"])
