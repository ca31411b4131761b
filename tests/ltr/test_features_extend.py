"""``FeatureTables.extend``: items the tables were never fitted on get neutral or column-derived features, every
per-item array is padded (also one a later change adds), and ``build_features`` reads the extended catalogue."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import polars as pl
import pytest

from recsys.data.types import Cases, Sequences
from recsys.errors import RecsysError
from recsys.ltr.features import FeatureSettings, FeatureTables, build_features
from tests.ltr.synthetic import context_rule_split

NEW = pl.DataFrame({"item_id": [1001, 1002], "title": ["new a", None], "format": ["a", "never-seen"]})


@pytest.fixture(scope="module")
def tables():
    split = context_rule_split(users=60, items=30, length=8)
    vectors = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    t = FeatureTables.fit(split.train, FeatureSettings(), item_vectors=vectors)
    t.extra["names"] = split.encoded.dataset.items["title"]
    return split, t


def test_new_items_get_neutral_and_column_features(tables):
    split, t = tables
    vec = np.eye(2, 8, dtype=np.float32)
    out = t.extend(NEW, item_vectors=vec)
    n = t.n_items
    assert out.n_items == n + 2 and t.n_items == n and len(t.log_pop) == n  # a copy: the fitted tables are unchanged
    assert (out.log_pop[n:] == 0).all() and (out.log_pop_recent[n:] == 0).all() and np.isnan(out.first_seen[n:]).all()
    np.testing.assert_array_equal(out.log_pop[:n], t.log_pop)
    # the shrunk mean of an item with no ratings is the global mean of the training ratings
    assert out.item_rating[n:] == pytest.approx(float(split.train.events["rating"].mean()), abs=1e-4)
    assert len(out.user_rating) == len(t.user_rating)  # per user: never padded
    fmt = next(a for a in out.attributes if a.name == "format")
    assert fmt.codes()[n] == fmt.values.index("a") and fmt.codes()[n + 1] == -1  # an unknown value: no code
    assert all((v[:, n:] == 0).all() for (_, target), v in out.lifts.items() if target == "item")
    np.testing.assert_array_equal(out.item_vectors[n:], vec)
    assert out.extra["names"].tail(2).to_list() == ["new a", "1002"]


def test_build_features_ranks_over_the_extended_catalogue(tables):
    split, t = tables
    out = t.extend(NEW, item_vectors=np.eye(2, 8, dtype=np.float32))
    n = t.n_items
    cases = split.test.take(np.arange(2))
    cand = pl.DataFrame({"case": np.array([0, 0, 1], dtype=np.int32), "item": np.array([0, n, n + 1], dtype=np.int32)})
    f = build_features(cand, cases, out)
    assert f["pop_all"].to_list()[1:] == [0.0, 0.0] and f["item_age_days"][1:].is_nan().all()
    assert np.isfinite(f["text_sim_max"].to_numpy()).all()
    a_share = float((split.train.items["format"].to_numpy()[cases.history.row(0)] == "a").mean())
    assert f["affinity_format"][1] == pytest.approx(a_share) and f["affinity_format"][2] == 0.0
    # a history may hold an added item too
    hist = Sequences(np.array([0, 2]), np.array([0, n], dtype=np.int32))
    one = Cases(np.array([0]), hist, np.array([0]), hist, cases.context[:1], None)
    assert build_features(pl.DataFrame({"case": [0], "item": [1]}, schema={"case": pl.Int32, "item": pl.Int32}), one, out).height == 1


def test_every_per_item_array_is_padded_also_one_added_later(tables):
    _, t = tables

    @dataclass
    class MoreTables(FeatureTables):
        item_novelty: np.ndarray | None = None
        item_count: np.ndarray | None = None

    more = MoreTables(**{f.name: getattr(t, f.name) for f in fields(t)})
    more.item_novelty = np.ones(t.n_items, dtype=np.float32)
    more.item_count = np.full(t.n_items, 3, dtype=np.int64)
    out = more.extend(NEW, item_vectors=np.eye(2, 8, dtype=np.float32))
    assert len(out.item_novelty) == len(out.item_count) == t.n_items + 2
    assert np.isnan(out.item_novelty[-2:]).all() and (out.item_count[-2:] == 0).all()


def test_bad_extensions_are_refused(tables):
    _, t = tables
    with pytest.raises(RecsysError, match="2 item vectors of dimension 8"):
        t.extend(NEW)
    with pytest.raises(RecsysError, match="item_id"):
        t.extend(NEW.drop("item_id"), item_vectors=np.eye(2, 8, dtype=np.float32))
