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
    """Top-k for one chunk of known users (encode -> search, seen items excluded); with a ranking run attached to the
    service, each user's top ``rerank_depth`` and the run's other sources' candidates are ranked by it
    (``rerank_score``; ``retrieval_score`` null for items only another source proposed), the rest keep retrieval order.

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
    """The scoring half of ``score_chunk`` (encode, search, optional ranking), without the output frame."""
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
    n = len(user_ids)
    depth = min(rerank_depth or service.ranker.depth, service.ranker.depth) if service.ranker is not None else 0
    scores, items = service.index.search(vectors, max(k, depth), exclude=seen)
    rerank = np.full((n, k), np.nan, dtype=np.float32)
    if service.ranker is not None and n:
        scores, items, rerank = _rank_top(service, user_ids, hist, seen, scores, items, k, depth, when)
    else:
        scores, items = scores[:, :k], items[:, :k]
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
            "rerank_score": pl.Series(chunk.rerank.reshape(-1), dtype=pl.Float32),
        }
    )
    # padding: -inf retrieval and no rank score; NaN retrieval = an item only another candidate source proposed
    frame = frame.filter(pl.col("retrieval_score").is_finite() | pl.col("rerank_score").is_not_nan())
    frame = frame.with_columns(pl.col("retrieval_score", "rerank_score").fill_nan(None))
    return frame.with_columns(
        model_fingerprint=pl.lit(service.run_manifest["fingerprint"]),
        index_fingerprint=pl.lit(index_fp),
        generated_at=pl.lit(chunk.generated_at).dt.cast_time_unit("us"),
    ).select(OUTPUT_SCHEMA)


def _rank_top(
    service: Any, user_ids: list[Any], hist: list[np.ndarray], seen: Any, scores: np.ndarray, items: np.ndarray, k: int, depth: int, when: dt.datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank each row's first ``depth`` retrieved items with the ranking run's other candidates
    (``RetrievalService.rank_requests``, the path ``recommend`` takes): the ranked list first, then the rest in
    retrieval order, cut at k. Returns (retrieval scores, items, rank scores), (n, k) each: retrieval NaN for
    items only another source proposed, rank scores NaN outside the ranked list, padding -inf / NaN."""
    from recsys.context import context_frame

    n = len(user_ids)
    ctx = context_frame({}, service.known_context_keys, now=when)
    contexts = ctx.select(pl.all().gather(np.zeros(n, dtype=np.int64)))
    cands, cos = [], []
    for r in range(n):
        m = int(np.isfinite(scores[r, :depth]).sum())
        cands.append(items[r, :m].tolist())
        cos.append(scores[r, :m])
    rankings = service.rank_requests(
        hist, cands, cos, contexts, exclude=[service.to_catalogue(list(s)) for s in seen], users=user_ids, top=k
    )
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    out_items = np.empty((n, k), dtype=items.dtype)
    out_items[:] = items[:, :1] if items.shape[1] else 0
    rank = np.full((n, k), np.nan, dtype=np.float32)
    ids = service.rank_ids  # the run's catalogue, then items added to the index after the ranking run
    for r, ranking in enumerate(rankings):
        m = len(ranking.items)
        ranked_ids = ids.gather(ranking.items).to_numpy() if m else np.zeros(0, dtype=items.dtype)
        out_items[r, :m] = ranked_ids.astype(items.dtype) if items.dtype != object else np.asarray(ranked_ids.tolist(), dtype=object)
        out_scores[r, :m] = ranking.retrieval
        rank[r, :m] = ranking.scores
        have = set(ranked_ids.tolist())
        rest = [j for j in range(items.shape[1]) if np.isfinite(scores[r, j]) and items[r, j] not in have][: k - m]
        out_items[r, m : m + len(rest)] = items[r, rest]
        out_scores[r, m : m + len(rest)] = scores[r, rest]
    return out_scores, out_items, rank


def write_part(out: Path, chunk: int, frame: pl.DataFrame) -> Path:
    """Write a part atomically (a reader never sees a torn part)."""
    path = Path(out) / f"part-{chunk:05d}.parquet"
    write_parquet_atomic(path, frame)
    return path
