"""Nightly batch scoring: top-k candidates for every user, streamed to parquet parts, resumable.

The job is a list of fixed user chunks. Each chunk is scored (encode users -> batched FAISS search with seen-item
filtering) and written atomically as ``part-NNNNN.parquet``; the manifest records the completed chunks and the
fingerprints of every input, so ``resume`` continues exactly where a killed run stopped and refuses changed inputs.
Engines: ``local`` (this process) and ``ray`` (a Ray Data pipeline with one model load per actor); both run the
same ``score_chunk``, so their outputs are identical. Neither holds the interaction log: its histories are prepared
once under ``OUT/.histories`` and read per chunk (``recsys.histories``), so memory stays flat as users grow.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.errors import DataValidationError, RecsysError
from recsys.service.histories import HISTORIES_DIR
from recsys.manifest import fingerprint_bytes, read_manifest, utc_now, write_manifest

CANDIDATES_KIND = "candidates"
OUTPUT_SCHEMA = ["user_id", "rank", "item_id", "retrieval_score", "rerank_score", "model_fingerprint", "index_fingerprint", "generated_at"]


@dataclass
class BatchJob:
    """What a batch-scoring run computes; everything here is part of its fingerprint."""

    index: Path
    out: Path
    dataset: Path | None = None
    users: str = "all"  # "all" or a CSV/parquet file with a user_id column
    k: int = 100
    chunk_size: int = 10_000
    engine: str = "local"
    ray_address: str | None = None
    ray_actors: int = 2
    ray_gpus: float | None = None  # GPUs per Ray actor; None = 1 when the cluster has GPUs, else 0
    rerank: Path | None = None  # a reranker run: its cross-encoder reorders each user's top rerank_depth
    rerank_depth: int | None = None  # default: the reranker's ``candidates`` setting (at most k)
    rerank_inference: str = "auto"
    cooccurrence: Path | None = None  # a co-occurrence source merged into the rerank pool (needs rerank)
    generated_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())

    def __post_init__(self) -> None:
        # paths may be given as strings from Python
        for name in ("index", "out", "dataset", "rerank", "cooccurrence"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))


def parse_time(text: str) -> str:
    """ISO 8601 -> normalised UTC ISO string (a naive time is taken as UTC)."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RecsysError(f"--generated-at {text!r} is not an ISO 8601 time (e.g. 2026-11-29T03:00:00+00:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat()


def read_user_list(spec: str, user_dtype: pl.DataType) -> pl.Series:
    """The users to score: ``all`` is handled by the caller; a file is scanned lazily for its user_id column."""
    path = Path(spec)
    if not path.exists():
        raise RecsysError(f"user list {path} does not exist (pass --users all or a CSV/parquet file with a user_id column)")
    lazy = pl.scan_parquet(path) if path.suffix.lower() == ".parquet" else pl.scan_csv(path, infer_schema_length=10_000)
    try:
        names = lazy.collect_schema().names()
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise DataValidationError(f"cannot read: {str(exc).splitlines()[0]}", file=str(path)) from None
    if S.USER_ID not in names:
        raise DataValidationError(f"a user list needs a '{S.USER_ID}' column (found: {', '.join(names)})", file=str(path), column=S.USER_ID)
    try:
        users = lazy.select(pl.col(S.USER_ID)).collect()[S.USER_ID]
    except pl.exceptions.ComputeError as exc:
        raise DataValidationError(f"cannot read: {str(exc).splitlines()[0]}", file=str(path), column=S.USER_ID) from None
    if users.null_count():
        row = int(users.is_null().arg_max()) + 1
        raise DataValidationError("user id is null", file=str(path), column=S.USER_ID, row=row)
    cast = users.cast(user_dtype, strict=False)
    if cast.null_count():
        row = int(cast.is_null().arg_max()) + 1
        raise DataValidationError(f"not a valid {user_dtype} user id", file=str(path), column=S.USER_ID, row=row, value=users[row - 1])
    dup = cast.is_duplicated()
    if dup.any():
        row = int(dup.arg_max()) + 1
        raise DataValidationError("user listed twice", file=str(path), column=S.USER_ID, row=row, value=cast[row - 1])
    return cast


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
    """Write a part atomically (temporary file, then rename)."""
    path = out / f"part-{chunk:05d}.parquet"
    tmp = out / f".part-{chunk:05d}.parquet.tmp-{os.getpid()}"
    frame.write_parquet(tmp)
    os.replace(tmp, path)
    return path


def _holds_output(out: Path) -> bool:
    """Anything in ``out`` besides the prepared histories (which are keyed by their dataset and safe to reuse)."""
    return out.exists() and any(p.name != HISTORIES_DIR for p in out.iterdir())


class _Run:
    """Manifest bookkeeping of one output directory."""

    def __init__(self, out: Path, inputs: dict[str, Any], n_chunks: int, generated_at: str, resume: bool, overwrite: bool) -> None:
        self.out = out
        if _holds_output(out):
            try:
                old = read_manifest(out, CANDIDATES_KIND)
            except RecsysError:
                old = None
            if resume and old is not None:
                if old.get("inputs") != inputs:
                    changed = sorted(k for k in set(inputs) | set(old.get("inputs", {})) if inputs.get(k) != old.get("inputs", {}).get(k))
                    raise RecsysError(
                        f"cannot resume {out}: its inputs changed ({', '.join(changed)}); "
                        "start a new output directory or pass --overwrite"
                    )
                self.completed = set(old.get("completed", []))
                self.generated_at = old["generated_at"]
                self.created = old.get("created")
            elif overwrite:
                for p in out.glob("*part-*.parquet*"):
                    p.unlink()
                self.completed, self.generated_at, self.created = set(), generated_at, None
            else:
                raise RecsysError(f"{out} already holds candidates; pass --resume to continue that run or --overwrite to replace it")
        else:
            out.mkdir(parents=True, exist_ok=True)
            self.completed, self.generated_at, self.created = set(), generated_at, None
        self.inputs, self.n_chunks = inputs, n_chunks
        self.save("running")

    def done(self, chunk: int) -> None:
        self.completed.add(chunk)
        self.save("complete" if len(self.completed) == self.n_chunks else "running")

    def save(self, status: str) -> None:
        write_manifest(self.out, {
            "kind": CANDIDATES_KIND,
            "status": status,
            "inputs": self.inputs,
            "generated_at": self.generated_at,
            "n_chunks": self.n_chunks,
            "completed": sorted(self.completed),
            "schema": OUTPUT_SCHEMA,
            "updated": utc_now(),
        })


def run_batch(
    job: BatchJob,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Score every chunk not yet completed; return a summary (users, rows, seconds, users/s)."""
    from recsys.service.histories import prepare_histories
    from recsys.service.retrieval import RetrievalService

    if job.k <= 0 or job.chunk_size <= 0:
        raise RecsysError("k and chunk size must be positive")
    if not (resume or overwrite) and _holds_output(job.out):  # before the (long) history preparation
        raise RecsysError(f"{job.out} already holds candidates; pass --resume to continue that run or --overwrite to replace it")
    if job.cooccurrence is not None and job.rerank is None:
        raise RecsysError("--cooccurrence merges candidates before reranking: it needs --rerank")
    # no interactions in memory: histories are prepared once under the output dir and read per chunk
    service = RetrievalService.open(
        job.index, dataset_dir=job.dataset, histories=False, rerank_run=job.rerank, rerank_inference=job.rerank_inference,
        rerank_depth=job.rerank_depth, cooccurrence=job.cooccurrence,
    )
    store = prepare_histories(service.dataset, job.out / HISTORIES_DIR)
    users = store.user_ids() if job.users == "all" else read_user_list(job.users, store.user_dtype)
    index_manifest = read_manifest(job.index)
    inputs = {
        "index_fingerprint": index_manifest.get("fingerprint"),
        "model_fingerprint": service.run_manifest["fingerprint"],
        "dataset_fingerprint": service.dataset.fingerprint,
        "users": fingerprint_bytes(users.hash(seed=0).to_numpy().tobytes()) if job.users != "all" else "all",
        "n_users": len(users),
        "k": job.k,
        "chunk_size": job.chunk_size,
    }
    if service.reranker is not None:
        inputs["reranker_fingerprint"] = service.reranker.fingerprint
        inputs["rerank_depth"] = min(job.k, service.reranker.depth)
        inputs["rerank_inference"] = service.reranker.inference
        if service.cooccurrence is not None:
            inputs["cooccurrence_fingerprint"] = service.cooccurrence.fingerprint
    n_chunks = -(-len(users) // job.chunk_size)

    def chunk_size(c: int) -> int:
        return min(job.chunk_size, len(users) - c * job.chunk_size)

    run = _Run(job.out, inputs, n_chunks, job.generated_at, resume, overwrite)
    todo = [c for c in range(n_chunks) if c not in run.completed]
    start = time.perf_counter()
    bar = _progress(sum(chunk_size(c) for c in todo), progress)
    if job.engine == "local":
        from concurrent.futures import Future, ThreadPoolExecutor

        def finish(pending: tuple[Future, int, int]) -> None:
            future, c, n = pending
            future.result()  # the part is on disk before the manifest records the chunk
            run.done(c)
            bar.update(n)
            if on_chunk:
                on_chunk(c)

        # three stages overlap: the next chunk's histories are read (parquet, GIL released) and the previous chunk's
        # output frame is built and written (polars + parquet) on two helper threads while this chunk is encoded and
        # searched, so on a machine with a spare core only the scoring itself is on the critical path
        def read(c: int) -> tuple[list[Any], Any]:
            ids = users.slice(c * job.chunk_size, job.chunk_size).to_list()
            return ids, store.histories(ids, service.catalogue_ids)

        def write(c: int, scored: Any) -> Path:
            return write_part(job.out, c, chunk_frame(service, scored, inputs["index_fingerprint"]))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recsys-part-writer") as writer, ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="recsys-history-reader"
        ) as reader:
            pending: tuple[Future, int, int] | None = None
            next_read = reader.submit(read, todo[0]) if todo else None
            for pos, c in enumerate(todo):
                ids, hist = next_read.result()  # type: ignore[union-attr]
                if pos + 1 < len(todo):
                    next_read = reader.submit(read, todo[pos + 1])
                scored = score_chunk_arrays(service, ids, job.k, run.generated_at, histories=hist)
                if pending is not None:
                    finish(pending)  # at most one write in flight
                pending = (writer.submit(write, c, scored), c, len(ids))
            if pending is not None:
                finish(pending)
    elif job.engine == "ray":
        from recsys.batch_ray import run_on_ray

        for c in run_on_ray(job, users, store.path, todo, run.generated_at, inputs["index_fingerprint"]):
            run.done(c)
            bar.update(chunk_size(c))
            if on_chunk:
                on_chunk(c)
    else:
        raise RecsysError(f"engine must be local or ray, not {job.engine!r}")
    bar.close()
    seconds = time.perf_counter() - start
    scored = sum(chunk_size(c) for c in todo)
    return {
        "out": str(job.out), "engine": job.engine, "users": len(users), "scored_now": scored,
        "chunks": n_chunks, "resumed_chunks": n_chunks - len(todo), "seconds": round(seconds, 2),
        "users_per_second": round(scored / seconds, 1) if seconds > 0 else None, "generated_at": run.generated_at,
    }


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="user", desc="batch-score", disable=not enabled, smoothing=0.1)


def read_candidates(out: Path | str) -> pl.DataFrame:
    """All parts of a complete run, sorted by (user_id, rank)."""
    out = Path(out)
    manifest = read_manifest(out, CANDIDATES_KIND)
    if manifest.get("status") != "complete":
        raise RecsysError(f"{out} is incomplete ({len(manifest.get('completed', []))}/{manifest.get('n_chunks')} chunks); rerun with --resume")
    return pl.read_parquet(sorted(out.glob("part-*.parquet"))).sort(["user_id", "rank"])
