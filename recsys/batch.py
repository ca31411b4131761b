"""Nightly batch scoring: top-k candidates for every user, streamed to parquet parts, resumable.

The job is a list of fixed user chunks. Each chunk is scored (encode users -> batched FAISS search with seen-item
filtering) and written atomically as ``part-NNNNN.parquet``; the manifest records the completed chunks and the
fingerprints of every input, so ``resume`` continues exactly where a killed run stopped and refuses changed inputs.
Engines: ``local`` (this process) and ``ray`` (a Ray Data pipeline with one model load per actor); both run the
same ``score_chunk`` (``recsys.batch_chunks``), so their outputs are identical. Neither holds the interaction log:
its histories are prepared once in a cache directory (``$RECSYS_CACHE/histories`` unless the job names one) and read
per chunk (``recsys.histories``), so memory stays flat as users grow and ``OUT`` holds only the candidates and their
manifest (``pl.read_parquet("OUT/**/*.parquet")`` reads the candidates and nothing else).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recsys.batch_chunks import OUTPUT_SCHEMA, chunk_frame, score_chunk_arrays, write_part
from recsys.batch_ray import run_on_ray
from recsys.data import schema as S
from recsys.errors import DataValidationError, RecsysError
from recsys.service.histories import HISTORIES_DIR
from recsys.manifest import cache_dir, check_replaceable, fingerprint_bytes, read_manifest, utc_now, write_manifest

CANDIDATES_KIND = "candidates"
#: where earlier versions prepared histories, inside the output directory
_LEGACY_HISTORIES_DIR = ".histories"


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
    rerank: Path | None = None  # a ranking run (recsys train ranker): ranks each user's top rerank_depth with its other sources
    rerank_depth: int | None = None  # default and most: the ranking run's depth
    histories_cache: Path | None = None  # where histories are prepared (default: $RECSYS_CACHE/histories); shared storage for Ray on a cluster
    generated_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())

    def __post_init__(self) -> None:
        # paths may be given as strings from Python
        for name in ("index", "out", "dataset", "rerank", "histories_cache"):
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
    except pl.exceptions.NoDataError:
        raise DataValidationError("the user list is empty (expected a user_id column and at least one user)", file=str(path)) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataValidationError(f"cannot read: {str(exc).splitlines()[0]}", file=str(path)) from None
    if S.USER_ID not in names:
        raise DataValidationError(f"a user list needs a '{S.USER_ID}' column (found: {', '.join(names)})", file=str(path), column=S.USER_ID)
    try:
        users = lazy.select(pl.col(S.USER_ID)).collect()[S.USER_ID]
    except pl.exceptions.PolarsError as exc:
        raise DataValidationError(f"cannot read: {str(exc).splitlines()[0]}", file=str(path), column=S.USER_ID) from None
    if users.is_empty():
        raise DataValidationError("the user list has no users", file=str(path), column=S.USER_ID)
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


def _previous_run(out: Path, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """The manifest of the candidates already in ``out`` when they may be resumed or replaced; None when ``out`` is
    free. Refuses, before anything is written: a directory recsys did not write (always), another kind of artefact
    (without ``overwrite``), candidates (without ``resume`` or ``overwrite``)."""
    if not check_replaceable(out, CANDIDATES_KIND, overwrite=overwrite) or not any(out.iterdir()):
        return None
    old = read_manifest(out)
    if old.get("kind") != CANDIDATES_KIND:
        return old  # another kind, replaced (overwrite)
    if not (resume or overwrite):
        raise RecsysError(f"{out} already holds candidates; pass --resume to continue that run or --overwrite to replace it")
    return old


class _Run:
    """Manifest bookkeeping of one output directory (``old``: what ``_previous_run`` found there)."""

    def __init__(
        self, out: Path, old: dict[str, Any] | None, inputs: dict[str, Any], n_chunks: int, generated_at: str, resume: bool
    ) -> None:
        self.out = out
        self.completed, self.generated_at, self.created = set(), generated_at, None
        if old is not None and old.get("kind") != CANDIDATES_KIND:
            shutil.rmtree(out)  # a recsys artefact of another kind, replaced with --overwrite
        elif old is not None and resume:
            if old.get("inputs") != inputs:
                changed = sorted(k for k in set(inputs) | set(old.get("inputs", {})) if inputs.get(k) != old.get("inputs", {}).get(k))
                raise RecsysError(f"cannot resume {out}: its inputs changed ({', '.join(changed)}); start a new output directory or pass --overwrite")
            self.completed = set(old.get("completed", []))
            self.generated_at = old["generated_at"]
            self.created = old.get("created")
        elif old is not None:  # --overwrite: our parts go (and prepared histories that older versions kept here)
            for part in [*out.glob("part-*.parquet"), *out.glob(".part-*.parquet.tmp-*")]:
                part.unlink()
            shutil.rmtree(out / _LEGACY_HISTORIES_DIR, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
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
    if job.engine not in ("local", "ray"):
        raise RecsysError(f"engine must be local or ray, not {job.engine!r}")
    previous = _previous_run(job.out, resume=resume, overwrite=overwrite)  # before the (long) history preparation
    # nothing is written to job.out until every input is checked: a refused run leaves it as it was
    # no interactions in memory: histories are prepared once in the cache and read per chunk
    service = RetrievalService.open(job.index, dataset_dir=job.dataset, histories=False, rerank_run=job.rerank, rerank_depth=job.rerank_depth)
    store = prepare_histories(service.dataset, job.histories_cache or cache_dir(HISTORIES_DIR))
    users = store.user_ids() if job.users == "all" else read_user_list(job.users, store.user_dtype)
    unknown = users.filter(~users.is_in(store.user_ids().implode()))
    if len(unknown):
        raise DataValidationError(
            f"{len(unknown)} listed user(s) have no history in dataset {service.dataset.path}", file=job.users, column=S.USER_ID, value=unknown[0]
        )
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
    if service.ranker is not None:
        inputs["ranker_fingerprint"] = service.ranker.fingerprint
        inputs["rerank_depth"] = service.ranker.depth
    n_chunks = -(-len(users) // job.chunk_size)

    def chunk_size(c: int) -> int:
        return min(job.chunk_size, len(users) - c * job.chunk_size)

    run = _Run(job.out, previous, inputs, n_chunks, job.generated_at, resume)
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
    else:
        for c in run_on_ray(job, users, store.path, todo, run.generated_at, inputs["index_fingerprint"]):
            run.done(c)
            bar.update(chunk_size(c))
            if on_chunk:
                on_chunk(c)
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
