"""Full-ranking metrics with the protocol's tie rule.

Ties are broken by a fixed pseudo-random key per (case, item) that depends only on the seed, the case id and the
item index, never on the method: a constant-score model lands at chance level, and every method sees the same
tie order.
"""

from __future__ import annotations

import numpy as np

CUTOFFS = (10, 20)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def tie_keys(case_ids: np.ndarray, n_items: int, seed: int = 0) -> np.ndarray:
    """(n_cases, n_items) uint64 keys; a lower key wins a tie."""
    with np.errstate(over="ignore"):
        base = _splitmix(np.asarray(case_ids, dtype=np.uint64) + np.uint64(seed) * np.uint64(1_000_003))
        return _splitmix(base[:, None] ^ (np.arange(n_items, dtype=np.uint64)[None, :] * _M2))


def prepare_scores(scores: np.ndarray, exclude_rows: np.ndarray, exclude_cols: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64 copy with NaN on excluded items (never ranked) and -inf for "no score"; the target is never excluded."""
    s = np.array(scores, dtype=np.float64)
    s[np.isnan(s)] = -np.inf
    rows = np.arange(len(targets))
    kept = s[rows, targets].copy()
    s[exclude_rows, exclude_cols] = np.nan
    s[rows, targets] = kept
    return s


def target_ranks(s: np.ndarray, targets: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """0-based rank of each target among non-excluded items (NaN = excluded)."""
    rows = np.arange(len(targets))
    t = s[rows, targets][:, None]
    kt = keys[rows, targets][:, None]
    beats = (s > t) | ((s == t) & (keys < kt))
    return beats.sum(axis=1)


def top_k(s: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Item indices of the top k per row, ties by key, excluded (NaN) items never included (-1 pads)."""
    n, m = s.shape
    k = min(k, m)
    filled = np.where(np.isnan(s), -np.inf, s)
    # candidates: everything scoring at least the k-th best value (ties at the boundary included)
    kth = -np.partition(-filled, k - 1, axis=1)[:, k - 1 : k]
    out = np.full((n, k), -1, dtype=np.int64)
    for r in range(n):  # per case: only the boundary ties need sorting, a handful of items
        cand = np.flatnonzero((filled[r] >= kth[r]) & ~np.isnan(s[r]))
        order = np.lexsort((keys[r, cand], -filled[r, cand]))[:k]
        out[r, : len(order)] = cand[order]
    return out


def ranking_metrics(ranks: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """HR@K, NDCG@K (K in 10, 20) and MRR@10 from 0-based target ranks; also their standard errors."""
    ranks = np.asarray(ranks)
    per: dict[str, np.ndarray] = {}
    for k in CUTOFFS:
        hit = ranks < k
        per[f"HR@{k}"] = hit.astype(np.float64)
        per[f"NDCG@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    per["MRR@10"] = np.where(ranks < 10, 1.0 / (ranks + 1.0), 0.0)
    means = {k: float(v.mean()) if len(v) else float("nan") for k, v in per.items()}
    errs = {k: float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan") for k, v in per.items()}
    return means, errs


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Mann-Whitney ROC AUC with average ranks for ties; None when only one class is present."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    finite = scores[np.isfinite(scores)]
    floor = (finite.min() - 1.0) if len(finite) else 0.0
    scores = np.where(np.isfinite(scores), scores, floor)
    r = rankdata(scores)
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
