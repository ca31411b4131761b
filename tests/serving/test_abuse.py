"""One abuse test per input defect of issue 16 (items 4, 5, 6, 8): each answers a clear 4xx, never a 500."""

from __future__ import annotations

import pytest

from recsys.serving.metrics import parse_exposition
from tests.serving.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.slow  # the real model and index

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _user(ds) -> int:
    return int(ds.interactions["user_id"].unique().sort()[0])


def test_infinite_context_hour_is_422(served):
    client, _, ds = served
    raw = b'{"user_id": %d, "context": {"hour": 1e400}}' % _user(ds)  # JSON 1e400 parses to an infinite float
    r = client.post("/recommend", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "context" in r.json()["detail"]
    r = client.get(f"/recommend/{_user(ds)}", params={"context": "hour=1e400"})
    assert r.status_code == 422 and "hour" in r.json()["detail"], r.text


def test_unknown_http_methods_share_one_metric_label(served):
    client, _, _ = served
    for i in range(20):
        client.request(f"M{i}{'X' * 2000}", "/health")
    samples = parse_exposition(client.get("/metrics").text)
    methods = {key.split('method="')[1].split('"')[0] for key in samples if key.startswith("recsys_http_requests_total{")}
    assert methods <= {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "other"}, methods
    assert samples['recsys_http_requests_total{method="other",endpoint="/health",status="405"}'] >= 20


def test_reload_with_an_over_long_path_is_a_clear_4xx(served):
    client, _, _ = served
    before = client.get("/ready").json()
    r = client.post("/admin/reload", json={"index": "/tmp/" + "a" * 300}, headers=AUTH)  # one name over NAME_MAX
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "cannot read" in detail and "too long" in detail.lower() and "previous index" in detail and "OSError" not in detail
    r = client.post("/admin/reload", json={"index": "a/" * 5000}, headers=AUTH)  # over the schema's path limit
    assert r.status_code == 422 and "index" in r.json()["detail"], r.text
    r = client.post("/admin/reload", json={"index": "/tmp/x\x00y"}, headers=AUTH)
    assert r.status_code == 422 and "NUL" in r.json()["detail"], r.text
    assert client.get("/ready").json() == before


@pytest.mark.parametrize("path", ["%201%20", "1_0", "%D9%A1", "+1", "0x1", "1.0"])
def test_ids_are_parsed_strictly(served, path):
    client, _, _ = served
    r = client.get(f"/recommend/{path}")
    assert r.status_code == 422, (path, r.text)
    assert "not an integer" in r.json()["detail"]
    assert client.get(f"/items/{path}").status_code == 422


@pytest.mark.parametrize("field", [{"k": "5"}, {"k": True}, {"k": 5.0}, {"rerank": 0}, {"explain": "yes"}, {"candidates": "10"}])
def test_post_body_types_are_strict(served, field):
    client, _, ds = served
    r = client.post("/recommend", json={"user_id": _user(ds), **field})
    assert r.status_code == 422, (field, r.text)
    assert next(iter(field)) in r.json()["detail"]


def test_http_errors_do_not_speak_cli(served):
    client, _, _ = served
    r = client.post("/recommend", json={"history": [987654321]})  # no item of the catalogue, no profile
    assert r.status_code == 422 and "--" not in r.json()["detail"], r.text
    r = client.post("/recommend", json={"user_id": 987654321})
    assert r.status_code == 404 and "--" not in r.json()["detail"], r.text
    r = client.post("/recommend", json={"user_id": 987654321, "rerank": True, "profile": "x"})
    assert r.status_code == 400 and "--" not in r.json()["detail"], r.text


def test_docs_work_offline(served):
    client, _, _ = served
    page = client.get("/docs")
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    assert client.get("/openapi.json").status_code == 200
