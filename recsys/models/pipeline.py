"""Harness adapter of the whole pipeline: two-tower retriever -> cross-encoder reranker of its top N.

``score`` returns the retriever's cosine scores for the whole catalogue, with the top ``candidates`` non-excluded
items lifted above everything else and ordered by the reranker (so the protocol's full ranking sees: reranked
candidates first, then the rest of the catalogue in retriever order).

Register as ``"pipeline": "recsys.models.pipeline:PipelineRecommender"`` in ``recsys.models.MODEL_REGISTRY``.
Cost: ``candidates`` cross-encoder pairs per case (MovieLens 100K test: 943 x 50 pairs per pass).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.data.types import Cases, TrainData
from recsys.models.base import Recommender

#: reranked candidates score LIFT + logit; retriever cosines are within [-1, 1]
LIFT = 1000.0


class PipelineRecommender(Recommender):
    """Parameters: ``retriever`` (dict of RetrieverTrainingArguments fields), ``reranker`` (dict of
    RerankerTrainingArguments fields), ``candidates`` (how many retriever items get reranked)."""

    name = "pipeline"
    grid = [{}]
    cold_start_capable = True
    refit_for_test = False

    def __init__(self, candidates: int = 50, retriever: dict[str, Any] | None = None, reranker: dict[str, Any] | None = None, epochs_without_validation: int = 30) -> None:
        super().__init__(candidates=candidates, retriever=retriever or {}, reranker=reranker or {})
        self.candidates = int(candidates)
        self.retriever_params = dict(retriever or {})
        self.reranker_params = dict(reranker or {})
        self.epochs_without_validation = epochs_without_validation

    def fit(self, data: TrainData, validation: Cases | None = None) -> "PipelineRecommender":
        from recsys.reranker import Reranker, RerankerTrainingArguments
        from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever

        rargs = RetrieverTrainingArguments.from_dict(self.retriever_params)
        if validation is None:
            rargs = RetrieverTrainingArguments.from_dict({**rargs.to_dict(), "epochs": min(rargs.epochs, self.epochs_without_validation)})
        self.retriever_ = TwoTowerRetriever(rargs).fit(data, validation)
        args = RerankerTrainingArguments.from_dict({"candidates": self.candidates, "progress_bar": False, **self.reranker_params})
        self.reranker_ = Reranker(args).fit(data, self.retriever_, validation)  # validation picks the fusion weight
        self.data_ = data
        self.item_texts_ = self.reranker_.render_items(data.items)
        self.history_texts_ = self.reranker_.history_texts(data.items)
        return self

    def score(self, cases: Cases) -> np.ndarray:
        data = self.data_
        use_prof = data.users is not None and self.retriever_.args.use_profiles
        profiles = data.users[cases.users] if data.users is not None else None
        scores = self.retriever_.score(cases, profiles if use_prof else None).astype(np.float32)
        return rerank_top(scores, cases, self.candidates, self._rerank(cases, profiles))

    def _rerank(self, cases: Cases, profiles: Any):
        def run(histories: list[np.ndarray], candidates: list[np.ndarray], retrieval: list[np.ndarray]) -> list[np.ndarray]:
            return self.reranker_.score_candidates(
                histories, candidates, self.item_texts_, self.history_texts_, context=cases.context, profiles=profiles, retrieval_scores=retrieval
            )

        return run


def rerank_top(scores: np.ndarray, cases: Cases, n: int, rerank: Any) -> np.ndarray:
    """Lift each case's top ``n`` non-excluded items (by ``scores``) to ``LIFT + rerank score``; ``rerank(histories,
    candidates, their retrieval scores)`` returns the served (fused) scores."""
    masked = scores.copy()
    excl = cases.exclude
    masked[np.repeat(np.arange(len(cases)), excl.lengths), excl.items] = -np.inf
    masked[np.arange(len(cases)), cases.targets] = scores[np.arange(len(cases)), cases.targets]  # the target is never excluded
    n = min(n, scores.shape[1])
    top = np.argpartition(-masked, n - 1, axis=1)[:, :n]
    cands = [t[np.isfinite(masked[r, t])] for r, t in enumerate(top)]
    histories = [cases.history.row(r) for r in range(len(cases))]
    reranked = rerank(histories, cands, [scores[r, c] for r, c in enumerate(cands)])
    out = scores.copy()
    for r, (c, s) in enumerate(zip(cands, reranked)):
        out[r, c] = LIFT + np.asarray(s, dtype=np.float32)
    return out


__all__ = ["PipelineRecommender", "rerank_top"]
