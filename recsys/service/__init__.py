"""The runtime layer: what ``recsys retrieve``, batch scoring and serving run on a request.

``RetrievalService`` (retriever + FAISS index + user histories) optionally ranks with a ``RankingStage`` (a learned
ranking run over the retriever's and its other sources' candidates, ``recsys.service.ranking``); ``UserHistories``
holds histories in memory, ``HistoryStore`` reads them per chunk of users from prepared parquet parts.

Names are resolved lazily, so importing one submodule does not load the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.service.histories import HistoryStore, UserHistories, prepare_histories
    from recsys.service.ranking import RankingStage, RankRequest, Ranking
    from recsys.service.retrieval import Recommendation, RetrievalService

_WHERE = {
    "HistoryStore": "recsys.service.histories",
    "UserHistories": "recsys.service.histories",
    "prepare_histories": "recsys.service.histories",
    "RankingStage": "recsys.service.ranking",
    "RankRequest": "recsys.service.ranking",
    "Ranking": "recsys.service.ranking",
    "Recommendation": "recsys.service.retrieval",
    "RetrievalService": "recsys.service.retrieval",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'recsys.service' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
