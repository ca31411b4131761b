"""The hot-swappable service: :class:`Loaded` (a warmed-up RetrievalService and what /ready says about it),
:func:`load_service`, and :class:`ServiceHolder`, the one reference every request reads at its start.

A hot swap replaces that reference; requests already running keep the old object until they return, and nothing
else holds it (the holder keeps no history), so it is freed once its last request finishes.
"""

from __future__ import annotations

import asyncio
import ctypes
import datetime as dt
import gc
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recsys.data import schema as S
from recsys.manifest import read_manifest
from recsys.serving.batching import install
from recsys.serving.schemas import ReadyResponse

#: Process-wide: the sentence-transformers model (shared by every loaded service) is not thread-safe.
TEXT_MODEL_LOCK = threading.Lock()


@dataclass(frozen=True)
class Loaded:
    """A loaded, warmed-up RetrievalService and what /ready and /metrics say about it."""

    service: Any  # RetrievalService
    model_fingerprint: str
    index_fingerprint: str
    dataset_fingerprint: str
    index_type: str
    loaded_at: str
    uses_text_model: bool  # every request encodes text (a model trained with profiles)
    item_rows: dict[Any, int] = field(repr=False)
    ranker_fingerprint: str | None = None
    rerank_run: str | None = None
    rerank_depth: int | None = None
    batcher: Any = None  # a MicroBatcher encoding the users of concurrent requests together, or None

    def close(self) -> None:
        """Stop the micro-batcher (requests still running on this service then encode on their own thread)."""
        if self.batcher is not None:
            self.batcher.close()

    def describe(self) -> ReadyResponse:
        return ReadyResponse(
            status="ready",
            model_fingerprint=self.model_fingerprint,
            index_fingerprint=self.index_fingerprint,
            dataset_fingerprint=self.dataset_fingerprint,
            index_items=len(self.service.index),
            ranker_fingerprint=self.ranker_fingerprint,
            loaded_at=self.loaded_at,
        )

    @property
    def user_dtype(self) -> pl.DataType:
        return self.service.histories.user_dtype

    @property
    def item_dtype(self) -> pl.DataType:
        return self.service.dataset.items.schema[S.ITEM_ID]


def load_service(
    index_dir: Path | str,
    *,
    dataset_dir: Path | str | None = None,
    run_dir: Path | str | None = None,
    micro_batch: bool = True,
    rerank_run: Path | str | None = None,
    rerank_depth: int | None = None,
) -> Loaded:
    """Open the service and warm it up (text model loaded, one search run, one ranking), so the first request is not
    slow; with ``micro_batch``, concurrent requests' user encodes are batched (:mod:`recsys.serving.batching`)."""
    from recsys.service.retrieval import RetrievalService

    service = RetrievalService.open(
        index_dir, dataset_dir=dataset_dir, run_dir=run_dir, rerank_run=rerank_run, rerank_depth=rerank_depth,
    )
    index_fp = str(read_manifest(Path(index_dir), kind="index").get("fingerprint", "unknown"))
    users = service.histories.user_ids
    with TEXT_MODEL_LOCK:
        service.model.encode_items(["warm-up"])
        if len(users):
            service.recommend(users[0], k=1)
    items = service.dataset.items[S.ITEM_ID].to_list()
    batcher = None
    if micro_batch:
        batcher = install(service, text_lock=TEXT_MODEL_LOCK)
    return Loaded(
        service=service,
        model_fingerprint=str(service.run_manifest["fingerprint"]),
        index_fingerprint=index_fp,
        dataset_fingerprint=service.dataset.fingerprint,
        index_type=service.index.index_type,
        loaded_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        uses_text_model=bool(service.model.args.use_profiles),
        item_rows={v: i for i, v in enumerate(items)},
        ranker_fingerprint=service.ranker.fingerprint if service.ranker is not None else None,
        rerank_run=str(rerank_run) if rerank_run is not None else None,
        rerank_depth=rerank_depth,
        batcher=batcher,
    )


class ServiceHolder:
    """The current service, replaced by one reference assignment (atomic); reloads serialised by ``reload_lock``.

    Requests take the service with :meth:`acquire` and give it back with :meth:`release`; a replaced service is
    reclaimed (:func:`reclaim_memory`) once its last request has given it back. The holder keeps no other reference,
    so at most the current service plus those still answering requests are in memory.
    """

    def __init__(self) -> None:
        self.current: Loaded | None = None
        self.reload_lock = asyncio.Lock()
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # id(Loaded) -> requests running on it

    def acquire(self) -> Loaded | None:
        """The current service, counted as in use until :meth:`release` (None while nothing is loaded)."""
        with self._lock:
            loaded = self.current
            if loaded is not None:
                self._in_flight[id(loaded)] = self._in_flight.get(id(loaded), 0) + 1
            return loaded

    def release(self, loaded: Loaded) -> None:
        """A request is done with ``loaded``; the last request on a replaced service triggers its reclaiming."""
        with self._lock:
            left = self._in_flight.get(id(loaded), 1) - 1
            if left > 0:
                self._in_flight[id(loaded)] = left
            else:
                self._in_flight.pop(id(loaded), None)
            drained = left <= 0 and loaded is not self.current
        if drained:
            schedule_reclaim()

    def swap(self, loaded: Loaded | None) -> None:
        """Make ``loaded`` the service new requests get; the previous one stops its batcher and is reclaimed now if
        no request runs on it, else when its last request returns."""
        with self._lock:
            previous, self.current = self.current, loaded
            idle = previous is not None and id(previous) not in self._in_flight
        if previous is not None:
            previous.close()
        del previous
        if idle:
            schedule_reclaim()


#: Seconds between a replaced service's last use and its reclaiming (the request's own frames let go of it first).
RECLAIM_DELAY_S = 0.2


def schedule_reclaim(delay: float = RECLAIM_DELAY_S) -> None:
    """:func:`reclaim_memory` on a short-lived background thread, ``delay`` seconds from now."""
    timer = threading.Timer(delay, reclaim_memory)
    timer.daemon = True
    timer.start()


def reclaim_memory() -> None:
    """Free a replaced service: its objects form reference cycles (the micro-batcher holds the service's bound
    method), which only the cycle collector frees; then hand the freed heap back to the OS (glibc ``malloc_trim``),
    so RSS does not keep the high-water mark of every reload."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


#: The ``threads`` of :func:`set_compute_threads` (None: not set, libraries keep their defaults).
_COMPUTE_THREADS: int | None = None
_THREAD_SETTING = threading.local()


def set_compute_threads(n: int) -> None:
    """Intra-op threads of torch and FAISS (OpenMP) for this process. Serving parallelises across requests, so 1
    is usually best: on a busy machine, per-request thread teams spin and wait for each other.

    Both libraries keep the count per thread (FAISS's is an OpenMP per-thread setting; torch reads its global one
    into each thread once), so it holds on this thread, on threads started later (torch) and on each thread that
    calls :func:`use_compute_threads`, as every request's worker thread does before its work."""
    global _COMPUTE_THREADS
    if n >= 1:
        _COMPUTE_THREADS = int(n)
        use_compute_threads()


def use_compute_threads() -> None:
    """Apply :func:`set_compute_threads`'s count to torch and FAISS on the calling thread, once per thread and count.
    Without it a request thread ran FAISS with OpenMP's default (every core), whose idle team kept spinning after each
    search and took a core from the event loop (docs/performance.md, "Learned ranking stage latency")."""
    n = _COMPUTE_THREADS
    if n is None or getattr(_THREAD_SETTING, "n", None) == n:
        return
    import faiss
    import torch

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    _THREAD_SETTING.n = n
