"""The protocol's splits (../shared/EVALUATION.md): interactions encoded to dense indices, the temporal
leave-one-out split and the cold-start-item split, built as the core types of ``recsys.data.types``.

Per-user order is a stable sort by timestamp over the dataset's source row order, never by item id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.data.types import Cases, Sequences, TrainData
from recsys.errors import RecsysError

MIN_USER_INTERACTIONS = 3
COLD_MIN_ITEM_INTERACTIONS = 5
COLD_FRACTION = 0.10
COLD_SEED = 0


@dataclass
class EncodedDataset:
    """Interactions mapped to dense indices and ordered per user by (timestamp, source row)."""

    dataset: Dataset
    item_ids: np.ndarray
    user_ids: np.ndarray
    events: pl.DataFrame  # u, i, pos, len, timestamp (+rating, context)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def user_profiles(self) -> pl.DataFrame | None:
        users = self.dataset.users
        if users is None:
            return None
        order = pl.DataFrame({S.USER_ID: self.user_ids})
        return order.join(users, on=S.USER_ID, how="left", maintain_order="left")


def encode(dataset: Dataset, *, min_user_interactions: int = MIN_USER_INTERACTIONS) -> EncodedDataset:
    """Drop users with too few interactions, map ids to indices, order each user's events by time (stable)."""
    items = dataset.items
    item_map = pl.DataFrame({S.ITEM_ID: items[S.ITEM_ID], "i": np.arange(items.height, dtype=np.int32)})
    inter = dataset.interactions.with_row_index("__src")
    counts = inter.group_by(S.USER_ID).len()
    kept = counts.filter(pl.col("len") >= min_user_interactions).sort(S.USER_ID)
    if kept.height == 0:
        raise RecsysError(f"no user has at least {min_user_interactions} interactions: nothing to evaluate")
    user_map = kept.select(S.USER_ID).with_columns(u=pl.int_range(pl.len(), dtype=pl.Int32))
    extra = [c for c in inter.columns if c not in (S.USER_ID, S.ITEM_ID, "__src")]
    events = (
        inter.join(user_map, on=S.USER_ID, how="inner")
        .join(item_map, on=S.ITEM_ID, how="left")
        .sort(["u", S.TIMESTAMP, "__src"])
        .with_columns(
            pos=pl.int_range(pl.len(), dtype=pl.Int32).over("u"),
            len=pl.len().over("u").cast(pl.Int32),
        )
        .select(["u", "i", "pos", "len", *extra])
    )
    return EncodedDataset(dataset, items[S.ITEM_ID].to_numpy(), user_map[S.USER_ID].to_numpy(), events)


def _train_data(enc: EncodedDataset, events: pl.DataFrame, cold: np.ndarray | None = None) -> TrainData:
    seq = Sequences.from_sorted(events["u"].to_numpy(), events["i"].to_numpy(), enc.n_users)
    return TrainData(
        seq,
        enc.n_items,
        enc.dataset.items,
        events.drop(["pos", "len"]),
        enc.user_profiles(),
        cold if cold is not None else np.zeros(0, dtype=np.int32),
        enc.dataset.synthetic_timestamps,
    )


def _cases(enc: EncodedDataset, history: pl.DataFrame, targets: pl.DataFrame) -> Cases:
    """One case per target row; the history is the user's rows of ``history``."""
    hist = Sequences.from_sorted(history["u"].to_numpy(), history["i"].to_numpy(), enc.n_users)
    users = targets["u"].to_numpy()
    h = hist.take(users)
    ctx_cols = [c for c in targets.columns if c not in ("u", "i", "pos", "len", S.RATING, S.WEIGHT)]
    ratings = targets[S.RATING].to_numpy().astype(np.float64) if S.RATING in targets.columns else None
    return Cases(users, h, targets["i"].to_numpy(), h, targets.select(ctx_cols), ratings)


@dataclass
class LeaveOneOutSplit:
    """Temporal leave-one-out: last interaction = test, second-to-last = validation, the rest = train."""

    encoded: EncodedDataset
    train: TrainData  # for validation
    validation: Cases
    train_full: TrainData  # train + validation, for test
    test: Cases


def leave_one_out(enc: EncodedDataset) -> LeaveOneOutSplit:
    ev = enc.events
    train = ev.filter(pl.col("pos") < pl.col("len") - 2)
    val = ev.filter(pl.col("pos") == pl.col("len") - 2)
    full = ev.filter(pl.col("pos") < pl.col("len") - 1)
    test = ev.filter(pl.col("pos") == pl.col("len") - 1)
    return LeaveOneOutSplit(enc, _train_data(enc, train), _cases(enc, train, val), _train_data(enc, full), _cases(enc, full, test))


@dataclass
class ColdStartSplit:
    """Items held out entirely: the model sees them only through their text and attributes."""

    cold_items: np.ndarray
    train: TrainData
    cases: Cases


def cold_start(
    enc: EncodedDataset,
    *,
    min_interactions: int = COLD_MIN_ITEM_INTERACTIONS,
    fraction: float = COLD_FRACTION,
    seed: int = COLD_SEED,
) -> ColdStartSplit:
    ev = enc.events
    counts = np.bincount(ev["i"].to_numpy(), minlength=enc.n_items)
    eligible = np.flatnonzero(counts >= min_interactions)
    # the protocol draws from the sorted item *ids*; map back to indices afterwards
    eligible_ids = np.sort(enc.item_ids[eligible])
    n = int(round(fraction * len(eligible_ids)))
    if n == 0:
        raise RecsysError(f"no cold-start items: {len(eligible_ids)} items have >= {min_interactions} interactions")
    drawn_ids = np.random.default_rng(seed).choice(eligible_ids, n, replace=False)
    id_to_index = pl.DataFrame({"id": enc.item_ids, "i": np.arange(enc.n_items, dtype=np.int32)})
    cold = pl.DataFrame({"id": drawn_ids}).join(id_to_index, on="id", how="left", maintain_order="left")["i"].to_numpy()
    is_cold = pl.col("i").is_in(pl.Series(cold).implode())
    warm_ev = ev.filter(~is_cold)
    cold_ev = ev.filter(is_cold)
    cases = _cases(enc, warm_ev, cold_ev)
    # exclude the user's training items and the user's *other* cold items
    cold_seq = Sequences.from_sorted(cold_ev["u"].to_numpy(), cold_ev["i"].to_numpy(), enc.n_users).take(cases.users)
    excl_items, excl_ptr = merge_rows(cases.history, cold_seq)
    cases.exclude = Sequences(excl_ptr, excl_items)  # the target itself is removed from exclusion at ranking time
    return ColdStartSplit(np.sort(cold).astype(np.int32), _train_data(enc, warm_ev, cold), cases)


def merge_rows(a: Sequences, b: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise concatenation of two sequence sets over the same rows: (items, indptr) of each row's a-items then b-items."""
    lengths = a.lengths + b.lengths
    indptr = np.zeros(a.n_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    rows = np.concatenate([np.repeat(np.arange(a.n_rows), a.lengths), np.repeat(np.arange(b.n_rows), b.lengths)])
    items = np.concatenate([a.items, b.items])
    order = np.argsort(rows, kind="stable")
    return items[order].astype(np.int32), indptr
