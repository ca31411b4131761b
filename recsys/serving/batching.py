"""Micro-batching of concurrent user encodes.

Each request's ``RetrievalService.recommend`` encodes one user with ``service.user_vectors``. A new user known by a
profile text runs the sentence-transformers model, which is not thread-safe (one call at a time) and costs tens of
milliseconds per call, far less per extra text in the same call: encoding the texts of concurrent requests together
is much cheaper than one after the other. :func:`install` replaces the
``user_vectors`` of one service object (an instance attribute shadowing the method: ``recommend`` itself is the
library's, unchanged) with a :class:`MicroBatcher` that queues the calls and lets a single worker thread encode
whatever has queued up in one call.

No request waits for a batch to fill: the worker takes everything queued when it becomes free (at concurrency 1
a request is encoded at once; under load batches form while the previous one runs). If a batched call fails (e.g.
one request is a user with neither history nor profile), each call of the batch is retried alone so the error
reaches only its own request. Text encodes (profiles) happen on the worker thread, under ``text_lock``.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from contextlib import nullcontext
from typing import Any

import numpy as np
import polars as pl

#: Most users encoded in one call.
MAX_BATCH = 64


class MicroBatcher:
    def __init__(
        self, encode: Any, *, text_lock: Any = None, max_batch: int = MAX_BATCH, batch_if: Any = None, name: str = "recsys-batcher"
    ) -> None:
        self._encode = encode  # the service's original bound user_vectors
        self._batch_if = batch_if  # (histories, contexts, profiles) -> bool; other calls run directly, unbatched
        self._text_lock = text_lock
        self.max_batch = int(max_batch)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self.calls = 0  # encode calls made (for tests and metrics)
        self.batched = 0  # user encodes served
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __call__(self, histories: list[np.ndarray], contexts: pl.DataFrame | None, profiles: list | None = None) -> np.ndarray:
        if self._batch_if is not None and not self._batch_if(histories, contexts, profiles):
            return self._encode(histories, contexts, profiles)
        future: Future = Future()
        with self._lock:
            queued = not self._closed and threading.current_thread() is not self._thread
            if queued:
                self._queue.put((histories, contexts, profiles, future))
        if not queued:
            return self._call(histories, contexts, profiles)
        return future.result()

    def close(self) -> None:
        """Stop the worker once the calls queued so far are served; later calls encode directly, on their own thread."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)

    def _call(self, histories, contexts, profiles) -> np.ndarray:
        with self._text_lock if self._text_lock is not None else nullcontext():
            return self._encode(histories, contexts, profiles)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._serve(batch)
            if stop:
                return

    def _serve(self, batch: list) -> None:
        groups: dict[tuple, list] = {}
        for item in batch:  # calls are merged only when their context frames have one schema
            histories, contexts, profiles, _ = item
            key = (None if contexts is None else tuple(contexts.schema.items()), profiles is None)
            groups.setdefault(key, []).append(item)
        for items in groups.values():
            if len(items) == 1:
                self._single(items[0])
                continue
            try:
                histories = [h for it in items for h in it[0]]
                contexts = None if items[0][1] is None else pl.concat([it[1] for it in items], how="vertical")
                profiles = None if items[0][2] is None else [p for it in items for p in it[2]]
                vectors = self._call(histories, contexts, profiles)
            except BaseException:  # noqa: BLE001 - one bad call must not fail the others: retry each alone
                for item in items:
                    self._single(item)
                continue
            self.calls += 1
            lo = 0
            for it in items:
                n = len(it[0])
                it[3].set_result(vectors[lo : lo + n])
                self.batched += n
                lo += n

    def _single(self, item) -> None:
        histories, contexts, profiles, future = item
        try:
            result = self._call(histories, contexts, profiles)
        except BaseException as exc:  # noqa: BLE001 - delivered to the waiting request
            future.set_exception(exc)
            return
        self.calls += 1
        self.batched += len(histories)
        future.set_result(result)


def encodes_text(service: Any):
    """Predicate: does a ``user_vectors`` call run the text model (a user without history, or a profile model)?"""
    uses_profiles = bool(service.model.args.use_profiles)

    def check(histories, contexts, profiles) -> bool:
        return uses_profiles or any(len(h) == 0 for h in histories)

    return check


def install(service: Any, *, text_lock: Any = None, max_batch: int = MAX_BATCH, only_text: bool = True) -> MicroBatcher:
    """Route ``service.user_vectors`` through a new MicroBatcher (``uninstall`` or ``batcher.close()`` to stop it).

    ``only_text``: batch only the calls that run the text model (MiniLM, tens of ms per call, must run one at a
    time); history-only encodes (cheap with a frozen item table) run directly on the request's thread, where
    batching them costs more than it saves (docs/serving.md, "Measured latency").
    """
    batcher = MicroBatcher(service.user_vectors, text_lock=text_lock, max_batch=max_batch, batch_if=encodes_text(service) if only_text else None)
    service.user_vectors = batcher
    return batcher


def uninstall(service: Any) -> None:
    batcher = service.__dict__.pop("user_vectors", None)
    if isinstance(batcher, MicroBatcher):
        batcher.close()
