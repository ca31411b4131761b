"""Serving with a ranking run: the real app, real MiniLM retriever, real FAISS and LightGBM ranker, through HTTP."""

from __future__ import annotations

import concurrent.futures as cf

import polars as pl
import pytest

from tests.serving.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ranked(ranking_stack):
    from fastapi.testclient import TestClient

    from recsys.serving.app import create_app
    from recsys.serving.settings import ServeSettings

    root, ds = ranking_stack
    settings = ServeSettings(max_candidates=300, rerank_queue_wait_s=120, request_timeout_s=300)  # a shared CI machine can be slow
    app = create_app(root / "index", admin_token=ADMIN_TOKEN, rerank_run=root / "rank", rerank_depth=8, settings=settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, root, ds


def _user(ds):
    return int(ds.interactions["user_id"].min())


def test_get_ranks_by_default_and_can_turn_it_off(ranked):
    client, _, ds = ranked
    user = _user(ds)
    r = client.get(f"/recommend/{user}", params={"k": 5, "context": "time=evening,device=mobile"})
    assert r.status_code == 200, r.text
    body = r.json()
    scores = [it["rerank_score"] for it in body["items"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True) and body["ranker_fingerprint"]
    assert all(it["score"] == it["rerank_score"] and it["reasons"]["sources"] for it in body["items"])
    assert all((it["retrieval_score"] is not None) == ("retriever" in it["reasons"]["sources"]) for it in body["items"])
    plain = client.get(f"/recommend/{user}", params={"k": 5, "rerank": "false"}).json()
    assert all(it["rerank_score"] is None for it in plain["items"]) and plain["ranker_fingerprint"] is None
    ready = client.get("/ready").json()
    assert ready["ranker_fingerprint"] == body["ranker_fingerprint"]


def test_get_exclude_and_candidates(ranked):
    client, _, ds = ranked
    user = _user(ds)
    first = client.get(f"/recommend/{user}", params={"k": 3, "candidates": 5}).json()["items"]
    drop = [it["item_id"] for it in first[:2]]
    again = client.get(f"/recommend/{user}", params={"k": 3, "candidates": 5, "exclude": ",".join(map(str, drop))}).json()["items"]
    assert not set(drop) & {it["item_id"] for it in again}
    bad = client.get(f"/recommend/{user}", params={"exclude": "1,notanid"})
    assert bad.status_code == 422 and "notanid" in bad.json()["detail"]
    assert client.get(f"/recommend/{user}", params={"candidates": 0}).status_code == 422


def test_ranked_work_is_bounded_by_candidates_never_k(ranked):
    """k above what was ranked: the ranked list first, the rest in retrieval order; the ranker reads at most
    ``candidates`` retrieved items whatever k is."""
    client, _, ds = ranked
    user = _user(ds)
    body = client.get(f"/recommend/{user}", params={"k": 100}).json()
    ranked_items = [it for it in body["items"] if it["rerank_score"] is not None]
    assert body["items"][: len(ranked_items)] == ranked_items
    assert sum("retriever" in it["reasons"]["sources"] for it in ranked_items) <= 8  # the server's depth, not k
    tail = [it["retrieval_score"] for it in body["items"][len(ranked_items) :]]
    assert tail and tail == sorted(tail, reverse=True)
    assert len({it["item_id"] for it in body["items"]}) == len(body["items"])
    body = client.post("/recommend", json={"user_id": user, "k": 100, "candidates": 5}).json()
    assert sum("retriever" in it["reasons"].get("sources", []) for it in body["items"] if it["rerank_score"] is not None) <= 5
    r = client.get(f"/recommend/{user}", params={"candidates": 301})
    assert r.status_code == 422 and "max_candidates" in r.json()["detail"]


def test_post_explain_has_the_rankers_reasons_and_history(ranked):
    client, _, ds = ranked
    user = _user(ds)
    seen = set(ds.interactions.filter(pl.col("user_id") == user)["item_id"].to_list())
    r = client.post("/recommend", json={"user_id": user, "k": 2, "context": {"time": "morning", "device": "desktop"}, "explain": True})
    assert r.status_code == 200, r.text
    for it in r.json()["items"]:
        assert it["reasons"]["closest_history_item"] in seen and it["reasons"]["history"]
        assert it["reasons"]["ranker"] and all(isinstance(x, float) for x in it["reasons"]["contributions"].values())


def test_concurrent_ranked_requests_all_succeed(ranked):
    client, _, ds = ranked
    users = ds.interactions["user_id"].unique().sort().head(8).to_list()
    with cf.ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda u: client.get(f"/recommend/{u}", params={"k": 3, "candidates": 6}).status_code, users))
    assert codes == [200] * len(users)


def test_rerank_on_a_server_without_a_ranking_run_is_400(served):
    client, _, ds = served
    r = client.get(f"/recommend/{_user(ds)}", params={"rerank": "true"})
    assert r.status_code == 400 and "no ranking run" in r.json()["detail"]


def test_reload_keeps_the_ranking_run_and_serves_added_items(ranked, second_index):
    client, _, ds = ranked
    before = client.get("/ready").json()["ranker_fingerprint"]
    r = client.post("/admin/reload", json={"index": str(second_index)}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.json()["current"]["ranker_fingerprint"] == before
    # the added item (only in the new index, outside the ranking run's catalogue) still reaches a new user's list
    body = client.post("/recommend", json={"history": [int(ds.items["item_id"][0])], "k": 200, "candidates": 8}).json()
    assert 990_001 in {it["item_id"] for it in body["items"]}
