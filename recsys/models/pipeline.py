"""Harness adapter of the whole pipeline: two-tower retriever -> the learned ranking stage over its top ``candidates``.

``fit(train, validation)`` trains the retriever (early-stopped on validation), then a ``LearnedRanker`` whose
sources are that retriever and the cheap default sources (EASE, co-occurrence, popularity), under the label scheme
of ``recsys.ltr.ranker`` (the label fold retrains a retriever copy with the epochs validation chose), early-stopped
on validation NDCG@10. ``score`` runs exactly the served code: each case's retriever top ``candidates`` (its
history excluded) go through ``RankingStage.rank`` (``recsys.service.ranking``), whose order comes first, then the
rest of the catalogue in retriever order. Test is scored with that fit as it is (``refit_for_test = False``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recsys.data.types import Cases, TrainData
from recsys.ltr.sources import excluded_mask, top_depth
from recsys.models.base import Recommender
from recsys.service.ranking import RankingStage, RankRequest, full_scores


class PipelineRecommender(Recommender):
    """Parameters: ``candidates`` (the retriever's candidates per case the ranker reads), ``retriever`` (dict of
    RetrieverTrainingArguments fields), ``ltr`` (dict of LTRSettings fields: the other sources, features, LightGBM)."""

    name = "pipeline"
    grid = [{}]
    cold_start_capable = True
    refit_for_test = False

    def __init__(self, candidates: int = 100, retriever: dict[str, Any] | None = None, ltr: dict[str, Any] | None = None, epochs_without_validation: int = 30) -> None:
        super().__init__(candidates=candidates, retriever=retriever or {}, ltr=ltr or {})
        self.candidates = int(candidates)
        self.retriever_params = dict(retriever or {})
        self.ltr_params = dict(ltr or {})
        self.epochs_without_validation = epochs_without_validation

    def fit(self, data: TrainData, validation: Cases | None = None) -> "PipelineRecommender":
        from recsys.ltr.ranker import LearnedRanker
        from recsys.ltr.run import ranking_settings, served_retriever_factory
        from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever

        rargs = RetrieverTrainingArguments.from_dict(self.retriever_params)
        if validation is None:
            rargs = RetrieverTrainingArguments.from_dict({**rargs.to_dict(), "epochs": min(rargs.epochs, self.epochs_without_validation)})
        retriever = TwoTowerRetriever(rargs).fit(data, validation)
        settings = ranking_settings(self.ltr_params, depth=self.candidates)
        ranker = LearnedRanker(settings, source_factory=served_retriever_factory(model=retriever)).fit(data, validation)
        self.stage_ = RankingStage(ranker)
        return self

    @classmethod
    def from_runs(cls, ranking_run: Path | str, retriever_run: Path | str, data: TrainData) -> "PipelineRecommender":
        """The pipeline of a saved retriever run and a ranking run built on it (refused otherwise), for ``data``'s
        catalogue and users: what ``recsys retrieve --rerank`` serves, as a harness model."""
        from recsys.ltr.sources import ServedRetrieverSource
        from recsys.retriever.run import load_run

        model, _, manifest = load_run(retriever_run)
        stage = RankingStage.open(ranking_run, retriever_fingerprint=manifest["fingerprint"])
        out = cls(candidates=stage.depth)
        stage.ranker.serving_[stage.retriever_source] = ServedRetrieverSource(model=model, name=stage.retriever_source).fit(data)
        out.stage_ = stage
        return out

    def score(self, cases: Cases) -> np.ndarray:
        stage = self.stage_
        retrieval = np.asarray(stage.ranker.serving_[stage.retriever_source].score(cases), dtype=np.float32)
        ranks = top_depth(retrieval, excluded_mask(cases, retrieval.shape[1]), stage.depth)
        requests = []
        for r in range(len(cases)):
            top = np.flatnonzero(ranks[r])
            top = top[np.argsort(ranks[r, top])]
            context = cases.context[r : r + 1] if cases.context is not None else None
            requests.append(RankRequest(cases.history.row(r), top, retrieval[r, top], context, cases.exclude.row(r), int(cases.users[r])))
        return full_scores(stage.rank(requests), retrieval)


__all__ = ["PipelineRecommender"]
