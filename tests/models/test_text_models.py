"""The text-model adapters (two-tower retriever, zero-shot MiniLM, retriever -> reranker pipeline) against the
shared model contract, with the real bundled MiniLM and tiny training settings."""

from __future__ import annotations

import pytest

from recsys.models.pipeline import PipelineRecommender
from recsys.models.retriever import RetrieverRecommender, ZeroShotRecommender
from tests.models.contract import RecommenderContract

#: a one-layer user tower trained a few epochs: enough to learn two blocks of items
RETRIEVER = dict(d_model=32, layers=1, heads=2, max_len=10, batch_size=16, lr=5e-3, epochs=8, patience=8, threads=1, seed=0)
#: a few cross-encoder steps; with 3 candidates the retriever's top items bound what the reranker can reorder
RERANKER = dict(max_length=48, batch_size=16, max_steps=4, positives_per_user=1, negatives_per_positive=2, progress_bar=False, threads=1)


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
        return PipelineRecommender(candidates=3, retriever=RETRIEVER, reranker=RERANKER, epochs_without_validation=8)
