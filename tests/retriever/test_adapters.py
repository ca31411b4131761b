"""Harness adapters: catalogue-shaped float32 scores, items without training interactions still scored."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.evaluation.split import cold_start, encode
from recsys.models import get_model_class
from recsys.models.retriever import RetrieverRecommender, ZeroShotRecommender

from .conftest import FAST, synthetic_dataset

pytestmark = pytest.mark.slow


def test_registry_names():
    assert get_model_class("retriever") is RetrieverRecommender
    assert get_model_class("zero-shot") is ZeroShotRecommender
    assert RetrieverRecommender.cold_start_capable and ZeroShotRecommender.cold_start_capable
    assert [g["decay"] for g in ZeroShotRecommender.grid] == [0.1, 0.3, 0.5]


@pytest.mark.parametrize("cls, params", [(RetrieverRecommender, {**FAST, "epochs": 2}), (ZeroShotRecommender, {"decay": 0.3})])
def test_cold_items_get_finite_scores(cls, params):
    cs = cold_start(encode(synthetic_dataset()), min_interactions=5, fraction=0.2)
    model = cls(**params).fit(cs.train, None)
    s = model.score(cs.cases.take(np.arange(8)))
    assert s.shape == (8, cs.train.n_items) and s.dtype == np.float32
    assert np.isfinite(s).all()
    assert np.isfinite(s[:, cs.cold_items]).all()


def test_cold_items_rank_by_text_not_pushed_down():
    """Items without training interactions are no softmax negatives: a cold in-topic item scores above the other
    topics' items on average."""
    cs = cold_start(encode(synthetic_dataset()), min_interactions=5, fraction=0.2)
    model = RetrieverRecommender(**{**FAST, "epochs": 10}).fit(cs.train, None)
    cases = cs.cases
    s = model.score(cases)
    topic = cases.targets // 16
    other = np.array([[t != k // 16 for k in range(cs.train.n_items)] for t in topic])
    target = s[np.arange(len(cases)), cases.targets]
    other_mean = np.where(other, s, 0).sum(axis=1) / other.sum(axis=1)
    assert (target > other_mean).mean() > 0.9, (target > other_mean).mean()
