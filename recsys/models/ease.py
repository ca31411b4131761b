"""EASE (Steck 2019): closed-form item-item linear autoencoder with a zero diagonal."""

from __future__ import annotations

import numpy as np

from recsys.data.types import Cases, TrainData
from recsys.models.base import Recommender


class EASE(Recommender):
    name = "ease"
    grid = [{"l2": v} for v in (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0)]

    def __init__(self, l2: float = 100.0) -> None:
        super().__init__(l2=l2)
        self.l2 = l2

    def fit(self, data: TrainData, validation: Cases | None = None) -> "EASE":
        x = data.matrix
        g = (x.T @ x).toarray().astype(np.float64)
        g[np.diag_indices_from(g)] += self.l2
        p = np.linalg.inv(g)
        b = p / (-np.diag(p))
        np.fill_diagonal(b, 0.0)
        self.b_ = b.astype(np.float32)
        self.seen_ = data.item_counts > 0
        return self

    def score(self, cases: Cases) -> np.ndarray:
        h = cases.history.to_csr(self.b_.shape[0])
        s = np.asarray(h @ self.b_, dtype=np.float32)
        s[:, ~self.seen_] = -np.inf
        return s
