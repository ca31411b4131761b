"""The HTTP API end to end: real model and FAISS index (the session's ``retrieval_stack``), FastAPI TestClient."""

from __future__ import annotations

import json

import polars as pl
import pytest

from recsys.serving.metrics import parse_exposition
from tests.serving.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.slow  # the real model and index


def _known_user(ds) -> int:
    return int(ds.interactions["user_id"].unique().sort()[0])


def _seen(ds, user) -> set:
    return set(ds.interactions.filter(pl.col("user_id") == user)["item_id"].to_list())


def _metric(client) -> dict[str, float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return parse_exposition(r.text)


# ------------------------------------------------------------------------------------------ endpoints
def test_health_and_ready(served):
    client, root, _ = served
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["index_items"] > 0
    manifest = json.loads((root / "index" / "manifest.json").read_text())
    assert body["index_fingerprint"] == manifest["fingerprint"]
    assert body["model_fingerprint"] == manifest["model_fingerprint"]


def test_get_recommend_known_user(served):
    client, _, ds = served
    user = _known_user(ds)
    r = client.get(f"/recommend/{user}", params={"k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == user and body["k"] == 7 and body["explanation"] is None
    items = body["items"]
    assert [it["rank"] for it in items] == list(range(1, 8))
    assert not _seen(ds, user) & {it["item_id"] for it in items}
    assert [it["score"] for it in items] == sorted((it["score"] for it in items), reverse=True)
    assert all(it["title"] for it in items)


def test_get_recommend_with_context_and_explain(served):
    client, _, ds = served
    user = _known_user(ds)
    r = client.get(f"/recommend/{user}", params={"k": 5, "context": "time=evening,device=mobile", "explain": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    exp = body["explanation"]
    assert exp["history_length"] == len(ds.interactions.filter(pl.col("user_id") == user))
    assert exp["cold_start"] is False and exp["context"]["timestamp"].startswith(exp["context"]["timestamp"][:10])
    assert "T20:00" in exp["context"]["timestamp"]  # time=evening
    seen = _seen(ds, user)
    for it in body["items"]:
        assert it["reasons"]["closest_history_item"] in seen
        assert -1.0 <= it["reasons"]["similarity"] <= 1.0


def test_post_recommend_known_user_exclude(served):
    client, _, ds = served
    user = _known_user(ds)
    first = client.post("/recommend", json={"user_id": user, "k": 5}).json()["items"]
    banned = [first[0]["item_id"], first[1]["item_id"]]
    r = client.post("/recommend", json={"user_id": user, "k": 5, "exclude": banned, "context": {"device": "tv", "weekday": "sat"}})
    assert r.status_code == 200, r.text
    ids = [it["item_id"] for it in r.json()["items"]]
    assert len(ids) == 5 and not set(banned) & set(ids) and not _seen(ds, user) & set(ids)


def test_post_recommend_new_user_history_and_profile(served):
    client, _, ds = served
    history = ds.items["item_id"].head(3).to_list()
    r = client.post("/recommend", json={"history": history, "k": 4})
    assert r.status_code == 200, r.text
    ids = [it["item_id"] for it in r.json()["items"]]
    assert len(ids) == 4 and not set(history) & set(ids)
    # an unknown user id with a history is a new user, not a 404
    r = client.post("/recommend", json={"user_id": 987_654_321, "history": history, "k": 4})
    assert r.status_code == 200 and [it["item_id"] for it in r.json()["items"]] == ids
    r = client.post("/recommend", json={"profile": "loves italian cooking: pasta, risotto and pesto", "k": 3, "explain": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 3 and body["explanation"]["cold_start"] is True and body["explanation"]["profile_used"] is True


def test_item_endpoint(served):
    client, _, ds = served
    row = ds.items.row(0, named=True)
    r = client.get(f"/items/{row['item_id']}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["item_id"] == row["item_id"] and body["in_index"] is True
    assert body["fields"]["title"] == row["title"]
    assert client.get("/items/123456789").status_code == 404
    assert client.get("/items/not-a-number").status_code == 422


def test_openapi_lists_endpoints(served):
    client, _, _ = served
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/recommend/{user_id}", "get"), ("/recommend", "post"), ("/items/{item_id}", "get"), ("/health", "get"),
        ("/ready", "get"), ("/metrics", "get"), ("/admin/reload", "post"),
    ]:
        assert method in paths[path], path
    schemas = spec["components"]["schemas"]
    assert {"RecommendRequest", "RecommendResponse", "RecommendedItem", "ItemResponse", "ReloadRequest"} <= set(schemas)
    k = schemas["RecommendRequest"]["properties"]["k"]
    assert k["minimum"] == 1 and k["maximum"] == 1000
    assert client.get("/docs").status_code == 200


# ------------------------------------------------------------------------------------------ bad input
def test_unknown_user_is_404(served):
    client, _, _ = served
    for r in (client.get("/recommend/987654321"), client.post("/recommend", json={"user_id": 987654321})):
        assert r.status_code == 404 and "unknown user" in r.json()["detail"]


@pytest.mark.parametrize("k", [0, -1, 1001, "many"])
def test_bad_k_is_422(served, k):
    client, _, ds = served
    user = _known_user(ds)
    assert client.get(f"/recommend/{user}", params={"k": k}).status_code == 422
    r = client.post("/recommend", json={"user_id": user, "k": k})
    assert r.status_code == 422 and "k" in r.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [b"{", b"not json", b'{"user_id": 1,}', b"[1, 2]", b"\xff\xfe\x00", b"", b'"text"', b"null"],
)
def test_malformed_json_is_4xx(served, body):
    client, _, _ = served
    r = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), (body, r.status_code, r.text)
    assert isinstance(r.json()["detail"], str)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"user_id": 1, "surprise": True},  # unknown field
        {"user_id": True},
        {"user_id": 1.5},
        {"user_id": "abc"},  # integer ids in this dataset
        {"user_id": 2**70},
        {"history": ["x", "y"]},
        {"history": []},  # no history and no profile
        {"profile": ""},
        {"history": [1], "context": {"hour": "25"}},
        {"history": [1], "context": {"time": "teatime"}},
        {"history": [1], "context": {"timestamp": "yesterday"}},
        {"history": [1], "context": {"timestamp": "9999-12-31T23:00:00", "weekday": "mon"}},
        {"history": [1], "context": ["time", "evening"]},
    ],
)
def test_bad_bodies_are_422(served, payload):
    client, _, _ = served
    r = client.post("/recommend", json=payload)
    assert r.status_code == 422, (payload, r.status_code, r.text)
    assert r.json()["detail"]


def test_bad_path_ids(served):
    client, _, _ = served
    for path in ("/recommend/abc", f"/recommend/{2**70}", "/recommend/1.5", "/items/1e3"):
        r = client.get(path)
        assert r.status_code == 422, (path, r.text)
        assert "integer" in r.json()["detail"]


def test_unknown_context_key_lists_known_keys(served):
    client, _, ds = served
    user = _known_user(ds)
    for r in (
        client.get(f"/recommend/{user}", params={"context": "moon=full"}),
        client.post("/recommend", json={"user_id": user, "context": {"moon": "full"}}),
    ):
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert "moon" in detail and "device" in detail and "time" in detail
    r = client.get(f"/recommend/{user}", params={"context": "evening"})  # not key=value
    assert r.status_code == 422 and "key=value" in r.json()["detail"]


def test_oversized_body_is_413(served):
    client, _, _ = served
    big = json.dumps({"profile": "x" * (1 << 20)})
    r = client.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: streamed, counted
        for _ in range(20):
            yield b" " * 65536

    r = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    # a body under the limit with a long (but allowed) profile still works
    r = client.post("/recommend", json={"profile": "jazz " * 1000, "k": 2})
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------------------ metrics
def test_metrics_count_requests(served):
    client, root, ds = served
    user = _known_user(ds)
    before = _metric(client)
    ok_key = 'recsys_http_requests_total{method="GET",endpoint="/recommend/{user_id}",status="200"}'
    nf_key = 'recsys_http_requests_total{method="GET",endpoint="/recommend/{user_id}",status="404"}'
    bad_key = 'recsys_http_requests_total{method="POST",endpoint="/recommend",status="422"}'
    big_key = 'recsys_http_requests_total{method="POST",endpoint="/recommend",status="413"}'
    count_key = 'recsys_http_request_duration_seconds_count{endpoint="/recommend/{user_id}"}'
    for _ in range(3):
        assert client.get(f"/recommend/{user}", params={"k": 2}).status_code == 200
    assert client.get("/recommend/987654321").status_code == 404
    assert client.post("/recommend", json={"k": 0}).status_code == 422
    assert client.post("/recommend", content=b"x" * (2 << 20)).status_code == 413
    after = _metric(client)
    assert after[ok_key] - before.get(ok_key, 0) == 3
    assert after[nf_key] - before.get(nf_key, 0) == 1
    assert after[bad_key] - before.get(bad_key, 0) == 1
    assert after[big_key] - before.get(big_key, 0) == 1
    assert after[count_key] - before.get(count_key, 0) == 4
    inf = 'recsys_http_request_duration_seconds_bucket{endpoint="/recommend/{user_id}",le="+Inf"}'
    assert after[inf] == after[count_key]
    manifest = json.loads((root / "index" / "manifest.json").read_text())
    info = [k for k in after if k.startswith("recsys_model_info{")]
    assert len(info) == 1 and manifest["fingerprint"] in info[0] and manifest["model_fingerprint"] in info[0]
    assert after["recsys_index_items"] == manifest["count"]


# ------------------------------------------------------------------------------------------ admin reload
def test_reload_needs_a_configured_token(retrieval_stack):
    from fastapi.testclient import TestClient

    from recsys.serving.app import create_app

    root, _ = retrieval_stack
    client = TestClient(create_app(root / "index", admin_token=None))  # no lifespan: nothing loaded, auth only
    import os

    if os.environ.get("RECSYS_ADMIN_TOKEN"):
        pytest.skip("RECSYS_ADMIN_TOKEN is set in this environment")
    assert client.post("/admin/reload", json={"index": str(root / "index")}).status_code == 404


def test_reload_auth(served):
    client, root, _ = served
    body = {"index": str(root / "index")}
    assert client.post("/admin/reload", json=body).status_code == 401
    assert client.post("/admin/reload", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.post("/admin/reload", json=body, headers={"X-Admin-Token": "wrong"}).status_code == 403
    assert client.post("/admin/reload", json=body, headers={"Authorization": "Basic " + ADMIN_TOKEN}).status_code == 401
    assert client.post("/admin/reload", json=body, headers={"Authorization": "Bearer tøken".encode("latin-1")}).status_code == 403


def test_failed_reload_keeps_serving(served, tmp_path):
    client, _, ds = served
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    before = client.get("/ready").json()
    r = client.post("/admin/reload", json={"index": str(tmp_path / "missing")}, headers=auth)
    assert r.status_code == 400 and "does not exist" in r.json()["detail"] and "previous" in r.json()["detail"]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "manifest.json").write_text("{not json")
    r = client.post("/admin/reload", json={"index": str(tmp_path / "junk")}, headers=auth)
    assert 400 <= r.status_code < 600 and r.json()["detail"]
    assert client.get("/ready").json() == before
    assert client.get(f"/recommend/{_known_user(ds)}").status_code == 200
    text = client.get("/metrics").text
    assert 'recsys_reloads_total{result="client_error"}' in text


def test_reload_swaps_index(served, second_index):
    client, root, _ = served
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        r = client.post("/admin/reload", json={"index": str(second_index)}, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        new_fp = json.loads((second_index / "manifest.json").read_text())["fingerprint"]
        assert body["current"]["index_fingerprint"] == new_fp != body["previous"]["index_fingerprint"]
        assert client.get("/ready").json()["index_fingerprint"] == new_fp
        assert client.get("/items/990001").json() == {"item_id": 990001, "fields": {"title": "Serving Test Item"}, "in_index": True}
        assert new_fp in client.get("/metrics").text
    finally:  # back to the original for the other tests
        assert client.post("/admin/reload", json={"index": str(root / "index")}, headers=auth).status_code == 200
    assert client.get("/items/990001").status_code == 404
