"""The serving app's middlewares and error handlers on a minimal FastAPI app (no model): the body limit passes
bodies up to the limit intact and refuses bad Content-Length headers; every error is ``{"detail": str}`` with the
right status. (413s and request metrics through the real app: tests/serving/test_app.py.)"""

from __future__ import annotations

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from recsys.errors import RecsysError
from recsys.serving.metrics import Metrics, parse_exposition
from recsys.serving.middleware import BodyLimitMiddleware, MetricsMiddleware, install_error_handlers

LIMIT = 1000


@pytest.fixture(scope="module")
def client():
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        body = await request.body()
        return {"size": len(body), "head": body[:8].decode(), "tail": body[-8:].decode()}

    @app.get("/fail/{kind}")
    async def fail(kind: str) -> dict:
        if kind == "http":
            raise HTTPException(503, "busy", headers={"Retry-After": "7"})
        if kind == "library":
            raise RecsysError("column user_id is missing")
        raise KeyError("secret internals")

    @app.get("/typed/{n}")
    async def typed(n: int) -> dict:
        return {"n": n}

    metrics = Metrics()
    app.add_middleware(BodyLimitMiddleware, limit=LIMIT)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.router.routes)
    install_error_handlers(app)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.metrics = metrics
        yield c


def test_bodies_up_to_the_limit_arrive_intact(client):
    body = b"head0123" + b"x" * (LIMIT - 16) + b"tail4567"
    r = client.post("/echo", content=body)
    assert r.status_code == 200 and r.json() == {"size": LIMIT, "head": "head0123", "tail": "tail4567"}

    def chunks():  # streamed without Content-Length: counted, then replayed whole to the app
        yield b"head0123"
        yield b"y" * 100
        yield b"tail4567"

    r = client.post("/echo", content=chunks())
    assert r.status_code == 200 and r.json() == {"size": 116, "head": "head0123", "tail": "tail4567"}


def test_one_byte_over_is_413_and_bad_content_length_is_400(client):
    r = client.post("/echo", content=b"z" * (LIMIT + 1))
    assert r.status_code == 413 and f"{LIMIT + 1} bytes" in r.json()["detail"]
    r = client.post("/echo", content=b"abc", headers={"content-length": "three"})
    assert r.status_code == 400 and r.json() == {"detail": "invalid Content-Length header"}


def test_error_shapes(client):
    r = client.get("/fail/http")
    assert r.status_code == 503 and r.json() == {"detail": "busy"} and r.headers["retry-after"] == "7"
    r = client.get("/fail/library")  # a library error is the caller's: 422 with its message
    assert r.status_code == 422 and r.json() == {"detail": "column user_id is missing"}
    r = client.get("/fail/other")  # a fault: 500 naming the type only, never the message
    assert r.status_code == 500 and r.json() == {"detail": "internal error: KeyError"}
    r = client.get("/typed/x")
    assert r.status_code == 422 and r.json()["detail"].startswith("path.n:") and r.json()["errors"][0]["loc"] == ["path", "n"]
    r = client.get("/nowhere")
    assert r.status_code == 404 and isinstance(r.json()["detail"], str)


def test_metrics_name_the_route_template_and_count_faults(client):
    client.get("/typed/1")
    client.get("/typed/2")
    client.get("/fail/other")
    client.get("/nowhere")
    seen = parse_exposition(client.metrics.render())
    assert seen['recsys_http_requests_total{method="GET",endpoint="/typed/{n}",status="200"}'] >= 2
    assert seen['recsys_http_requests_total{method="GET",endpoint="/fail/{kind}",status="500"}'] >= 1
    assert not any("/nowhere" in key for key in seen)  # unmatched paths share one label, not one each
