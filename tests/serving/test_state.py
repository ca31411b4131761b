"""The service holder frees a replaced service once its last request is done (issue 16 item 3): unit test of the
mechanism, and a subprocess that reloads a real app with a ranking run and measures its RSS."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import time
import weakref

import pytest

from recsys.serving.state import ServiceHolder


class FakeLoaded:
    """Stands in for a Loaded service: holds a reference cycle, as the real one does (service <-> micro-batcher)."""

    def __init__(self) -> None:
        self.cycle = self
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _wait_dead(ref: weakref.ref, timeout: float = 3.0) -> bool:
    t0 = time.monotonic()
    while ref() is not None and time.monotonic() - t0 < timeout:
        time.sleep(0.02)
    return ref() is None


def test_replaced_service_is_freed_at_once_when_idle():
    gc.disable()  # only the holder's own reclaiming may free the cycle
    try:
        holder = ServiceHolder()
        first = FakeLoaded()
        ref = weakref.ref(first)
        holder.swap(first)
        del first
        holder.swap(FakeLoaded())
        assert ref() is None or ref().closed
        assert _wait_dead(ref)
    finally:
        gc.enable()


def test_replaced_service_lives_until_its_last_request_is_done():
    gc.disable()
    try:
        holder = ServiceHolder()
        holder.swap(FakeLoaded())
        in_use = holder.acquire()  # a request running on the first service
        ref = weakref.ref(in_use)
        holder.swap(FakeLoaded())
        time.sleep(0.5)
        assert ref() is in_use and in_use.closed  # still answering its request
        holder.release(in_use)
        del in_use
        assert _wait_dead(ref)
        assert holder.acquire() is holder.current
    finally:
        gc.enable()


RELOADS = 8
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from fastapi.testclient import TestClient
    from recsys.serving.app import create_app

    def rss_mib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))

    index_a, index_b, rerank, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    out = []
    with TestClient(create_app(index_a, admin_token="t", rerank_run=rerank)) as client:
        out.append(rss_mib())
        for i in range(n):
            r = client.post("/admin/reload", json={"index": index_b if i % 2 == 0 else index_a}, headers={"Authorization": "Bearer t"})
            assert r.status_code == 200, r.text
            time.sleep(0.5)
            out.append(rss_mib())
    print(json.dumps(out), flush=True)
    os._exit(0)  # skip interpreter teardown: an onnxruntime/torch thread can abort it (the figures are printed)
    """
)


@pytest.mark.slow
def test_memory_stays_flat_over_reloads_with_a_ranking_run(ranking_stack, second_index, tmp_path):
    """RSS after reload 2 vs after the last: without the fix each reload kept the previous service (retriever, index
    and ranking run each time); the tolerance is a quarter of what one extra service costs."""
    root, _ = ranking_stack
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(root / "index"), str(second_index), str(root / "rank"), str(RELOADS)],
        env=env, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rss = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = rss[-1] - rss[2]
    assert growth < 60, (growth, rss)


def test_compute_threads_reach_request_threads():
    """torch and FAISS keep their thread counts per thread: ``set_compute_threads`` (run on the serving loop's thread)
    must also hold on the worker thread a request runs on, not leave it at OpenMP's default."""
    import threading

    import faiss
    import torch

    from recsys.serving import state
    from recsys.serving.limits import StopFlag, _call

    def on_new_thread(fn):
        out = []
        t = threading.Thread(target=lambda: out.append(fn()))
        t.start()
        t.join()
        return out[0]

    default = on_new_thread(faiss.omp_get_max_threads)
    wanted = default + 1
    saved = (state._COMPUTE_THREADS, torch.get_num_threads())
    try:
        on_new_thread(lambda: state.set_compute_threads(wanted))  # as the lifespan does, on another thread
        assert on_new_thread(faiss.omp_get_max_threads) == default  # a plain new thread keeps OpenMP's default
        request_thread = on_new_thread(lambda: _call(lambda: (faiss.omp_get_max_threads(), torch.get_num_threads()), StopFlag()))
        assert request_thread == (wanted, wanted)
    finally:
        state._COMPUTE_THREADS = saved[0]
        torch.set_num_threads(saved[1])
