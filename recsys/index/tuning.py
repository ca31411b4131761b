"""Recall tuning of approximate indexes (as faiss's ``contrib/evaluation.py``): recall@100 against exact search
on item vectors used as queries, and the smallest ``nprobe`` / ``efSearch`` that reaches a target recall."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from recsys.errors import RecsysError

#: Queries (drawn from the items) used to measure recall@100 of approximate indexes against exact search.
RECALL_SAMPLE = 1_000
RECALL_K = 100
#: Default recall@100 that auto-tuned ``nprobe`` / ``efSearch`` must reach (when it can).
TARGET_RECALL = 0.95


def tune_search_params(
    index: Any,
    index_type: str,
    x: np.ndarray,
    *,
    nlist: int | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    target: float = TARGET_RECALL,
    seed: int = 0,
) -> tuple[dict[str, int], float]:
    """``({"nprobe": ...} or {"ef_search": ...}, recall@100)`` of an IVF or HNSW ``index`` over the vectors ``x``:
    the given setting, else the smallest power-of-two one whose recall reaches ``target``."""
    queries, truth = recall_ground_truth(x, seed=seed)
    if index_type == "ivf":
        value, recall = tune(
            lambda v: recall_at(index, queries, truth, faiss.SearchParametersIVF(nprobe=v)),
            given=nprobe, start=max(1, int(nlist) // 64), limit=int(nlist), target=target, what="nprobe",
        )
        return {"nprobe": value}, recall
    value, recall = tune(
        lambda v: recall_at(index, queries, truth, faiss.SearchParametersHNSW(efSearch=v)),
        given=ef_search, start=RECALL_K, limit=max(RECALL_K, 4096), target=target, what="ef_search",
    )
    return {"ef_search": value}, recall


def recall_ground_truth(x: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, exact top-100 rows)``: up to ``RECALL_SAMPLE`` rows of ``x`` and their exact neighbours in ``x``."""
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(RECALL_SAMPLE, n), replace=False))
    queries = np.ascontiguousarray(x[sample])
    _, truth = faiss.knn(queries, x, min(RECALL_K, n), metric=faiss.METRIC_INNER_PRODUCT)
    return queries, truth


def recall_at(index: Any, queries: np.ndarray, truth: np.ndarray, params: Any) -> float:
    """Share of the exact neighbours ``truth`` that ``index`` finds with search ``params``."""
    _, found = index.search(queries, truth.shape[1], params=params)
    hits = sum(np.intersect1d(f[f >= 0], t).size for f, t in zip(found, truth))
    return float(hits / truth.size)


def tune(recall_of: Callable[[int], float], *, given: int | None, start: int, limit: int, target: float, what: str) -> tuple[int, float]:
    """``(setting, recall)``: ``given`` if set, else the smallest power-of-two multiple of ``start`` (capped at
    ``limit``) whose recall reaches ``target``."""
    if given is not None:
        if given < 1:
            raise RecsysError(f"{what} must be at least 1, got {given}")
        return int(given), recall_of(int(given))
    value = max(1, min(start, limit))
    recall = recall_of(value)
    while value < limit and recall < target:
        value = min(limit, value * 2)
        recall = recall_of(value)
    return int(value), recall
