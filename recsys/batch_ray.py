"""The Ray engine of batch scoring: the same chunks and the same ``score_chunk`` as the local engine, run by a
Ray Data ``map_batches`` actor pool (one model and index load per actor). Each actor reads its chunks' histories
from the prepared history parts (``recsys.histories``), never the whole log. Parts are written by the actors, so on
a cluster ``--out`` and the histories cache (``BatchJob.histories_cache``) must be shared storage visible to every node.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from recsys.batch_chunks import score_chunk, write_part
from recsys.errors import RecsysError


#: Settings of a Ray instance the engine starts itself. Ray runs its workers at niceness +15 by default, so any job
#: at the caller's priority on the same machine takes the CPU from the actors first (docs/performance.md, "Ray engine
#: against local"). 0 keeps the actors at the caller's priority, as the local engine is.
LOCAL_RAY_SYSTEM_CONFIG: dict[str, Any] = {"worker_niceness": 0}


def _ray():
    try:
        import ray
    except ImportError:
        raise RecsysError("the Ray engine needs Ray: pip install 'recsys[ray]'") from None
    return ray


class _ChunkScorer:
    """Ray actor: opens the retrieval service (without histories) once, then reads, scores and writes one chunk per call."""

    def __init__(
        self, index: str, dataset: str | None, histories: str, users: list[Any], chunk_size: int,
        k: int, generated_at: str, index_fp: str, out: str, rerank: dict[str, Any] | None = None,
    ) -> None:
        from recsys.service.histories import HistoryStore
        from recsys.service.retrieval import RetrievalService

        ray = _ray()
        rerank = rerank or {}
        self.service = RetrievalService.open(
            index, dataset_dir=dataset, histories=False, rerank_run=rerank.get("run"), rerank_depth=rerank.get("depth"),
        )
        self.store = HistoryStore(histories)
        # the job's user list travels once, as one object-store reference (wrapped so Ray leaves it unresolved)
        self.users: pl.Series = ray.get(users[0])
        self.chunk_size, self.k, self.generated_at, self.index_fp, self.out = chunk_size, k, generated_at, index_fp, out

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = []
        for chunk in batch["chunk"]:
            c = int(chunk)
            ids = self.users.slice(c * self.chunk_size, self.chunk_size).to_list()
            hist = self.store.histories(ids, self.service.catalogue_ids)
            frame = score_chunk(self.service, ids, self.k, self.generated_at, self.index_fp, histories=hist)
            write_part(Path(self.out), c, frame)
            done.append(c)
        return {"chunk": done}


def gpus_per_actor(ray: Any, requested: float | None) -> float:
    """GPUs each actor reserves: as requested, else one when the cluster has GPUs (the actor's index then loads on
    GPU FAISS and its text model in fp16, as ``RetrievalService.open(device="auto")`` does), else none."""
    if requested is not None:
        if requested < 0:
            raise RecsysError(f"GPUs per actor must be >= 0, got {requested}")
        return float(requested)
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def run_on_ray(job: Any, users: pl.Series, histories: Path, todo: list[int], generated_at: str, index_fp: str) -> Iterator[int]:
    """Yield chunk numbers as the actors finish them (chunk c = users[c * chunk_size : (c + 1) * chunk_size])."""
    ray = _ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": False}
        if job.ray_address:
            kwargs["address"] = job.ray_address
        else:  # a cluster's own settings are its operator's
            kwargs["_system_config"] = LOCAL_RAY_SYSTEM_CONFIG
        ray.init(**kwargs)
    if not todo:
        return
    rerank = None
    if job.rerank:
        rerank = {"run": str(job.rerank), "depth": job.rerank_depth}
    ds = ray.data.from_items([{"chunk": c} for c in todo])
    scored = ds.map_batches(
        _ChunkScorer,
        fn_constructor_args=(
            str(job.index), str(job.dataset) if job.dataset else None, str(histories), [ray.put(users)], job.chunk_size,
            job.k, generated_at, index_fp, str(job.out), rerank,
        ),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=max(1, job.ray_actors)),
        num_cpus=1,
        num_gpus=gpus_per_actor(ray, job.ray_gpus),
        batch_format="numpy",
    )
    for row in scored.iter_rows():
        yield int(row["chunk"])
