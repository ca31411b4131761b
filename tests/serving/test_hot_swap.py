"""Hot swap under load: a real uvicorn server in a thread, client threads firing requests while the index is
reloaded twice; every request must succeed (requests in flight finish on the old service)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.serving.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(retrieval_stack):
    import uvicorn

    from recsys.serving.app import create_app

    root, _ = retrieval_stack
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(root / "index", admin_token=ADMIN_TOKEN), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_reload_during_concurrent_requests_loses_none(live_server, retrieval_stack, second_index):
    import httpx

    root, ds = retrieval_stack
    users = ds.interactions["user_id"].unique().sort().head(20).to_list()
    stop = threading.Event()
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def fire(worker: int) -> None:
        with httpx.Client(base_url=live_server, timeout=60) as client:
            n = 0
            while not stop.is_set():
                if n % 2:
                    r = client.post("/recommend", json={"user_id": users[(worker + n) % len(users)], "k": 5})
                else:
                    r = client.get(f"/recommend/{users[(worker + n) % len(users)]}", params={"k": 5})
                fp = r.json().get("index_fingerprint") if r.status_code == 200 else r.text
                with lock:
                    results.append((r.status_code, fp))
                n += 1

    threads = [threading.Thread(target=fire, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        with httpx.Client(base_url=live_server, timeout=120, headers=auth) as admin:
            time.sleep(0.5)
            r = admin.post("/admin/reload", json={"index": str(second_index)})
            assert r.status_code == 200, r.text
            time.sleep(0.5)
            r = admin.post("/admin/reload", json={"index": str(root / "index")})
            assert r.status_code == 200, r.text
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    old = json.loads((root / "index" / "manifest.json").read_text())["fingerprint"]
    new = json.loads((second_index / "manifest.json").read_text())["fingerprint"]
    assert {fp for _, fp in results} == {old, new}
    assert len(results) >= 20
