"""The core data types every model, the evaluation protocol and the runtime share: per-row item sequences
(``Sequences``), what a model learns from (``TrainData``) and ranking cases (``Cases``).

``recsys.evaluation.split`` builds them from a dataset; serving and batch scoring build ``Sequences`` of user
histories directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.manifest import fingerprint_bytes


@dataclass(frozen=True)
class Sequences:
    """Ragged per-row item sequences in CSR form (row r = items[indptr[r]:indptr[r+1]], oldest first)."""

    indptr: np.ndarray
    items: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row(self, r: int) -> np.ndarray:
        return self.items[self.indptr[r] : self.indptr[r + 1]]

    def take(self, rows: np.ndarray) -> "Sequences":
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        idx = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return Sequences(indptr, self.items[idx])

    def last(self, n: int) -> "Sequences":
        """The last ``n`` items of every row (the most recent history)."""
        starts = np.maximum(self.indptr[:-1], self.indptr[1:] - n)
        lengths = self.indptr[1:] - starts
        indptr = np.zeros(self.n_rows + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        idx = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return Sequences(indptr, self.items[idx])

    def to_csr(self, n_items: int, *, binary: bool = True) -> sp.csr_matrix:
        data = np.ones(len(self.items), dtype=np.float32)
        m = sp.csr_matrix((data, self.items.astype(np.int64), self.indptr), shape=(self.n_rows, n_items))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def append(self, extra: np.ndarray) -> "Sequences":
        """Append one item to every row (extra[r] at the end of row r)."""
        lengths = self.lengths + 1
        indptr = np.zeros(self.n_rows + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.empty(indptr[-1], dtype=self.items.dtype)
        mask = np.ones(indptr[-1], dtype=bool)
        mask[indptr[1:] - 1] = False
        items[mask] = self.items
        items[indptr[1:] - 1] = extra
        return Sequences(indptr, items)

    @classmethod
    def from_sorted(cls, rows: np.ndarray, items: np.ndarray, n_rows: int) -> "Sequences":
        """Build from parallel arrays already grouped by row (rows non-decreasing)."""
        counts = np.bincount(rows, minlength=n_rows)
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, np.ascontiguousarray(items, dtype=np.int32))


@dataclass
class TrainData:
    """What a model may learn from: per-user time-ordered sequences plus the item catalogue."""

    sequences: Sequences  # row = user index
    n_items: int
    items: pl.DataFrame  # catalogue; row i describes item index i
    events: pl.DataFrame  # columns u, i, timestamp (+ rating, context), time-ordered within user
    users: pl.DataFrame | None = None  # profiles; row u describes user index u (None when absent)
    cold_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    #: the timestamps were synthesised from row/column order: models must not read time of day or weekday from them
    synthetic_timestamps: bool = False

    @property
    def n_users(self) -> int:
        return self.sequences.n_rows

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """Binary user x item matrix (implicit feedback: every interaction counts)."""
        return self.sequences.to_csr(self.n_items)

    @cached_property
    def item_counts(self) -> np.ndarray:
        return np.bincount(self.sequences.items, minlength=self.n_items)


def train_data_fingerprint(data: TrainData, item_texts: list[str]) -> str:
    """What a text model learned from: the training sequences and the catalogue text (for run manifests)."""
    return fingerprint_bytes(
        data.sequences.indptr.astype(np.int64).tobytes(),
        data.sequences.items.astype(np.int64).tobytes(),
        "\x1f".join(item_texts).encode(),
    )


@dataclass
class Cases:
    """Ranking cases: for each, the user, the history the model may see, the target and what is excluded."""

    users: np.ndarray
    history: Sequences
    targets: np.ndarray
    exclude: Sequences
    context: pl.DataFrame | None = None  # the target interaction's timestamp and context columns, one row a case
    ratings: np.ndarray | None = None  # the target interaction's rating, when the data has ratings

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, rows: np.ndarray) -> "Cases":
        rows = np.asarray(rows)
        return Cases(
            self.users[rows],
            self.history.take(rows),
            self.targets[rows],
            self.exclude.take(rows),
            self.context[rows] if self.context is not None else None,
            self.ratings[rows] if self.ratings is not None else None,
        )


__all__ = ["Cases", "Sequences", "TrainData", "train_data_fingerprint"]
