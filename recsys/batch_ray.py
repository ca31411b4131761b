"""The Ray engine of batch scoring: the same chunks and the same ``score_chunk`` as the local engine, run by a
Ray Data ``map_batches`` actor pool (one model and index load per actor). Parts are written by the actors, so on
a cluster ``--out`` must be shared storage visible to every node.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from recsys.errors import RecsysError


def _ray():
    try:
        import ray
    except ImportError:
        raise RecsysError("the Ray engine needs Ray: pip install 'recsys[ray]'") from None
    return ray


class _ChunkScorer:
    """Ray actor: opens the retrieval service once, then scores and writes one chunk per call."""

    def __init__(self, index: str, dataset: str | None, k: int, generated_at: str, index_fp: str, out: str, rerank: dict[str, Any] | None = None) -> None:
        from recsys.retrieval import RetrievalService

        rerank = rerank or {}
        self.service = RetrievalService.open(
            index, dataset_dir=dataset, rerank_run=rerank.get("run"), rerank_inference=rerank.get("inference", "fp32"), rerank_depth=rerank.get("depth"),
            cooccurrence=rerank.get("cooccurrence"),
        )
        self.k, self.generated_at, self.index_fp, self.out = k, generated_at, index_fp, out

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from pathlib import Path

        from recsys.batch import score_chunk, write_part

        done = []
        for chunk, users in zip(batch["chunk"], batch["users"]):
            ids = users.tolist() if hasattr(users, "tolist") else list(users)
            frame = score_chunk(self.service, ids, self.k, self.generated_at, self.index_fp)
            write_part(Path(self.out), int(chunk), frame)
            done.append(int(chunk))
        return {"chunk": done}


def gpus_per_actor(ray: Any, requested: float | None) -> float:
    """GPUs each actor reserves: as requested, else one when the cluster has GPUs (the actor's index then loads on
    GPU FAISS and its text model in fp16, as ``RetrievalService.open(device="auto")`` does), else none."""
    if requested is not None:
        if requested < 0:
            raise RecsysError(f"GPUs per actor must be >= 0, got {requested}")
        return float(requested)
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def run_on_ray(job: Any, chunks: list[list[Any]], todo: list[int], generated_at: str, index_fp: str) -> Iterator[int]:
    """Yield chunk numbers as the actors finish them."""
    ray = _ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": False}
        if job.ray_address:
            kwargs["address"] = job.ray_address
        ray.init(**kwargs)
    if not todo:
        return
    rerank = None
    if job.rerank:
        rerank = {"run": str(job.rerank), "inference": job.rerank_inference, "depth": job.rerank_depth, "cooccurrence": str(job.cooccurrence) if job.cooccurrence else None}
    items = [{"chunk": c, "users": [str(u) for u in chunks[c]] if isinstance(chunks[c][0], str) else list(chunks[c])} for c in todo]
    ds = ray.data.from_items(items)
    scored = ds.map_batches(
        _ChunkScorer,
        fn_constructor_args=(str(job.index), str(job.dataset) if job.dataset else None, job.k, generated_at, index_fp, str(job.out), rerank),
        batch_size=1,
        concurrency=max(1, job.ray_actors),
        num_cpus=1,
        num_gpus=gpus_per_actor(ray, job.ray_gpus),
        batch_format="numpy",
    )
    for row in scored.iter_rows():
        yield int(row["chunk"])
