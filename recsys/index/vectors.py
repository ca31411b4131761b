"""Checks on what goes into an ``ItemIndex``: item ids (Int64 or String, unique, no nulls) and finite, non-zero
float32 vectors, returned L2-normalised so that inner product is cosine; every error names the id or row."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import polars as pl

from recsys.errors import RecsysError
from recsys.index.storage import ID_COLUMN


def as_id_series(item_ids: Any, expected: pl.DataType | None = None) -> pl.Series:
    """``item_ids`` as an Int64 or String series named ``item_id`` (of type ``expected`` when given)."""
    if isinstance(item_ids, pl.Series):
        s = item_ids
    else:
        if isinstance(item_ids, (str, bytes)) or not hasattr(item_ids, "__len__"):
            raise RecsysError(f"item ids must be a sequence, got {type(item_ids).__name__}")
        arr = np.asarray(item_ids) if not isinstance(item_ids, np.ndarray) else item_ids
        if arr.dtype.kind in "iu":
            s = pl.Series(ID_COLUMN, arr.astype(np.int64, copy=False))
        elif arr.dtype.kind in "UO" or arr.size == 0:
            try:
                s = pl.Series(ID_COLUMN, list(item_ids), strict=True)
            except Exception as exc:
                raise RecsysError(f"item ids must all be integers or all strings: {exc}") from None
        else:
            raise RecsysError(f"item ids must be integers or strings, got dtype {arr.dtype}")
    if s.dtype in (pl.Int8, pl.Int16, pl.Int32, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64):
        s = s.cast(pl.Int64)
    if s.dtype == pl.Null and expected is not None:
        s = s.cast(expected)
    elif s.dtype == pl.Null:
        s = s.cast(pl.Int64)
    if s.dtype not in (pl.Int64, pl.String):
        raise RecsysError(f"item ids must be Int64 or String, got {s.dtype}")
    if s.null_count():
        raise RecsysError(f"item ids contain {s.null_count()} null(s) (first at position {int(s.is_null().arg_max())})")
    if expected is not None and s.dtype != expected:
        raise RecsysError(f"item ids are {s.dtype}, but this index's item ids are {expected}")
    return s.rename(ID_COLUMN)


def ids_to_numpy(ids: pl.Series) -> np.ndarray:
    """int64 array of Int64 ids, object array of String ids."""
    if ids.dtype == pl.Int64:
        return ids.to_numpy().astype(np.int64, copy=False)
    return np.asarray(ids.to_list(), dtype=object)


def check_unique(ids: pl.Series) -> None:
    dup = ids.filter(ids.is_duplicated())
    if dup.len():
        raise RecsysError(f"item ids must be unique, but item id {dup[0]!r} appears more than once")


def check_vectors(
    vectors: Any,
    *,
    what: str,
    ids: pl.Series | None = None,
    dim: int | None = None,
    allow_zero: bool = False,
) -> np.ndarray:
    """Validate and return an L2-normalised float32 C-contiguous copy."""
    if not isinstance(vectors, np.ndarray):
        raise RecsysError(f"{what} must be a numpy array, got {type(vectors).__name__}")
    if vectors.ndim == 1 and what == "queries":
        vectors = vectors[None, :]
    if vectors.ndim != 2:
        raise RecsysError(f"{what} must be 2-D (rows x dimension), got shape {vectors.shape}")
    if vectors.dtype != np.float32:
        raise RecsysError(f"{what} must be float32, got {vectors.dtype} (use .astype(np.float32))")
    n, d = vectors.shape
    if d == 0:
        raise RecsysError(f"{what} have dimension 0")
    if dim is not None and d != dim:
        raise RecsysError(f"{what} have dimension {d}, but the index has dimension {dim}")
    if ids is not None and n != len(ids):
        raise RecsysError(f"{what} have {n:,} rows but there are {len(ids):,} item ids")
    if not np.isfinite(vectors).all():
        row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        label = f"item id {ids[row]!r}" if ids is not None else f"row {row}"
        raise RecsysError(f"{what}: {label} has a non-finite value (NaN or inf)")
    x = np.array(vectors, dtype=np.float32, order="C", copy=True)
    zero = ~x.any(axis=1) if not allow_zero else None  # normalize_L2 leaves zero rows (queries) as zeros
    if zero is not None and zero.any():
        row = int(np.flatnonzero(zero)[0])
        label = f"item id {ids[row]!r}" if ids is not None else f"row {row}"
        raise RecsysError(f"{what}: {label} is the zero vector, which has no direction to compare by cosine")
    if n:
        faiss.normalize_L2(x)
    return x
