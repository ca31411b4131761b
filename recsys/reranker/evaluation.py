"""Held-out evaluation of a reranker: target vs negatives (win rate, HR@1, MRR), the fusion weight chosen on
validation (NDCG@10 of the target in the retriever's top list), and the rating head's AUC/RMSE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.data.types import Cases, TrainData
from recsys.evaluation import metrics as M
from recsys.reranker.config import FUSION_GRID
from recsys.reranker.examples import retriever_top
from recsys.reranker.features import context_frame_of

if TYPE_CHECKING:
    from recsys.reranker.model import Reranker


def case_texts(reranker: "Reranker", data: TrainData, cases: Cases, *, use_context: bool | None = None) -> list[str]:
    hist_texts = reranker.history_texts(data.items)
    profiles = data.users[cases.users] if data.users is not None else None
    histories = [cases.history.row(r) for r in range(len(cases))]
    return reranker.user_texts(histories, hist_texts, context=cases.context, profiles=profiles, use_context=use_context)


def evaluate_reranker(
    reranker: "Reranker",
    data: TrainData,
    cases: Cases,
    retriever: Any = None,
    *,
    n_negatives: int = 10,
    hard_fraction: float = 1.0,
    max_cases: int | None = 300,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out target vs ``n_negatives`` negatives per case: ``round(n_negatives * hard_fraction)`` of them the
    retriever's top items (when a retriever is given; history and target excluded), the rest uniformly random.
    ``win_rate`` (share of negatives scored below the target), ``HR@1`` and ``MRR`` within the list."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(cases))
    if max_cases is not None and len(rows) > max_cases:
        rows = np.sort(rng.choice(rows, max_cases, replace=False))
    sub = cases.take(rows)
    histories = [sub.history.row(r).astype(np.int64) for r in range(len(sub))]
    targets = sub.targets.astype(np.int64)
    n_hard = int(round(n_negatives * hard_fraction)) if retriever is not None else 0
    negs = np.full((len(sub), n_negatives), -1, dtype=np.int64)
    if n_hard:
        exclude = [np.concatenate([h, [t]]) for h, t in zip(histories, targets)]
        prof = data.users[sub.users] if data.users is not None else None
        negs[:, :n_hard] = retriever_top(retriever, histories, context_frame_of(sub.context), prof, n_hard, exclude)
    if n_hard < n_negatives:
        for r, (h, t) in enumerate(zip(histories, targets)):
            pool = np.setdiff1d(np.arange(data.n_items), np.concatenate([h, [t], negs[r, :n_hard]]))
            take = min(n_negatives - n_hard, len(pool))
            negs[r, n_hard : n_hard + take] = rng.choice(pool, take, replace=False)
    item_texts = reranker.render_items(data.items)
    hist_texts = reranker.history_texts(data.items)
    profiles = data.users[sub.users] if data.users is not None else None
    lists = [np.concatenate([[t], n[n >= 0]]) for t, n in zip(targets, negs)]
    scores = reranker.score_candidates(histories, lists, item_texts, hist_texts, context=sub.context, profiles=profiles)
    win = np.array([float(np.mean(s[1:] < s[0])) if len(s) > 1 else 1.0 for s in scores])
    rank = np.array([int(np.sum(s[1:] >= s[0])) for s in scores])
    return {"win_rate": float(win.mean()), "HR@1": float(np.mean(rank == 0)), "MRR": float(np.mean(1.0 / (rank + 1))), "cases": int(len(sub))}


def fusion_table(
    lists: list[np.ndarray], logits: list[np.ndarray], cosines: list[np.ndarray], targets: np.ndarray, grid: tuple[float, ...]
) -> tuple[float, dict[str, float]]:
    """(best w, {w: NDCG@10 of the target within its list}) for fused scores logit + w x cosine; a target missing
    from its list scores 0 for every w; ties go to the larger w (closer to the retriever's order)."""
    table: dict[str, float] = {}
    best_w, best = float(grid[0]), -1.0
    for w in grid:
        gains = np.zeros(len(lists))
        for r, (lst, z, c) in enumerate(zip(lists, logits, cosines)):
            hit = np.flatnonzero(np.asarray(lst) == targets[r])
            if len(hit):
                fused = np.asarray(z, dtype=np.float64) + w * np.asarray(c, dtype=np.float64)
                rank = int(np.sum(fused > fused[hit[0]]))
                gains[r] = 1.0 / np.log2(rank + 2) if rank < 10 else 0.0
        ndcg = float(gains.mean()) if len(gains) else 0.0
        table[f"{w:g}"] = round(ndcg, 5)
        if ndcg >= best:
            best_w, best = float(w), ndcg
    return best_w, table


def choose_retrieval_weight(
    reranker: "Reranker",
    data: TrainData,
    cases: Cases,
    retriever: Any,
    *,
    depth: int | None = None,
    max_cases: int | None = None,
    grid: tuple[float, ...] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Pick the fusion weight (served score = logit + w x retriever cosine) on held-out ``cases``: rerank each case's
    retriever top ``depth`` for every w of ``grid`` and keep the w with the best NDCG@10 of the target within the
    list (ties -> the larger w, i.e. closer to the retriever's own order). Sets ``reranker.args.retrieval_weight``."""
    a = reranker.args
    grid = tuple(grid or FUSION_GRID)
    depth = int(depth or a.fusion_depth)
    max_cases = int(max_cases or a.fusion_cases)
    rng = np.random.default_rng(seed)
    rows = np.arange(len(cases))
    if len(rows) > max_cases:
        rows = np.sort(rng.choice(rows, max_cases, replace=False))
    sub = cases.take(rows)
    histories = [sub.history.row(r).astype(np.int64) for r in range(len(sub))]
    targets = sub.targets.astype(np.int64)
    exclude = [(e := sub.exclude.row(r).astype(np.int64))[e != targets[r]] for r in range(len(sub))]
    profiles = data.users[sub.users] if data.users is not None else None
    top, cos = retriever_top(retriever, histories, context_frame_of(sub.context), profiles, depth, exclude, with_scores=True)
    lists = [t[t >= 0] for t in top]
    cosines = [c[t >= 0] for t, c in zip(top, cos)]
    item_texts = reranker.render_items(data.items)
    hist_texts = reranker.history_texts(data.items)
    logits = reranker.score_candidates(histories, lists, item_texts, hist_texts, context=sub.context, profiles=profiles)
    best_w, table = fusion_table(lists, logits, cosines, targets, grid)
    a.retrieval_weight = float(best_w)
    in_list = float(np.mean([targets[r] in lists[r] for r in range(len(lists))])) if lists else 0.0
    return {"retrieval_weight": float(best_w), "fusion_NDCG@10": table, "fusion_cases": len(lists), "fusion_depth": depth, "fusion_target_in_list": round(in_list, 4)}


def rating_metrics(reranker: "Reranker", data: TrainData, cases: Cases, *, max_cases: int | None = None) -> dict[str, float | None]:
    """ROC AUC (rating >= 4 vs the predicted rating) and RMSE of the rating head on ``cases``' target interactions."""
    if cases.ratings is None:
        return {"rating_AUC": None, "rating_RMSE": None}
    sub = cases if max_cases is None or len(cases) <= max_cases else cases.take(np.arange(max_cases))
    users = case_texts(reranker, data, sub)
    item_texts = reranker.render_items(data.items)
    pred = reranker.predict_rating([(u, item_texts[int(t)]) for u, t in zip(users, sub.targets)])
    y = np.asarray(sub.ratings, dtype=np.float64)
    return {"rating_AUC": M.roc_auc(pred, y >= 4), "rating_RMSE": float(np.sqrt(np.mean((pred - y) ** 2))), "rating_cases": int(len(sub))}


__all__ = ["case_texts", "choose_retrieval_weight", "evaluate_reranker", "fusion_table", "rating_metrics"]
