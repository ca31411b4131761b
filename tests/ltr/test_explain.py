"""Explanations: contributions add up to the ranker's score, and the reasons name the data behind them."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

import recsys.ltr.explain as explain_module
from recsys.errors import RecsysError
from recsys.ltr.cross import COLUMN as CROSS
from recsys.ltr.explain import DEFAULT_VERB, VERB_ENV, contributions, explain, feature_group, interaction_verb
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
    history_reasons = [s for rs in out["reasons"].to_list() for s in rs if s.startswith(("you picked", "often picked after"))]
    assert history_reasons and all(s.split(" ", 2 if s.startswith("you") else 3)[-1] in names for s in history_reasons)
    assert not any("watched" in s for rs in out["reasons"].to_list() for s in rs)  # the data does not say what it is
    contrib = json.loads(out["contributions"][0])
    assert contrib and all(k in ranker.feature_names_ for k in contrib)


def test_feature_groups():
    assert feature_group("ease_rank", ["ease"]) == "source:ease"
    assert feature_group("lift_device_format", ["ease"]) == "context"
    assert feature_group("affinity_genres", []) == "affinity:genres"
    assert feature_group("history_length", []) == "other"
    assert feature_group(CROSS, ["ease"]) == "cross"
    for name in ("pop_7d", "share_30d", "trend_7d", "item_idle_days"):  # time-window popularity reads "popular lately"
        assert feature_group(name, []) == "popularity:pop_recent"
    assert feature_group("pop_0.5d", []) == "popularity:pop_recent"  # fractional windows too
    assert feature_group("user_gap_days", []) == "other"


def test_the_verb_follows_the_catalogue(monkeypatch):
    monkeypatch.delenv(VERB_ENV, raising=False)
    assert interaction_verb({"name": "movielens-100k", "format": "movielens"}) == "watched"
    assert interaction_verb({"name": "Office_Products_5", "format": "amazon-2018"}) == "bought"
    assert interaction_verb({"name": "demo", "format": "demo"}) == "bought"
    # whole words only: "production" is not a product, "html-5" is not MovieLens
    assert interaction_verb({"name": "events", "format": "table", "files": {"interactions": "/srv/production/events.parquet"}}) == DEFAULT_VERB
    assert interaction_verb({"name": "events", "format": "table", "files": {"interactions": "/data/html-5/events.csv"}}) == DEFAULT_VERB
    office = {"name": "interactions", "format": "table", "files": {"interactions": "/data/amazon-office/interactions.csv"}}
    assert interaction_verb(office) == "bought"
    assert interaction_verb({"name": "events", "format": "table", "files": {"interactions": "/data/clicks.csv"}}) == DEFAULT_VERB == "picked"
    assert interaction_verb(None) == "picked"
    assert interaction_verb({"format": "movielens"}, override="rated") == "rated"
    monkeypatch.setenv(VERB_ENV, "viewed")
    assert interaction_verb({"format": "movielens"}) == "viewed"
    assert interaction_verb({"format": "movielens"}, override="rented") == "rented"
    with pytest.raises(RecsysError, match="explanation verb.*--verb"):
        interaction_verb(override="<b>x</b>")


def test_the_verb_is_used_in_every_history_reason(fitted):
    split, ranker = fitted
    out = explain(ranker, split.test.take(np.arange(20)), top=5, verb="bought")
    said = [s for rs in out["reasons"].to_list() for s in rs]
    assert any(s.startswith(("you bought", "often bought after")) for s in said)
    assert not any("picked" in s or "watched" in s for s in said)


def test_a_history_item_is_named_once_per_recommendation(fitted):
    import re

    split, ranker = fitted
    out = explain(ranker, split.test.take(np.arange(20)), top=5, reasons=4)
    for reasons in out["reasons"].to_list():
        named = [m for s in reasons for m in re.findall(r"(?:you picked |after |like |similar to )(thing \d+)", s)]
        assert len(named) == len(set(named)), reasons


CROSS_SETTINGS = {
    "sources": [{"kind": "ease", "depth": 30, "params": {"l2": 10.0}}, {"kind": "popularity", "depth": 30}],
    "min_child_samples": 10, "n_estimators": 30, "threads": 1,
    "cross_encoder": dict(max_length=24, history_items=3, positives_per_user=1, negatives=5, hard_pool=10, batch_size=16, max_steps=3,
                          warmup_steps=1, cpu_budget_s=None, threads=2),
}  # fmt: skip


@pytest.mark.slow
def test_the_cross_encoder_has_its_own_reason(monkeypatch):
    """A ranker with the (tiny, real) cross-encoder feature: its contribution is its own group, rendered as a reason
    naming one of the last five history items, not lumped into "other"."""
    split = context_rule_split(users=120, items=30, length=8)
    ranker = LearnedRanker(LTRSettings.from_dict(CROSS_SETTINGS)).fit(split.train, split.validation)
    assert CROSS in ranker.feature_names_
    cases = split.test.take(np.arange(6))
    out = explain(ranker, cases, top=3, verb="watched")  # the real contributions: rendered without error
    assert out.height == 18 and all(isinstance(s, str) and s for rs in out["reasons"].to_list() for s in rs)
    j = ranker.feature_names_.index(CROSS)

    def cross_only(r, frame):  # every feature but the cross-encoder neutral: its reason must come first
        c = np.zeros((frame.height, len(r.feature_names_) + 1))
        c[:, j] = 1.0
        return c

    # an item added after the run is scored by its text: a copy of item 0 scores as item 0 does
    from recsys.service.ranking import _extend_cross_encoder

    n = len(ranker.cross_.item_vectors_)
    _extend_cross_encoder(ranker.cross_, split.encoded.dataset.items[:1].with_columns(item_id=pl.lit(999)))
    hist = [cases.history.row(0)]
    np.testing.assert_allclose(ranker.cross_.score(hist, np.array([0, 0]), np.array([0, n])), ranker.cross_.score(hist, np.array([0, 0]), np.array([0, 0])), rtol=1e-5)
    monkeypatch.setattr(explain_module, "contributions", cross_only)
    out = explain(ranker, cases, top=3, verb="watched")
    titles = split.encoded.dataset.items["title"].to_list()
    for case, reasons in zip(out["case"].to_list(), out["reasons"].to_list()):
        recent = {titles[i] for i in cases.history.row(case)[-5:]}
        assert len(reasons) == 1 and reasons[0].startswith("its description matches what you watched lately, like "), reasons
        assert reasons[0].removeprefix("its description matches what you watched lately, like ") in recent
