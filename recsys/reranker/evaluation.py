"""Held-out evaluation of the cross-encoder: NDCG@10 of each case's target within a fixed candidate list."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.data.types import Cases
from recsys.reranker.examples import Scorer
from recsys.reranker.model import CrossEncoder


def candidate_lists(cases: Cases, scorer: Scorer, depth: int) -> list[np.ndarray]:
    """Each case's top ``depth`` items of ``scorer`` (its excluded items removed), best first."""
    s = np.array(scorer(cases), dtype=np.float64)
    rows = np.repeat(np.arange(len(cases)), cases.exclude.lengths)
    s[rows, cases.exclude.items] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, :depth]
    return [t[np.isfinite(s[r, t])] for r, t in enumerate(top)]


def list_ndcg(lists: Sequence[np.ndarray], scores: Sequence[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """Per case, NDCG@10 of the target when its list is ordered by ``scores`` (0 when the target is not listed;
    ties count against the target)."""
    out = np.zeros(len(lists))
    for r, (lst, s) in enumerate(zip(lists, scores)):
        hit = np.flatnonzero(np.asarray(lst) == targets[r])
        if len(hit):
            rank = int(np.sum(np.delete(s, hit[0]) >= s[hit[0]]))
            out[r] = 1.0 / np.log2(rank + 2) if rank < 10 else 0.0
    return out


def rerank_ndcg(model: CrossEncoder, cases: Cases, lists: Sequence[np.ndarray]) -> np.ndarray:
    """Per-case NDCG@10 of the cross-encoder ordering each case's fixed ``lists``."""
    histories = [cases.history.row(r) for r in range(len(cases))]
    return list_ndcg(lists, model.score_lists(histories, lists), np.asarray(cases.targets))


__all__ = ["candidate_lists", "list_ndcg", "rerank_ndcg"]
