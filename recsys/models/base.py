"""The one recommender contract every model in the harness implements (baselines and our own).

A model is fitted on ``TrainData`` and scores ``Cases``: a dense (cases x catalogue) matrix where higher is
better and ``-inf`` means "no score" (ID-only models for items they never saw). Excluding seen items and
breaking ties is the harness's job, identically for every model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from recsys.data.types import Cases, TrainData


class Recommender(ABC):
    name: ClassVar[str]
    #: small validation grid the harness tunes over (the protocol's "small grids")
    grid: ClassVar[list[dict[str, Any]]] = [{}]
    #: True when the model can score items it never saw in training (text-based models)
    cold_start_capable: ClassVar[bool] = False
    #: False for models early-stopped on validation and then used for test as they are (SASRec, per protocol)
    refit_for_test: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)

    @abstractmethod
    def fit(self, data: TrainData, validation: Cases | None = None) -> "Recommender":
        """Learn from ``data``; ``validation`` (when given) may only be used for early stopping."""

    def params_without_validation(self) -> dict[str, Any]:
        """Parameter overrides for a refit with no validation set (the cold-start pass), learned from this fit.

        Early-stopped models return the epoch count validation chose, so the refit neither under- nor over-trains.
        """
        return {}

    @abstractmethod
    def score(self, cases: Cases) -> np.ndarray:
        """Return float32 scores of shape (len(cases), n_items)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"
