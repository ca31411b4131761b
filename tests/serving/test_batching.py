"""MicroBatcher on a stand-in encoder (no model): batches form under concurrency, results go to the right caller,
one failing call does not fail the others, closing never strands a caller."""

from __future__ import annotations

import threading
import time

import numpy as np
import polars as pl
import pytest

from recsys.serving.batching import MicroBatcher


class FakeEncoder:
    """user_vectors stand-in: row i's vector is [sum(history_i)]; an empty history without profile fails."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay, self.calls, self.sizes = delay, 0, []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, histories, contexts, profiles):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            if any(len(h) == 0 and not (profiles and p) for h, p in zip(histories, profiles or [None] * len(histories))):
                raise ValueError("a user with no history needs a profile")
            assert contexts is None or contexts.height == len(histories)
            self.calls += 1
            self.sizes.append(len(histories))
            return np.asarray([[float(np.sum(h))] for h in histories], dtype=np.float32)
        finally:
            with self._lock:
                self.active -= 1


def _fire(batcher, inputs):
    out: dict[int, object] = {}

    def call(i, hist, prof):
        ctx = pl.DataFrame({"timestamp": [i], "device": ["tv"]})
        try:
            out[i] = batcher([np.asarray(hist)], ctx, [prof])
        except Exception as exc:  # noqa: BLE001
            out[i] = exc

    threads = [threading.Thread(target=call, args=(i, h, p)) for i, (h, p) in enumerate(inputs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return out


def test_concurrent_calls_are_batched_and_routed():
    enc = FakeEncoder()
    batcher = MicroBatcher(enc)
    inputs = [([i, i + 1], None) for i in range(24)]
    out = _fire(batcher, inputs)
    for i in range(24):
        assert out[i].tolist() == [[float(2 * i + 1)]]
    assert enc.calls < 24 and max(enc.sizes) > 1
    assert enc.max_active == 1  # one encode at a time (the text model is not thread-safe)
    batcher.close()


def test_a_failing_call_fails_alone():
    enc = FakeEncoder()
    batcher = MicroBatcher(enc)
    inputs = [([i + 1], None) for i in range(10)] + [([], None)] + [([], {"text": "jazz"})]
    out = _fire(batcher, inputs)
    assert isinstance(out[10], ValueError)
    assert all(out[i].tolist() == [[float(i + 1)]] for i in range(10))
    assert out[11].tolist() == [[0.0]]
    batcher.close()


def test_batch_if_bypasses_the_queue():
    enc = FakeEncoder(delay=0.0)
    batcher = MicroBatcher(enc, batch_if=lambda h, c, p: False)
    assert batcher([np.asarray([2, 3])], None, [None]).tolist() == [[5.0]]
    assert batcher.calls == 0  # never went through the worker
    batcher.close()


def test_close_never_strands_callers():
    enc = FakeEncoder(delay=0.005)
    batcher = MicroBatcher(enc)
    results = []

    def loop():
        for i in range(30):
            results.append(batcher([np.asarray([i])], None, [None]).item())

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.03)
    batcher.close()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert len(results) == 120
    assert batcher([np.asarray([7])], None, [None]).item() == 7.0  # after close: encoded on the caller's thread


@pytest.mark.parametrize("n", [1, 3])
def test_lock_is_taken_around_encodes(n):
    lock = threading.Lock()
    seen = []
    batcher = MicroBatcher(lambda h, c, p: seen.append(lock.locked()) or np.zeros((len(h), 1), np.float32), text_lock=lock)
    _fire(batcher, [([1], None)] * n)
    assert seen and all(seen)
    batcher.close()
