"""Training cases of the cross-encoder: positions of the training sequences (history before the position, the item
at it as the positive) and their hard negatives from a first-stage scorer's top items."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys.data import schema as S
from recsys.data.types import Cases, Sequences, TrainData

#: full-catalogue scores (cases x items, higher = better) of a first stage, e.g. a fitted EASE's ``score``
Scorer = Callable[[Cases], np.ndarray]


def training_cases(data: TrainData, positives_per_user: int | None) -> Cases:
    """One case per training position with a history: each user's last ``positives_per_user`` positions (None =
    all); history = the items before the position (also what is excluded), target = the item at it, context = the
    interaction's timestamp and context columns."""
    seq = data.sequences
    lens = seq.lengths
    first = np.maximum(1, lens - positives_per_user) if positives_per_user is not None else np.ones_like(lens)
    counts = np.maximum(lens - first, 0)
    users = np.repeat(np.arange(seq.n_rows), counts)
    start = seq.indptr[:-1][users]
    offset = np.repeat(first - np.cumsum(np.concatenate([[0], counts[:-1]])), counts) + np.arange(int(counts.sum()))
    rows = (start + offset).astype(np.int64)  # row into data.events / seq.items
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(offset, out=indptr[1:])
    idx = np.repeat(start - indptr[:-1], offset) + np.arange(indptr[-1])
    history = Sequences(indptr, seq.items[idx])
    if data.events.height != len(seq.items):
        raise ValueError("events and sequences disagree: cannot align the training cases' contexts")
    ev = data.events[rows]
    context = ev.select([c for c in ev.columns if c not in ("u", "i", S.RATING, S.WEIGHT)])
    ratings = ev[S.RATING].to_numpy().astype(np.float64) if S.RATING in ev.columns else None
    return Cases(users.astype(np.int64), history, seq.items[rows].astype(np.int64), history, context, ratings)


def hard_negatives(cases: Cases, scorer: Scorer, pool: int, n: int, rng: np.random.Generator, *, batch_size: int = 512) -> np.ndarray:
    """(len(cases), n) negatives per case, drawn without replacement from the scorer's top ``pool`` items (history
    and target excluded); a pool with fewer than ``n`` scorable items is topped up with random catalogue items."""
    out = np.zeros((len(cases), n), dtype=np.int64)
    for lo in range(0, len(cases), batch_size):
        sub = cases.take(np.arange(lo, min(lo + batch_size, len(cases))))
        s = np.array(scorer(sub), dtype=np.float64)
        n_items = s.shape[1]
        rows = np.repeat(np.arange(len(sub)), sub.exclude.lengths)
        s[rows, sub.exclude.items] = -np.inf
        s[np.arange(len(sub)), sub.targets] = -np.inf
        k = min(pool, n_items)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        ok = np.isfinite(np.take_along_axis(s, top, axis=1))
        # random keys: the n best-keyed scorable pool items; unscorable slots get random items outside the pool
        keys = np.where(ok, rng.random(top.shape), np.inf)
        pick = np.take_along_axis(top, np.argsort(keys, axis=1)[:, :n], axis=1)
        short = ~np.take_along_axis(ok, np.argsort(keys, axis=1)[:, :n], axis=1)
        if short.any():
            pick[short] = rng.integers(n_items, size=int(short.sum()))
        out[lo : lo + len(sub)] = pick
    return out


__all__ = ["Scorer", "hard_negatives", "training_cases"]
