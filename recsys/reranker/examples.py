"""Training examples of the reranker: requests at chosen positions of the training sequences (history before
the position, the interaction's timestamp/context as request context, the item that followed as positive), hard
negatives from the retriever's top items mixed with random ones, and context-swapped user texts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.data.types import TrainData
from recsys.reranker.features import context_frame_of

if TYPE_CHECKING:
    from recsys.reranker.model import Reranker


class Requests:
    """Training requests: (user, history, context, positive, rating) at chosen positions of ``data``'s sequences."""

    def __init__(self, data: TrainData, positives_per_user: int | None) -> None:
        seq = data.sequences
        lens = seq.lengths
        first = np.maximum(1, lens - positives_per_user) if positives_per_user is not None else np.ones_like(lens)
        counts = np.maximum(lens - first, 0)
        users = np.repeat(np.arange(seq.n_rows), counts)
        offsets = np.concatenate([np.arange(f, f + c) for f, c in zip(first, counts)]) if len(users) else np.zeros(0, dtype=np.int64)
        self.users = users.astype(np.int64)
        self.rows = (seq.indptr[:-1][users] + offsets).astype(np.int64)  # row into data.events / seq.items
        self.starts = seq.indptr[:-1][users].astype(np.int64)
        self.positives = seq.items[self.rows].astype(np.int64)
        self.histories = [seq.items[s:r] for s, r in zip(self.starts, self.rows)]
        if data.events.height != len(seq.items):
            raise ValueError("events and sequences disagree: cannot align request contexts")
        ev = data.events[self.rows]
        self.context = context_frame_of(ev)
        self.ratings = ev[S.RATING].to_numpy().astype(np.float64) if S.RATING in ev.columns else None

    def __len__(self) -> int:
        return len(self.positives)


def retriever_top(
    retriever: Any,
    histories: list[np.ndarray],
    context: pl.DataFrame | None,
    profiles: pl.DataFrame | None,
    k: int,
    exclude: list[np.ndarray],
    *,
    batch_size: int = 512,
    with_scores: bool = False,
) -> Any:
    """(n, k) catalogue indices of the retriever's top k per request, ``exclude[r]`` removed (-1 pads); with
    ``with_scores`` also their (n, k) cosines (-inf at the pads)."""
    items = retriever.encode_items()
    n_items = items.shape[0]
    k = min(k, n_items)
    out = np.full((len(histories), k), -1, dtype=np.int64)
    cos = np.full((len(histories), k), -np.inf, dtype=np.float32)
    use_prof = profiles is not None and getattr(retriever.args, "use_profiles", False)
    for lo in range(0, len(histories), batch_size):
        hi = min(lo + batch_size, len(histories))
        ctx = context[lo:hi] if context is not None else None
        prof = profiles[lo:hi] if use_prof else None
        u = retriever.encode_users(histories[lo:hi], ctx, prof)
        s = u @ items.T
        for r in range(hi - lo):
            ex = exclude[lo + r]
            if len(ex):
                s[r, ex[ex < n_items]] = -np.inf
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_s = np.take_along_axis(s, top, axis=1)
        valid = np.isfinite(top_s)
        out[lo:hi] = np.where(valid, top, -1)
        cos[lo:hi] = top_s
    return (out, cos) if with_scores else out


def sample_negatives(
    req: Requests,
    n_items: int,
    hard_pool: np.ndarray | None,
    n_neg: int,
    hard_fraction: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n, n_neg) negatives per request: ``round(n_neg * hard_fraction)`` from the hard pool, the rest random."""
    n_hard = int(round(n_neg * hard_fraction)) if hard_pool is not None else 0
    out = np.full((len(req), n_neg), -1, dtype=np.int64)
    for r in range(len(req)):
        banned = set(req.histories[r].tolist()) | {int(req.positives[r])}
        chosen: list[int] = []
        if n_hard:
            pool = hard_pool[r]
            pool = pool[(pool >= 0)]
            pool = pool[~np.isin(pool, list(banned))]
            if len(pool):
                chosen = rng.choice(pool, size=min(n_hard, len(pool)), replace=False).tolist()
        taken = banned | set(chosen)
        tries = 0
        while len(chosen) < n_neg and tries < 50 * n_neg:
            c = int(rng.integers(n_items))
            tries += 1
            if c not in taken:
                chosen.append(c)
                taken.add(c)
        out[r, : len(chosen)] = chosen
    return out


def context_swapped_users(
    reranker: "Reranker",
    req: Requests,
    hist_texts: list[str],
    profiles: pl.DataFrame | None,
    users: list[str],
    n: int,
    rng: np.random.Generator,
    *,
    tries: int = 10,
) -> list[list[str]]:
    """Per request, up to ``n`` user texts that differ from ``users[r]`` only by the request context: each takes
    the context of another (random) training request, re-drawn up to ``tries`` times while it renders the same."""
    out: list[list[str]] = [[] for _ in range(len(req))]
    if req.context is None or req.context.width == 0 or n == 0:
        return out
    for _ in range(n):
        pending = np.arange(len(req))
        for _ in range(tries):
            donors = rng.integers(len(req), size=len(pending))
            swapped = reranker.user_texts(
                [req.histories[r] for r in pending], hist_texts, context=req.context[donors],
                profiles=profiles[pending] if profiles is not None else None,
            )
            same = []
            for r, text in zip(pending.tolist(), swapped):
                if text == users[r]:
                    same.append(r)
                else:
                    out[r].append(text)
            pending = np.asarray(same, dtype=np.int64)
            if not len(pending):
                break
    return out


__all__ = ["Requests", "context_swapped_users", "retriever_top", "sample_negatives"]
