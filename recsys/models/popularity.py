"""Most-popular baseline: the same ranking for everyone, by training interaction count."""

from __future__ import annotations

import numpy as np

from recsys.data.types import Cases, TrainData
from recsys.models.base import Recommender


class Popularity(Recommender):
    name = "popularity"

    def fit(self, data: TrainData, validation: Cases | None = None) -> "Popularity":
        counts = data.item_counts.astype(np.float32)
        self.scores_ = np.where(counts > 0, counts, -np.inf).astype(np.float32)
        return self

    def score(self, cases: Cases) -> np.ndarray:
        return np.broadcast_to(self.scores_, (len(cases), len(self.scores_))).copy()
