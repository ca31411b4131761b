"""Item-based k-nearest-neighbours with cosine similarity over binary interaction vectors."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.data.types import Cases, TrainData
from recsys.models.base import Recommender


class ItemKNN(Recommender):
    name = "itemknn"
    grid = [{"k": k} for k in (10, 20, 50, 100, 200)]

    def __init__(self, k: int = 10) -> None:
        super().__init__(k=k)
        self.k = k

    def fit(self, data: TrainData, validation: Cases | None = None) -> "ItemKNN":
        x = data.matrix.astype(np.float32)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        xn = x @ sp.diags(1.0 / norms)
        sim = (xn.T @ xn).toarray().astype(np.float32)
        np.fill_diagonal(sim, 0.0)
        # keep the k most similar neighbours of every item (column-wise top-k)
        k = min(self.k, sim.shape[0] - 1)
        if k < sim.shape[0] - 1:
            cut = np.argpartition(-sim, k, axis=0)[k:]
            np.put_along_axis(sim, cut, 0.0, axis=0)
        self.sim_ = sp.csr_matrix(sim)
        self.seen_ = data.item_counts > 0
        return self

    def score(self, cases: Cases) -> np.ndarray:
        h = cases.history.to_csr(self.sim_.shape[0])
        s = np.asarray((h @ self.sim_).todense(), dtype=np.float32)
        s[:, ~self.seen_] = -np.inf
        return s
