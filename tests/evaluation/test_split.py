"""The temporal leave-one-out and cold-start splits: no leakage, source-order ties."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from recsys.data.dataset import Dataset
from recsys.data.types import Sequences
from recsys.evaluation.split import cold_start, encode, leave_one_out


def _ds(rows: list[tuple[int, int, int]], n_items: int = 10) -> Dataset:
    inter = pl.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "ts": [r[2] for r in rows]}
    ).select("user_id", "item_id", pl.from_epoch("ts", time_unit="s").dt.cast_time_unit("us").dt.replace_time_zone("UTC").alias("timestamp"))
    items = pl.DataFrame({"item_id": list(range(n_items)), "title": [f"item {i}" for i in range(n_items)]})
    return Dataset(inter, items)


def test_ties_keep_source_order_not_item_id_order():
    # user 1's last two interactions share a timestamp; source order puts item 9 before item 2
    ds = _ds([(1, 5, 100), (1, 7, 200), (1, 9, 300), (1, 2, 300)])
    sp = leave_one_out(encode(ds))
    assert sp.test.targets.tolist() == [2]
    assert sp.validation.targets.tolist() == [9]
    assert sp.train.sequences.row(0).tolist() == [5, 7]
    assert sp.test.history.row(0).tolist() == [5, 7, 9]


def test_out_of_order_source_rows_are_sorted_by_time():
    ds = _ds([(1, 3, 300), (1, 1, 100), (1, 2, 200), (2, 4, 50), (2, 5, 60), (2, 6, 70)])
    sp = leave_one_out(encode(ds))
    assert sp.test.targets.tolist() == [3, 6]
    assert sp.validation.targets.tolist() == [2, 5]


def test_users_with_fewer_than_three_interactions_are_dropped():
    ds = _ds([(1, 1, 1), (1, 2, 2), (2, 1, 1), (2, 2, 2), (2, 3, 3)])
    enc = encode(ds)
    assert enc.user_ids.tolist() == [2]


def test_no_target_or_later_interaction_in_any_history():
    rng = np.random.default_rng(0)
    rows = [(int(u), int(i), int(t)) for u, i, t in zip(rng.integers(0, 30, 600), rng.integers(0, 40, 600), rng.integers(0, 50, 600))]
    ds = _ds(rows, n_items=40)
    enc = encode(ds)
    sp = leave_one_out(enc)
    ev = enc.events
    for cases, offset in ((sp.validation, 2), (sp.test, 1)):
        for r in range(len(cases)):
            u = cases.users[r]
            user_ev = ev.filter(pl.col("u") == u)
            target_pos = user_ev.height - offset
            assert cases.history.row(r).tolist() == user_ev["i"].to_list()[:target_pos]
    # train never contains a validation or test interaction position
    assert (sp.train.sequences.lengths == sp.test.history.lengths - 1).all()


def test_cold_start_split_removes_cold_items_from_training():
    rng = np.random.default_rng(1)
    rows = [(int(u), int(i), int(t)) for u, i, t in zip(rng.integers(0, 50, 2000), rng.integers(0, 60, 2000), rng.integers(0, 10_000, 2000))]
    enc = encode(_ds(rows, n_items=60))
    cs = cold_start(enc)
    assert len(cs.cold_items) == round(0.1 * 60)
    assert not np.isin(cs.train.sequences.items, cs.cold_items).any()
    assert np.isin(cs.cases.targets, cs.cold_items).all()
    for r in range(len(cs.cases)):
        assert not np.isin(cs.cases.history.row(r), cs.cold_items).any()
        excl = set(cs.cases.exclude.row(r).tolist())
        assert set(cs.cases.history.row(r).tolist()) <= excl


def test_cold_start_draw_follows_the_protocol():
    rng = np.random.default_rng(2)
    rows = [(int(u), int(i), int(t)) for u, i, t in zip(rng.integers(0, 50, 3000), rng.integers(0, 80, 3000), rng.integers(0, 10_000, 3000))]
    enc = encode(_ds(rows, n_items=80))
    counts = np.bincount(enc.events["i"].to_numpy(), minlength=80)
    eligible = np.sort(enc.item_ids[counts >= 5])
    expected = np.random.default_rng(0).choice(eligible, int(round(0.1 * len(eligible))), replace=False)
    assert sorted(enc.item_ids[cold_start(enc).cold_items].tolist()) == sorted(expected.tolist())


@pytest.mark.parametrize("n", [1, 2, 5])
def test_sequences_last_and_take(n):
    seq = Sequences(np.array([0, 3, 3, 7]), np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.int32))
    last = seq.last(n)
    assert [last.row(r).tolist() for r in range(3)] == [[1, 2, 3][-n:], [], [4, 5, 6, 7][-n:]]
    assert [seq.take(np.array([2, 0])).row(r).tolist() for r in range(2)] == [[4, 5, 6, 7], [1, 2, 3]]
    assert seq.append(np.array([9, 8, 7])).row(1).tolist() == [8]
