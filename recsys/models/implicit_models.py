"""Matrix-factorisation baselines from the ``implicit`` package (optional dependency: ``recsys[ials]``).

- ``IALS``: implicit alternating least squares (Hu, Koren & Volinsky 2008), confidence ``alpha * r``.
- ``BPR``: Bayesian personalised ranking (Rendle et al. 2009), SGD on sampled (user, pos, neg) triples.

Both train on ``data.matrix`` (binary user x item CSR; implicit >= 0.7 takes ``fit(user_items)`` with users as
rows) with the CPU implementation, one thread and a fixed ``random_state`` so a fit is reproducible. Scoring
uses the fitted factors of each case's user (``cases.users``): the harness only asks for users that were in
training, with their training row as history. Items with no training interaction get ``-inf``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from recsys.errors import RecsysError
from recsys.data.types import Cases, TrainData
from recsys.models.base import Recommender

_MISSING = "the '{name}' baseline needs the 'implicit' package: pip install 'recsys[ials]'"


def _import_implicit(name: str) -> tuple[Any, Any]:
    """Return (implicit.cpu.als, implicit.cpu.bpr), or raise a RecsysError naming the extra to install."""
    try:
        from implicit.cpu import als, bpr  # noqa: PLC0415 (optional dependency)
    except ImportError as e:
        raise RecsysError(_MISSING.format(name=name)) from e
    return als, bpr


class _ImplicitMF(Recommender):
    """Shared fit/score plumbing: build the implicit model, fit on the user x item matrix, dot-product scores."""

    def _make(self) -> Any:
        raise NotImplementedError

    def fit(self, data: TrainData, validation: Cases | None = None) -> "_ImplicitMF":
        _import_implicit(self.name)  # a clean error before any work when the extra is missing
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 (a dependency of implicit)

        x = data.matrix.astype(np.float32).tocsr()
        # implicit warns (and slows down badly) when BLAS is multi-threaded; its own loops run on one thread
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="implicit")
            model = self._make()
            model.fit(x, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.seen_ = data.item_counts > 0
        return self

    def score(self, cases: Cases) -> np.ndarray:
        users = np.asarray(cases.users, dtype=np.int64)
        n_users = self.user_factors_.shape[0]
        if len(users) and (users.min() < 0 or users.max() >= n_users):
            raise RecsysError(f"{self.name} can only score users seen in training (user index out of 0..{n_users - 1})")
        s = self.user_factors_[users] @ self.item_factors_.T
        s = s.astype(np.float32, copy=False)
        s[:, ~self.seen_] = -np.inf
        return s


class IALS(_ImplicitMF):
    name = "ials"
    grid = [
        {"factors": f, "regularization": r, "alpha": a}
        for f in (32, 64)
        for r in (0.01, 0.1)
        for a in (1.0, 10.0)
    ]

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
    ) -> None:
        super().__init__(factors=factors, regularization=regularization, alpha=alpha, iterations=iterations, seed=seed)
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.seed = iterations, seed

    def _make(self) -> Any:
        als, _ = _import_implicit(self.name)
        return als.AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            num_threads=1,
            random_state=self.seed,
        )


class BPR(_ImplicitMF):
    name = "bpr"
    grid = [{"factors": 64, "learning_rate": 0.01, "iterations": 100}]

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__(
            factors=factors, learning_rate=learning_rate, regularization=regularization, iterations=iterations, seed=seed
        )
        self.factors, self.learning_rate, self.regularization = factors, learning_rate, regularization
        self.iterations, self.seed = iterations, seed

    def _make(self) -> Any:
        _, bpr = _import_implicit(self.name)
        return bpr.BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            num_threads=1,
            random_state=self.seed,
        )
