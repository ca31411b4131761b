"""Harness adapter of the learned second stage (``recsys.ltr``): several candidate sources, features, LambdaRank.

``fit(train, validation)`` runs the label scheme of ``recsys.ltr.ranker`` (first stages fitted twice: on train for
serving, on train minus each user's last item for the ranker's labels), early-stopping the ranker on validation
NDCG@10; test is scored with that fit as it is (``refit_for_test = False``, like SASRec and the retriever), so the
model sees exactly train, then validation for tuning, then test. Parameters are ``LTRSettings`` fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.data.types import Cases, TrainData
from recsys.ltr.ranker import LearnedRanker, LTRSettings
from recsys.models.base import Recommender


class LTRRecommender(Recommender):
    name = "ltr"
    grid = [{}]
    refit_for_test = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.settings = LTRSettings.from_dict(params)

    def fit(self, data: TrainData, validation: Cases | None = None) -> "LTRRecommender":
        self.ranker_ = LearnedRanker(self.settings).fit(data, validation)
        return self

    def params_without_validation(self) -> dict[str, Any]:
        return self.ranker_.params_without_validation()

    def score(self, cases: Cases) -> np.ndarray:
        return self.ranker_.score(cases)

    def predict_rating(self, cases: Cases) -> np.ndarray:
        """P(rating >= 4) of each case's target."""
        return self.ranker_.predict_rating(cases)


__all__ = ["LTRRecommender"]
