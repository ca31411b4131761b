"""The text-model adapters (two-tower retriever, zero-shot MiniLM, retriever -> learned ranker pipeline) against the
shared model contract, with the real bundled MiniLM and tiny training settings."""

from __future__ import annotations

import pytest

from recsys.models.pipeline import PipelineRecommender
from recsys.models.retriever import RetrieverRecommender, ZeroShotRecommender
from tests.models.contract import RecommenderContract

#: a one-layer user tower trained a few epochs: enough to learn two blocks of items
RETRIEVER = dict(d_model=32, layers=1, heads=2, max_len=10, batch_size=16, lr=5e-3, epochs=8, patience=8, threads=1, seed=0)
#: a small LightGBM ranker over the retriever and EASE (the synthetic users have 4-6 items: one held out per user)
LTR = dict(holdout=1, min_child_samples=5, num_leaves=4, n_estimators=20, threads=1, rating=False, sources=[{"kind": "ease", "depth": 10}])


class TestZeroShot(RecommenderContract):
    def make_model(self):
        return ZeroShotRecommender(decay=0.3)


@pytest.mark.slow
class TestRetriever(RecommenderContract):
    def make_model(self):
        return RetrieverRecommender(epochs_without_validation=8, **RETRIEVER)


@pytest.mark.slow
class TestPipeline(RecommenderContract):
    def make_model(self):
        return PipelineRecommender(candidates=10, retriever=RETRIEVER, ltr=LTR, epochs_without_validation=8)
