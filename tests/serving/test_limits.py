"""The rerank gate (deadline, bounded queue answering 503 + Retry-After, abandoned requests stop) and the chunked
rerank stage that lets an abandoned request stop between chunks; the reranked depth never follows k."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi import HTTPException

from recsys.serving.limits import RequestAbandoned, RerankGate, checkpoint
from recsys.serving.settings import ServeSettings


class FakeRequest:
    """What the gate reads of a request: whether its client is still connected."""

    def __init__(self, disconnect_after: float | None = None) -> None:
        self.t0, self.after = time.monotonic(), disconnect_after

    async def is_disconnected(self) -> bool:
        return self.after is not None and time.monotonic() - self.t0 >= self.after


def _until_stopped(log: list) -> str:
    """Work that runs until its request is abandoned (checking like the chunked stage does)."""
    while True:
        try:
            checkpoint()
        except RequestAbandoned as exc:
            log.append(str(exc))
            raise
        time.sleep(0.01)


def test_queue_wait_is_bounded_and_answers_503_with_retry_after():
    async def scenario():
        gate = RerankGate(ServeSettings(rerank_concurrency=1, rerank_queue_wait_s=0.2, retry_after_s=3))
        release = threading.Event()
        first = asyncio.ensure_future(gate.run(FakeRequest(), lambda: release.wait(60) and "first", reranked=True))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(HTTPException) as exc:
            await gate.run(FakeRequest(), lambda: "second", reranked=True)
        waited = time.monotonic() - t0
        assert await gate.run(FakeRequest(), lambda: "not reranked", reranked=False) == "not reranked"  # no queue
        release.set()
        assert await first == "first"
        assert await gate.run(FakeRequest(), lambda: "third", reranked=True) == "third"  # the slot came back
        return exc.value, waited

    err, waited = asyncio.run(scenario())
    assert err.status_code == 503 and err.headers == {"Retry-After": "3"} and "busy" in err.detail
    assert 0.15 <= waited < 30  # bounded by the queue wait (plus a busy machine's scheduling), not by the first request


def test_deadline_stops_the_work_and_answers_503():
    log: list[str] = []

    async def scenario():
        gate = RerankGate(ServeSettings(request_timeout_s=0.3))
        t0 = time.monotonic()
        with pytest.raises(HTTPException) as exc:
            await gate.run(FakeRequest(), lambda: _until_stopped(log), reranked=True)
        return exc.value, time.monotonic() - t0

    err, took = asyncio.run(scenario())
    assert err.status_code == 503 and "deadline" in err.detail and "Retry-After" in err.headers
    assert log == ["deadline passed"] and took < 3.0


def test_a_disconnected_client_stops_its_work_and_frees_the_slot():
    log: list[str] = []

    async def scenario():
        gate = RerankGate(ServeSettings(rerank_concurrency=1, rerank_queue_wait_s=5))
        with pytest.raises(HTTPException):
            await gate.run(FakeRequest(disconnect_after=0.1), lambda: _until_stopped(log), reranked=True)
        t0 = time.monotonic()
        assert await gate.run(FakeRequest(), lambda: "next", reranked=True) == "next"
        return time.monotonic() - t0

    waited = asyncio.run(scenario())
    assert log == ["the client disconnected"] and waited < 1.0
