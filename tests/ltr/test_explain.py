"""Explanations: contributions add up to the ranker's score, and the reasons name the data behind them."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from recsys.ltr.explain import contributions, explain, feature_group
from recsys.ltr.ranker import LearnedRanker, LTRSettings
from tests.ltr.synthetic import context_rule_split

SETTINGS = {
    "sources": [{"kind": "ease", "depth": 60, "params": {"l2": 10.0}}, {"kind": "cooccurrence", "depth": 30}],
    "min_child_samples": 10, "n_estimators": 60, "threads": 1, "features": {"text_similarity": False},
}


@pytest.fixture(scope="module")
def fitted():
    split = context_rule_split()
    return split, LearnedRanker(LTRSettings.from_dict(SETTINGS)).fit(split.train, split.validation)


def test_contributions_sum_to_the_score(fitted):
    split, ranker = fitted
    frame = ranker.rank_frame(split.test.take(np.arange(5)))
    c = contributions(ranker, frame)
    np.testing.assert_allclose(c.sum(axis=1), frame["score"].to_numpy(), rtol=1e-4, atol=1e-4)


def test_reasons_name_the_context_and_history(fitted):
    split, ranker = fitted
    cases = split.test.take(np.arange(20))
    out = explain(ranker, cases, top=5)
    assert out.height == 100 and out["rank"].max() == 5
    # the device rule drives this data: the context is the top reason of most recommendations, naming the device
    devices = cases.context["device"].to_list()
    firsts = out.filter(pl.col("reasons").list.len() > 0).with_columns(first=pl.col("reasons").list.first())
    ctx = firsts.filter(pl.col("first").str.starts_with("popular on"))
    assert ctx.height >= 0.5 * out.height, firsts["first"].value_counts()
    for case, first in zip(ctx["case"].to_list(), ctx["first"].to_list()):
        assert first.startswith(f"popular on {devices[case]}")
    names = set(split.encoded.dataset.items["title"].to_list())
    history_reasons = [s for rs in out["reasons"].to_list() for s in rs if s.startswith(("you watched", "often watched after"))]
    assert history_reasons and all(s.split(" ", 2 if s.startswith("you") else 3)[-1] in names for s in history_reasons)
    contrib = json.loads(out["contributions"][0])
    assert contrib and all(k in ranker.feature_names_ for k in contrib)


def test_feature_groups():
    assert feature_group("ease_rank", ["ease"]) == "source:ease"
    assert feature_group("lift_device_format", ["ease"]) == "context"
    assert feature_group("affinity_genres", []) == "affinity:genres"
    assert feature_group("history_length", []) == "other"


def test_a_history_item_is_named_once_per_recommendation(fitted):
    import re

    split, ranker = fitted
    out = explain(ranker, split.test.take(np.arange(20)), top=5, reasons=4)
    for reasons in out["reasons"].to_list():
        named = [m for s in reasons for m in re.findall(r"(?:you watched |after |like |similar to )(thing \d+)", s)]
        assert len(named) == len(set(named)), reasons
