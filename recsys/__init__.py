"""recsys: pretrained-language-model recommendation (two-tower retrieval, a learned ranking stage).

The library is the product; the ``recsys`` CLI is a thin layer over it. The public names below are resolved on
first use, so ``import recsys`` (and ``recsys --help``) loads neither torch nor FAISS::

    from recsys import Dataset, TwoTowerRetriever, LearnedRanker, ItemIndex, RetrievalService, evaluate, run_batch, generate_demo
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.batch import run_batch
    from recsys.data.dataset import Dataset
    from recsys.data.demo import generate_demo
    from recsys.evaluation.protocol import evaluate
    from recsys.index import ItemIndex
    from recsys.ltr.ranker import LearnedRanker
    from recsys.retriever import TwoTowerRetriever
    from recsys.service import RetrievalService

__version__ = "0.1.0"

#: public name -> the module that defines it
_WHERE = {
    "Dataset": "recsys.data.dataset",
    "TwoTowerRetriever": "recsys.retriever",
    "LearnedRanker": "recsys.ltr.ranker",
    "ItemIndex": "recsys.index",
    "RetrievalService": "recsys.service",
    "evaluate": "recsys.evaluation.protocol",
    "run_batch": "recsys.batch",
    "generate_demo": "recsys.data.demo",
}

__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'recsys' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
