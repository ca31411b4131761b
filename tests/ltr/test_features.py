"""Feature module: the optional ``gaps`` features against values computed by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from recsys.ltr.features import FeatureSettings, FeatureTables, build_features
from tests.ltr.synthetic import context_rule_split


def test_gaps_are_candidate_minus_recent_mean_and_cosine_to_the_last_item():
    split = context_rule_split(users=40, items=30)
    train = split.train
    year = np.arange(train.n_items, dtype=np.float64) + 1950.0
    year[3] = np.nan  # a missing value is skipped in the user's mean, not propagated
    train = dataclasses.replace(train, items=train.items.with_columns(year=pl.Series(year)))
    vectors = np.random.default_rng(0).normal(size=(train.n_items, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    settings = FeatureSettings(gaps=True, recent_items=4)
    tables = FeatureTables.fit(train, settings, item_vectors=vectors)
    cases = split.test.take(np.arange(3))
    cand = pl.DataFrame({"case": np.repeat(np.arange(3), 2).astype(np.int32), "item": np.tile([0, 7], 3).astype(np.int32)})
    f = build_features(cand, cases, tables)
    for row in f.iter_rows(named=True):
        hist = cases.history.row(row["case"])
        recent = hist[-4:]
        assert np.isclose(row["pop_gap"], tables.log_pop[row["item"]] - tables.log_pop[recent].mean(), atol=1e-5)
        assert np.isclose(row["item_year_gap"], year[row["item"]] - np.nanmean(year[recent]), atol=1e-3)
        assert np.isclose(row["text_sim_last"], vectors[row["item"]] @ vectors[hist[-1]], atol=1e-5)
    plain = build_features(cand, cases, FeatureTables.fit(train, FeatureSettings(recent_items=4), item_vectors=vectors))
    assert not {"pop_gap", "item_year_gap", "text_sim_last"} & set(plain.columns)  # off by default
