"""Model registry: names usable in ``recsys evaluate --models`` mapped to lazily imported classes.

Lazy so that ``recsys --help`` and the data commands never import torch.
"""

from __future__ import annotations

import importlib

from recsys.errors import RecsysError
from recsys.models.base import Recommender

MODEL_REGISTRY: dict[str, str] = {
    "popularity": "recsys.models.popularity:Popularity",
    "itemknn": "recsys.models.itemknn:ItemKNN",
    "ease": "recsys.models.ease:EASE",
    "ials": "recsys.models.implicit_models:IALS",
    "bpr": "recsys.models.implicit_models:BPR",
    "sasrec": "recsys.models.sasrec:SASRec",
    "retriever": "recsys.models.retriever:RetrieverRecommender",
    "zero-shot": "recsys.models.retriever:ZeroShotRecommender",
    "pipeline": "recsys.models.pipeline:PipelineRecommender",
    "ltr": "recsys.models.ltr:LTRRecommender",
}


def get_model_class(name: str) -> type[Recommender]:
    if name not in MODEL_REGISTRY:
        raise RecsysError(f"unknown model '{name}'; choose from: {', '.join(MODEL_REGISTRY)}")
    module, _, attr = MODEL_REGISTRY[name].partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise RecsysError(f"model '{name}' is not available in this installation: {exc}") from exc


__all__ = ["MODEL_REGISTRY", "Recommender", "get_model_class"]
