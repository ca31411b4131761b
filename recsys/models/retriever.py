"""Harness adapters for the text models: the trained two-tower retriever and the untrained MiniLM baseline.

Both score the whole catalogue as user vectors @ item vectors.T and can score items that had no training
interactions (by their text), so they take part in the cold-start evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.data.types import Cases, TrainData
from recsys.models.base import Recommender


class RetrieverRecommender(Recommender):
    """``TwoTowerRetriever`` under the protocol; parameters are ``RetrieverTrainingArguments`` fields.

    Early-stopped on the validation cases and used for test as is (like SASRec). Without validation (the
    cold-start pass) it trains ``epochs_without_validation`` epochs (best validation epochs on MovieLens
    100K were 11-22).
    """

    name = "retriever"
    grid = [{}]
    cold_start_capable = True
    refit_for_test = False

    def __init__(self, epochs_without_validation: int = 15, **params: Any) -> None:
        super().__init__(epochs_without_validation=epochs_without_validation, **params)
        from recsys.retriever import RetrieverTrainingArguments

        self.args = RetrieverTrainingArguments.from_dict(params)
        self.epochs_without_validation = epochs_without_validation

    def fit(self, data: TrainData, validation: Cases | None = None) -> "RetrieverRecommender":
        from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever

        args = self.args
        if validation is None:
            args = RetrieverTrainingArguments.from_dict({**args.to_dict(), "epochs": min(args.epochs, self.epochs_without_validation)})
        self.model_ = TwoTowerRetriever(args).fit(data, validation)
        self.users_ = data.users
        return self

    def score(self, cases: Cases) -> np.ndarray:
        profiles = self.users_[cases.users] if (self.users_ is not None and self.args.use_profiles) else None
        return self.model_.score(cases, profiles).astype(np.float32)


class ZeroShotRecommender(Recommender):
    """Untrained MiniLM: user = recency-weighted mean of the history's item text vectors (weights exp(-decay*k))."""

    name = "zero-shot"
    grid = [{"decay": d} for d in (0.1, 0.3, 0.5)]
    cold_start_capable = True

    def __init__(self, decay: float = 0.3, base_model: str | None = None, templates: dict[str, Any] | None = None, batch_size: int = 128) -> None:
        super().__init__(decay=decay, **({"base_model": base_model} if base_model else {}))
        self.decay, self.base_model, self.templates, self.batch_size = decay, base_model, templates, batch_size

    def fit(self, data: TrainData, validation: Cases | None = None) -> "ZeroShotRecommender":
        from recsys.retriever import default_base_model, embed_texts, load_text_model
        from recsys.text import TextTemplates, render_items, require_item_text

        name = self.base_model or default_base_model()
        templates = TextTemplates.from_dict(self.templates)
        texts = render_items(data.items, templates)
        require_item_text(texts, data.items, templates, model="the zero-shot text model")
        self.item_vectors_ = embed_texts(texts, load_text_model(name), batch_size=self.batch_size, cache_key=name)
        return self

    def score(self, cases: Cases) -> np.ndarray:
        from recsys.retriever import recency_weighted_mean

        hs = [cases.history.row(r) for r in range(len(cases))]
        users = recency_weighted_mean(hs, self.item_vectors_, self.decay)
        return (users @ self.item_vectors_.T).astype(np.float32)


__all__ = ["RetrieverRecommender", "ZeroShotRecommender"]
