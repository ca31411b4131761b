"""One chunk of a batch-scoring run: score a chunk of users and write it as a parquet part.

Both engines run exactly this (``recsys.batch`` in this process, ``recsys.batch_ray`` in Ray actors), so their outputs
are identical; it sits below both so neither imports the other's module.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.errors import RecsysError
from recsys.manifest import write_parquet_atomic

OUTPUT_SCHEMA = ["user_id", "rank", "item_id", "retrieval_score", "rerank_score", "model_fingerprint", "index_fingerprint", "generated_at"]


def score_chunk(
    service: Any, user_ids: list[Any], k: int, generated_at: str, index_fp: str, *, histories: Any = None, rerank_depth: int | None = None
) -> pl.DataFrame:
    """Top-k for one chunk of known users (encode -> search, seen items excluded); with a reranker attached to the
    service, each user's top ``rerank_depth`` are reordered by it (``rerank_score``), the rest keep retrieval order.

    ``histories``: these users' ``UserHistories`` (read per chunk by ``recsys.histories``); default the service's.
    """
    scored = score_chunk_arrays(service, user_ids, k, generated_at, histories=histories, rerank_depth=rerank_depth)
    return chunk_frame(service, scored, index_fp)


@dataclass
class ScoredChunk:
    """One chunk's results as arrays (``(n, k)`` each, padding score ``-inf``), before they become an output frame:
    the local engine builds and writes the frame on its writer thread while the next chunk is scored."""

    user_ids: list[Any]
    user_dtype: pl.DataType
    scores: np.ndarray
    items: np.ndarray
    rerank: np.ndarray
    generated_at: dt.datetime


def score_chunk_arrays(
    service: Any, user_ids: list[Any], k: int, generated_at: str, *, histories: Any = None, rerank_depth: int | None = None
) -> ScoredChunk:
    """The scoring half of ``score_chunk`` (encode, search, optional rerank), without the output frame."""
    from recsys.context import context_frame

    histories = service.histories if histories is None else histories
    rows = histories.rows(user_ids)
    unknown = [u for u, r in zip(user_ids, rows) if r < 0]
    if unknown:
        raise RecsysError(f"{len(unknown)} user(s) have no history in {service.dataset.path}, e.g. {unknown[0]!r}")
    hist, seen = histories.histories(rows)
    when = dt.datetime.fromisoformat(generated_at)
    ctx = context_frame({}, service.context_columns, now=when)
    contexts = ctx.select(pl.all().gather(np.zeros(len(rows), dtype=np.int64))) if len(rows) else None
    vectors = service.user_vectors(hist, contexts)
    scores, items = service.index.search(vectors, k, exclude=seen)
    n = len(user_ids)
    rerank = np.full((n, k), np.nan, dtype=np.float32)
    if service.reranker is not None and n:
        scores, items, rerank = _rerank_top(service, user_ids, seen, vectors, scores, items, min(k, rerank_depth or service.reranker.depth), when)
    return ScoredChunk(list(user_ids), histories.user_dtype, scores, items, rerank, when)


def chunk_frame(service: Any, chunk: ScoredChunk, index_fp: str) -> pl.DataFrame:
    """The output rows (``OUTPUT_SCHEMA``) of a scored chunk; padding (fewer than k eligible items) is dropped."""
    n, k = chunk.scores.shape
    item_dtype = service.dataset.items.schema[S.ITEM_ID]
    flat_items = chunk.items.reshape(-1)
    # numeric ids go to polars as arrays (no per-value Python objects: ~100K values a chunk)
    item_col = pl.Series(flat_items).cast(item_dtype) if flat_items.dtype.kind in "iu" else pl.Series(flat_items.tolist(), dtype=item_dtype)
    frame = pl.DataFrame(
        {
            "user_id": pl.Series(chunk.user_ids, dtype=chunk.user_dtype).gather(np.repeat(np.arange(n, dtype=np.int64), k)),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
            "item_id": item_col,
            "retrieval_score": chunk.scores.reshape(-1).astype(np.float32),
            "rerank_score": pl.Series(chunk.rerank.reshape(-1), dtype=pl.Float32).fill_nan(None),
        }
    ).filter(pl.col("retrieval_score").is_finite())
    return frame.with_columns(
        model_fingerprint=pl.lit(service.run_manifest["fingerprint"]),
        index_fingerprint=pl.lit(index_fp),
        generated_at=pl.lit(chunk.generated_at).dt.cast_time_unit("us"),
    ).select(OUTPUT_SCHEMA)


def _rerank_top(
    service: Any, user_ids: list[Any], seen: Any, vectors: np.ndarray, scores: np.ndarray, items: np.ndarray, depth: int, when: dt.datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rerank each row's pool (its first ``depth`` candidates, plus the co-occurrence source's top ``depth`` when the
    service has one) by the cross-encoder: the pool in rerank order, then the rest in retrieval order, cut at k.
    Returns (retrieval scores, items, rerank scores), rerank scores NaN outside the pool."""
    from recsys.context import context_frame

    k = scores.shape[1]
    request = context_frame({}, service.known_context_keys, now=when).row(0, named=True)
    pools: list[list[Any]] = []
    pool_scores: list[np.ndarray] = []
    for r in range(len(user_ids)):
        finite = int(np.isfinite(scores[r]).sum())
        pool = items[r, : min(depth, finite)].tolist()
        cos = scores[r, : len(pool)].astype(np.float64)
        if service.cooccurrence is not None:
            history = seen[r].tolist()
            pool, cos, _ = service.merge_cooccurrence(vectors[r], history, history, pool, cos, depth)
        pools.append(pool)
        pool_scores.append(cos)
    logits = service.reranker.score(
        [s.tolist() for s in seen], pools, contexts=[request] * len(user_ids), profiles=service.profiles(user_ids), retrieval_scores=pool_scores
    )
    out_scores = np.full(scores.shape, -np.inf, dtype=np.float32)
    out_items = items.copy()
    rerank = np.full(scores.shape, np.nan, dtype=np.float32)
    for r, (pool, cos, z) in enumerate(zip(pools, pool_scores, logits)):
        order = np.argsort(-z, kind="stable")[:k]
        in_pool = set(pool)
        rest = [j for j in range(k) if np.isfinite(scores[r, j]) and items[r, j] not in in_pool]
        m = len(order)
        taken = rest[: k - m]
        out_items[r, :m] = np.asarray([pool[j] for j in order], dtype=items.dtype)
        out_scores[r, :m] = cos[order]
        rerank[r, :m] = z[order]
        out_items[r, m : m + len(taken)] = items[r, taken]
        out_scores[r, m : m + len(taken)] = scores[r, taken]
    return out_scores, out_items, rerank


def write_part(out: Path, chunk: int, frame: pl.DataFrame) -> Path:
    """Write a part atomically (a reader never sees a torn part)."""
    path = Path(out) / f"part-{chunk:05d}.parquet"
    write_parquet_atomic(path, frame)
    return path
