"""Per-request bounds on ranking: a deadline, a bounded queue for the second stage, and abandonment.

* :class:`RerankGate` admits at most ``rerank_concurrency`` reranked requests at once; the others wait at most
  ``rerank_queue_wait_s`` and then get 503 with ``Retry-After``, so one expensive request cannot hold every other
  one behind it for long. Every recommendation request has a deadline (``request_timeout_s``, 503 past it).
* A request whose client disconnected or whose deadline passed is *abandoned*: its worker thread stops at the next
  :func:`checkpoint` (before its ranking runs) instead of computing a list nobody will read; its slot is released
  only once the thread has stopped, so the bound holds.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from recsys.serving.settings import ServeSettings
from recsys.serving.state import use_compute_threads

T = TypeVar("T")

#: How often a running request checks whether its client is still there (seconds).
POLL_S = 0.05


class RequestAbandoned(Exception):
    """Raised at a checkpoint of a request whose client left or whose deadline passed."""


class StopFlag:
    """Set (with a reason) by the event loop, read by the request's worker thread at its checkpoints."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        self.reason = reason


_CURRENT: contextvars.ContextVar[StopFlag | None] = contextvars.ContextVar("recsys_request_stop", default=None)


def checkpoint() -> None:
    """Raise :class:`RequestAbandoned` if the request running on this thread was abandoned."""
    flag = _CURRENT.get()
    if flag is not None and flag.reason is not None:
        raise RequestAbandoned(flag.reason)


class RerankGate:
    """Runs recommendation work on the thread pool under the limits of ``settings`` (see the module docstring)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.rerank_concurrency)

    def _busy(self, message: str) -> HTTPException:
        return HTTPException(503, message, headers={"Retry-After": str(self.settings.retry_after_s)})

    async def run(self, request: Request, work: Callable[[], T], *, reranked: bool) -> T:
        """``work()`` on a worker thread; 503 + Retry-After when no rerank slot frees up in time or the deadline passes."""
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.request_timeout_s
        if reranked:
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=min(s.rerank_queue_wait_s, s.request_timeout_s))
            except TimeoutError:
                raise self._busy(
                    f"the server is busy reranking other requests (no slot within {s.rerank_queue_wait_s:g} s); retry later or send rerank=false"
                ) from None
        try:
            flag = StopFlag()
            task = asyncio.ensure_future(run_in_threadpool(_call, work, flag))
            while True:
                if await request.is_disconnected():
                    flag.set("the client disconnected")
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    flag.set("deadline passed")
                    break
                done, _ = await asyncio.wait({task}, timeout=min(POLL_S, remaining))
                if done:
                    return task.result()
            try:
                await task  # the thread stops at its next checkpoint; the slot is released after that
            except RequestAbandoned:
                pass
            except Exception:  # noqa: BLE001 - the request is answered 503 anyway
                pass
            raise self._busy(f"the request did not finish within its deadline of {s.request_timeout_s:g} s ({flag.reason}); retry later")
        finally:
            if reranked:
                self._slots.release()


def _call(work: Callable[[], T], flag: StopFlag) -> T:
    use_compute_threads()
    token = _CURRENT.set(flag)
    try:
        return work()
    finally:
        _CURRENT.reset(token)
