"""User histories for batch scoring, read per chunk of users from disk instead of held in memory.

``recsys batch-score`` must score every user of a log of any size (10M users x 100 interactions is ~1B rows, tens
of GB in memory) with flat memory. A one-time preparation writes the interactions as (user_id, item_id) rows in
history order (user, timestamp, source row: the evaluation protocol's stable tie-break) into parquet parts that
cover disjoint, increasing user-id ranges, plus the sorted user list with per-user counts. A chunk of users is then
one range read: only the parts and row groups whose user-id statistics overlap the chunk are decoded.

Neither the per-user counts nor the sort holds the whole log. The counts are taken batch by batch and merged
(``_count_users``; a polars group_by over the scan holds the whole key column). When the log has more than
``bucket_rows`` rows, one streaming pass spills the rows into user-range buckets (Arrow IPC files), and each bucket
is sorted alone (polars' streaming sort, like a plain sort, keeps its whole input in memory). Memory and time at
scale: docs/performance.md, "Peak memory". The result is cached (``$RECSYS_CACHE/histories`` for batch scoring),
keyed by the dataset fingerprint and the interactions file's size and mtime, so ``--resume`` and the next run reuse
it and a changed dataset rebuilds it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.errors import DataValidationError, RecsysError
from recsys.manifest import MANIFEST_NAME, atomic_directory, read_manifest, write_manifest
from recsys.data.types import Sequences

HISTORIES_KIND = "histories"
#: Sub-directory of the recsys cache (``recsys.manifest.cache_dir``) where batch scoring prepares histories (one
#: sub-directory per dataset), so a batch output directory holds only candidates.
HISTORIES_DIR = "histories"
USERS_FILE = "users.parquet"
#: Rows sorted in memory at once while preparing (the sort's peak grows with it; docs/performance.md) ...
BUCKET_ROWS = 1_000_000
#: ... unless that would mean more than this many spill files open at once (1B rows: ~2M rows a bucket).
MAX_BUCKETS = 512
#: Rows per parquet row group of the prepared parts: the unit a chunk read decodes beyond its own users.
ROW_GROUP_ROWS = 65_536
_SRC = "__src"
_BUCKET = "__bucket"
_SPILL_BATCH_ROWS = 262_144
#: Partial per-user counts held before they are merged (at least; more when there are more users than this).
_MERGE_ROWS = 4_000_000


class UserHistories:
    """Every user's interactions in time order (stable over source rows), as catalogue indices and raw ids."""

    def __init__(self, dataset: Dataset, catalogue_ids: pl.Series) -> None:
        if not dataset.interactions_loaded:
            raise RecsysError(f"dataset {dataset.path} was loaded without its interactions; load it in full to build histories")
        inter = dataset.interactions
        events = inter.select(S.USER_ID, S.ITEM_ID, S.TIMESTAMP).with_row_index("__src").sort([S.USER_ID, S.TIMESTAMP, "__src"])
        self._build(events.select(S.USER_ID, S.ITEM_ID), catalogue_ids, inter.schema[S.USER_ID])

    @classmethod
    def from_sorted(cls, events: pl.DataFrame, catalogue_ids: pl.Series, user_dtype: pl.DataType) -> "UserHistories":
        """Histories from (user_id, item_id) rows already in history order (user, time, source row), e.g. one chunk
        of users read from a prepared file: the same indexing as the full build, so both give identical histories."""
        out = cls.__new__(cls)
        out._build(events, catalogue_ids, user_dtype)
        return out

    def _build(self, events: pl.DataFrame, catalogue_ids: pl.Series, user_dtype: pl.DataType) -> None:
        id_type = events.schema[S.ITEM_ID]
        lookup = pl.DataFrame({S.ITEM_ID: catalogue_ids.cast(id_type, strict=False), "__cat": np.arange(len(catalogue_ids), dtype=np.int32)})
        events = events.select(S.USER_ID, S.ITEM_ID).join(lookup, on=S.ITEM_ID, how="left", maintain_order="left")
        users = events.group_by(S.USER_ID, maintain_order=True).len()
        self.user_ids = users[S.USER_ID]
        self._row = pl.DataFrame({S.USER_ID: self.user_ids, "__row": np.arange(users.height)})
        indptr = np.zeros(users.height + 1, dtype=np.int64)
        np.cumsum(users["len"].to_numpy(), out=indptr[1:])
        self.catalogue = Sequences(indptr, events["__cat"].fill_null(-1).to_numpy().astype(np.int32))
        self.item_ids = events[S.ITEM_ID].to_numpy()
        self.user_dtype = user_dtype
        self._sorted: Any = None  # the user ids as a sorted numpy array (built on first ``row``), False if unsorted

    def row(self, user_id: Any) -> int:
        """Row of one user id (-1 when unknown): a binary search, no dataframe work on the request path."""
        if self._sorted is None:
            self._sorted = self.user_ids.to_numpy() if self.user_ids.is_sorted() else False
        if self._sorted is False:
            return int(self.rows([user_id])[0])
        try:
            key = int(user_id) if self.user_dtype.is_integer() else str(user_id)
        except (TypeError, ValueError):
            return -1
        if self.user_dtype.is_integer() and isinstance(user_id, str) and str(key) != user_id.strip():
            return -1
        i = int(np.searchsorted(self._sorted, key))
        return i if i < len(self._sorted) and self._sorted[i] == key else -1

    def rows(self, user_ids: Sequence[Any] | pl.Series) -> np.ndarray:
        """Row per user id, -1 for unknown users."""
        q = pl.DataFrame({S.USER_ID: pl.Series(list(user_ids) if not isinstance(user_ids, pl.Series) else user_ids).cast(self.user_dtype, strict=False)})
        return q.join(self._row, on=S.USER_ID, how="left", maintain_order="left")["__row"].fill_null(-1).to_numpy()

    def history(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(catalogue indices the model knows, every seen raw item id) for one user row."""
        lo, hi = self.catalogue.indptr[row], self.catalogue.indptr[row + 1]
        cat = self.catalogue.items[lo:hi]
        return cat[cat >= 0], self.item_ids[lo:hi]

    def histories(self, rows: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``history`` of many rows at once (batch scoring: a thousand users a chunk), split by two vectorised
        passes instead of a Python call per user."""
        rows = np.asarray(rows, dtype=np.int64)
        if not rows.size:
            return [], []
        lo, hi = self.catalogue.indptr[rows], self.catalogue.indptr[rows + 1]
        lengths = hi - lo
        at = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
        cat, seen = self.catalogue.items[at], self.item_ids[at]
        cuts = np.cumsum(lengths)[:-1]
        known = cat >= 0
        known_before = np.concatenate([[0], np.cumsum(known)])  # known entries before each position
        return np.split(cat[known], known_before[cuts]), np.split(seen, cuts)


class HistoryStore:
    """Prepared histories: parts sorted by (user, time, source row) over disjoint user ranges + the user list."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path, HISTORIES_KIND)
        self.parts: list[dict[str, Any]] = list(self.manifest["parts"])
        for p in self.parts:
            if not (self.path / p["file"]).is_file():
                raise RecsysError(f"prepared histories {self.path} lack {p['file']}; delete the directory to rebuild it")
        schema = pl.read_parquet_schema(self.path / USERS_FILE)
        self.user_dtype: pl.DataType = schema[S.USER_ID]
        self.item_dtype: pl.DataType = pl.read_parquet_schema(self.path / self.parts[0]["file"])[S.ITEM_ID] if self.parts else pl.Int64

    @property
    def n_users(self) -> int:
        return int(self.manifest["n_users"])

    def user_ids(self) -> pl.Series:
        """Every user with an interaction, sorted (the order ``--users all`` scores them in)."""
        return pl.read_parquet(self.path / USERS_FILE, columns=[S.USER_ID])[S.USER_ID]

    def read(self, user_ids: Sequence[Any] | pl.Series) -> pl.DataFrame:
        """(user_id, item_id) rows of these users in history order; unknown users have none."""
        ids = (user_ids if isinstance(user_ids, pl.Series) else pl.Series(S.USER_ID, list(user_ids))).cast(self.user_dtype, strict=False).drop_nulls()
        empty = pl.DataFrame(schema={S.USER_ID: self.user_dtype, S.ITEM_ID: self.item_dtype})
        if ids.is_empty():
            return empty
        lo, hi = ids.min(), ids.max()
        files = [self.path / p["file"] for p in self.parts if not (p["last"] < lo or p["first"] > hi)]
        if not files:
            return empty
        # the range lets parquet statistics skip every other row group; is_in keeps exactly the asked users
        # (a --users file need not be contiguous)
        wanted = pl.col(S.USER_ID).is_between(pl.lit(lo, self.user_dtype), pl.lit(hi, self.user_dtype)) & pl.col(S.USER_ID).is_in(ids.implode())
        return pl.scan_parquet(files).filter(wanted).collect()

    def histories(self, user_ids: Sequence[Any] | pl.Series, catalogue_ids: pl.Series) -> "UserHistories":
        """The ``UserHistories`` of just these users: the same (catalogue indices, seen ids) as the full build."""
        return UserHistories.from_sorted(self.read(user_ids), catalogue_ids, self.user_dtype)


def source_key(dataset: Dataset) -> dict[str, Any]:
    """What the prepared histories were made from; any change means rebuild."""
    stat = dataset.interactions_file.stat()
    return {
        "dataset_fingerprint": dataset.fingerprint,
        "interactions_fingerprint": dataset.manifest.get("files", {}).get(S.INTERACTIONS_FILE),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def prepare_histories(dataset: Dataset, root: Path | str, *, bucket_rows: int = BUCKET_ROWS) -> HistoryStore:
    """Prepared histories of ``dataset`` under ``root`` (reused when they match it; built atomically otherwise).

    After a build, older preparations of the same dataset path under ``root`` are removed; anything else there
    (another dataset's preparation, files the user put there) is left alone.
    """
    if bucket_rows <= 0:
        raise RecsysError("bucket_rows must be positive")
    root = Path(root)
    try:
        key = source_key(dataset)
    except FileNotFoundError:
        raise RecsysError(f"dataset {dataset.path} has no {S.INTERACTIONS_FILE}") from None
    final = root / str(key["dataset_fingerprint"])
    if (final / MANIFEST_NAME).is_file():
        with contextlib.suppress(RecsysError, KeyError, OSError):
            store = HistoryStore(final)
            if store.manifest.get("source") == key:
                return store
    src = dataset.interactions_file
    with atomic_directory(final, HISTORIES_KIND, overwrite=True) as tmp:
        try:
            manifest = _build(src, tmp, bucket_rows)
        except RecsysError:
            raise
        except (pl.exceptions.PolarsError, OSError, ValueError) as exc:  # pyarrow's errors are ValueError/OSError
            raise DataValidationError(f"cannot prepare histories: {str(exc).splitlines()[0]}", file=str(src)) from None
        write_manifest(tmp, {"kind": HISTORIES_KIND, "source": key, "dataset_path": _dataset_path(dataset), **manifest})
    for other in root.iterdir():
        if other.name != final.name and other.is_dir() and _prepared_from(other) == _dataset_path(dataset):
            shutil.rmtree(other, ignore_errors=True)
    return HistoryStore(final)


def _dataset_path(dataset: Dataset) -> str | None:
    return str(Path(dataset.path).resolve()) if dataset.path is not None else None


def _prepared_from(directory: Path) -> str | None:
    """The dataset path a prepared-histories directory was built from (None: not one of ours, or unknown)."""
    try:
        return read_manifest(directory, HISTORIES_KIND).get("dataset_path")
    except (RecsysError, OSError, ValueError):
        return None


def _build(src: Path, out: Path, bucket_rows: int) -> dict[str, Any]:
    lf = pl.scan_parquet(src)
    names = lf.collect_schema().names()
    for col in (S.USER_ID, S.ITEM_ID, S.TIMESTAMP):
        if col not in names:
            raise DataValidationError(f"interactions need a '{col}' column", file=str(src), column=col)
    counts = _count_users(src)
    if counts[S.USER_ID].null_count():
        raise DataValidationError("user id is null", file=str(src), column=S.USER_ID)
    counts.write_parquet(out / USERS_FILE, statistics=True)
    # whole users per bucket, about bucket_rows rows each (a user longer than that gets a bucket of its own)
    bucket_rows = max(bucket_rows, -(-int(counts["n"].sum() or 0) // MAX_BUCKETS))
    before = counts["n"].cum_sum() - counts["n"]
    buckets = (
        counts.with_columns(((before // bucket_rows).rank("dense") - 1).alias(_BUCKET))
        .group_by(_BUCKET, maintain_order=True)
        .agg(pl.col(S.USER_ID).first().alias("first"), pl.col(S.USER_ID).last().alias("last"), pl.col("n").sum().alias("rows"))
    )
    parts = [{"file": f"part-{b:05d}.parquet", "first": first, "last": last, "rows": rows} for b, first, last, rows in buckets.iter_rows()]
    order = [S.USER_ID, S.TIMESTAMP, _SRC]
    if len(parts) == 1:
        events = lf.select(S.USER_ID, S.ITEM_ID, S.TIMESTAMP).with_row_index(_SRC).sort(order).select(S.USER_ID, S.ITEM_ID)
        events.sink_parquet(out / parts[0]["file"], row_group_size=ROW_GROUP_ROWS, statistics=True)
    elif parts:
        spills = _spill(src, out, buckets["first"])
        for b, part in enumerate(parts):
            frame = pl.read_ipc(spills[b]).sort(order).select(S.USER_ID, S.ITEM_ID)
            frame.write_parquet(out / part["file"], row_group_size=ROW_GROUP_ROWS, statistics=True)
            del frame
            spills[b].unlink()
    return {"n_users": counts.height, "n_interactions": int(counts["n"].sum() or 0), "bucket_rows": bucket_rows, "parts": parts}


def _count_users(src: Path, *, batch_rows: int = _SPILL_BATCH_ROWS, merge_rows: int = _MERGE_ROWS) -> pl.DataFrame:
    """(user_id, n) sorted by user, in one streaming pass whose memory grows with the users, not the rows.

    polars' ``group_by`` over ``scan_parquet`` holds the scanned key column, even with its streaming engine
    (docs/performance.md, "Peak memory"). Here each batch is counted alone and the partial
    counts are merged into the running ones whenever they outgrow them (and ``merge_rows``), so at most about two
    users' worth of partial counts is held. A time-ordered log (every batch a new set of users) merges about once
    per ``n_users`` rows (100 merges of ~2 x 10M rows for 1B rows of 10M users); a user-ordered one almost never.
    """
    import pyarrow.parquet as pq

    running = pl.DataFrame(schema={S.USER_ID: pl.read_parquet_schema(src)[S.USER_ID], "n": pl.Int64})
    pending: list[pl.DataFrame] = []
    pending_rows = 0

    def merge() -> pl.DataFrame:
        return pl.concat([running, *pending]).group_by(S.USER_ID).agg(pl.col("n").sum())

    for batch in pq.ParquetFile(src, pre_buffer=False).iter_batches(batch_size=batch_rows, columns=[S.USER_ID]):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        part = frame.group_by(S.USER_ID).agg(pl.len().cast(pl.Int64).alias("n"))
        pending.append(part.cast({S.USER_ID: running.schema[S.USER_ID]}))
        pending_rows += part.height
        if pending_rows >= max(running.height, merge_rows):
            running, pending, pending_rows = merge(), [], 0
    if pending:
        running = merge()
    return running.sort(S.USER_ID)


def _spill(src: Path, out: Path, firsts: pl.Series) -> dict[int, Path]:
    """One streaming pass over the source: every row (with its source row number) into its user-range bucket."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {b: out / f".spill-{b:05d}.arrow" for b in range(len(firsts))}
    writers: dict[int, Any] = {}
    offset = 0
    try:
        # pre_buffer=False: by default pyarrow pre-buffers every row group of the file at once (the whole compressed
        # file), which would make this pass grow with the log
        for batch in pq.ParquetFile(src, pre_buffer=False).iter_batches(batch_size=_SPILL_BATCH_ROWS, columns=[S.USER_ID, S.ITEM_ID, S.TIMESTAMP]):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            frame = frame.with_columns(
                pl.int_range(offset, offset + frame.height, dtype=pl.UInt64).alias(_SRC),
                pl.Series(_BUCKET, firsts.search_sorted(frame[S.USER_ID], side="right").to_numpy().astype(np.int64) - 1),
            )
            offset += frame.height
            for (b,), part in frame.partition_by(_BUCKET, as_dict=True, include_key=False).items():
                table = part.to_arrow()
                if b not in writers:
                    writers[b] = pa.ipc.new_file(str(paths[b]), table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4"))
                writers[b].write_table(table)
    finally:
        for w in writers.values():
            w.close()
    return paths
