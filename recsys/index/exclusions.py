"""Per-query exclusions in an ``ItemIndex`` search: external ids turned into faiss ids in one pass (batch scoring
sends thousands of queries with ~50 exclusions each, where per-query numpy calls added up), a per-thread scratch
mask that tells which found hits a query must skip, and the selection of the first ``k`` eligible hits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

#: bytes of the per-thread scratch mask (query rows x faiss ids) that tests search hits against exclusions
_MASK_BYTES = 1 << 23
_scratch = threading.local()


class IntIdLookup:
    """Integer external id -> faiss id (-1 = not in the index) for many ids at once: one table indexed by id when
    the ids are dense (the usual 0..n or 1..n), a sorted-key search otherwise (batch scoring looks up ~40K ids a
    chunk, where a dict lookup per id showed up in profiles)."""

    def __init__(self, ext_to_fid: dict[Any, int]) -> None:
        keys = np.fromiter(ext_to_fid.keys(), dtype=np.int64, count=len(ext_to_fid))
        vals = np.fromiter(ext_to_fid.values(), dtype=np.int64, count=len(ext_to_fid))
        self.dense = bool(keys.size and int(keys.max()) - int(keys.min()) < 4 * keys.size + 1024)
        if self.dense:
            self.offset = int(keys.min())
            self.table = np.full(int(keys.max()) - self.offset + 1, -1, dtype=np.int64)
            self.table[keys - self.offset] = vals
        else:
            order = np.argsort(keys, kind="stable")
            self.keys, self.vals = keys[order], vals[order]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.dense:
            at = values - self.offset
            inside = (at >= 0) & (at < self.table.size)
            return np.where(inside, self.table[np.where(inside, at, 0)], -1)
        if not self.keys.size:
            return np.full(values.shape, -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.keys, values), self.keys.size - 1)
        return np.where(self.keys[at] == values, self.vals[at], -1)


class Exclusions:
    """Every query's excluded faiss ids, flat: query ``q``'s are ``fids[starts[q]:starts[q + 1]]`` (duplicates allowed)."""

    def __init__(self, fids: np.ndarray, starts: np.ndarray) -> None:
        self.fids, self.starts = fids, starts

    @classmethod
    def of(
        cls,
        exclude: Sequence[Any],
        ext_to_fid: dict[Any, int],
        int_lookup: Callable[[], IntIdLookup] | None,
    ) -> "Exclusions | None":
        """The exclusions of ``exclude`` (one list of external ids per query; ids not in ``ext_to_fid`` are ignored),
        or None when nothing known is excluded. ``int_lookup`` (integer ids only) gives the vectorised lookup used
        when every exclusion is an integer array; the dict serves otherwise."""
        nq = len(exclude)
        sizes = np.fromiter((0 if e is None else len(e) for e in exclude), dtype=np.int64, count=nq)
        if not sizes.any():
            return None
        arrays = [e for e in exclude if e is not None and len(e)]
        if int_lookup is not None and all(isinstance(e, np.ndarray) and e.dtype.kind in "iu" for e in arrays):
            values = np.concatenate(arrays).astype(np.int64, copy=False) if arrays else np.zeros(0, dtype=np.int64)
            fids = int_lookup()(values)
        else:
            get = ext_to_fid.get
            values = [v for e in arrays for v in (e.tolist() if isinstance(e, (np.ndarray, pl.Series)) else e)]
            fids = np.fromiter((get(v, -1) for v in values), dtype=np.int64, count=len(values))
        known = fids >= 0
        if not known.any():
            return None
        rows = np.repeat(np.arange(nq, dtype=np.int64), sizes)[known]
        starts = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=nq), out=starts[1:])
        return cls(fids[known], starts)

    @property
    def longest(self) -> int:
        return int(np.diff(self.starts).max())

    def hits(self, found: np.ndarray, rows: np.ndarray, id_space: int) -> np.ndarray:
        """Which of ``found`` (faiss ids, one row per query in ``rows``) are excluded for their query.

        A boolean scratch mask over (query, faiss id) is set for a block of queries, read at the found ids and
        cleared again, which is faster than a sorted-key searchsorted (docs/performance.md, "Figures behind code
        choices"); the mask is per thread, so concurrent searches never share it."""
        counts = self.starts[rows + 1] - self.starts[rows]
        pos = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
        first = np.cumsum(counts) - counts
        at = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first - self.starts[rows], counts)
        banned = self.fids[at]
        size = max(int(id_space), 1)
        per_block = max(1, _MASK_BYTES // size)
        mask = getattr(_scratch, "mask", None)
        if mask is None or mask.size < min(len(rows), per_block) * size:
            mask = _scratch.mask = np.zeros(max(_MASK_BYTES, size), dtype=bool)
        looked_up = np.where(found >= 0, found, 0)
        out = np.zeros(found.shape, dtype=bool)
        bounds = np.searchsorted(pos, np.arange(0, len(rows) + per_block, per_block))
        for block, lo in enumerate(range(0, len(rows), per_block)):
            hi = min(lo + per_block, len(rows))
            keys = (pos[bounds[block] : bounds[block + 1]] - lo) * size + banned[bounds[block] : bounds[block + 1]]
            if not keys.size:
                continue
            mask[keys] = True
            try:
                out[lo:hi] = mask[np.arange(hi - lo, dtype=np.int64)[:, None] * size + looked_up[lo:hi]]
            finally:
                mask[keys] = False  # a stale bit would exclude an item from this thread's next search
        return out & (found >= 0)


def collect_eligible(
    d: np.ndarray,
    i: np.ndarray,
    rows: np.ndarray,
    excl: Exclusions | None,
    k: int,
    scores: np.ndarray,
    fids: np.ndarray,
    *,
    id_space: int,
) -> np.ndarray:
    """Write the first ``k`` eligible hits (found, not excluded) of each searched row of ``(d, i)`` into
    ``scores``/``fids`` at ``rows``, padding the rest; return positions (in ``rows``) still short of ``k``."""
    keep = i >= 0
    if excl is not None:
        keep &= ~excl.hits(i, rows, id_space)
    m = min(k, i.shape[1])
    if keep[:, :m].all():
        sel_d, sel_i, counts = d[:, :m], i[:, :m], np.full(len(rows), m)
    else:
        order = np.argsort(~keep, axis=1, kind="stable")[:, :m]  # eligible hits first, rank order kept
        counts = np.minimum(keep.sum(axis=1), m)
        filled = np.arange(m)[None, :] < counts[:, None]
        sel_d = np.where(filled, np.take_along_axis(d, order, axis=1), -np.inf)
        sel_i = np.where(filled, np.take_along_axis(i, order, axis=1), -1)
    scores[rows, :m] = sel_d
    fids[rows, :m] = sel_i
    scores[rows, m:] = -np.inf
    fids[rows, m:] = -1
    return np.flatnonzero(counts < k)
