"""The rerank stage behind retrieve/batch/serve: real bundled MiniLM cross-encoder, real FAISS, small demo data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from recsys.errors import ManifestMismatchError, RecsysError
from recsys.service.retrieval import RetrievalService

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(rerank_stack):
    root, _ = rerank_stack
    return RetrievalService.open(root / "index", rerank_run=root / "rerank", rerank_depth=10)


def _user(ds):
    return ds.interactions["user_id"].unique().sort()[0]


def test_rerank_orders_the_retrieved_candidates_by_the_cross_encoder(service, rerank_stack):
    _, ds = rerank_stack
    user = _user(ds)
    ctx = {"time": "evening", "device": "mobile", "timestamp": "2026-11-27T12:00:00+00:00"}
    plain = service.recommend(user, k=10, rerank=False, context=ctx)
    reranked = service.recommend(user, k=10, context=ctx)
    # same candidate set (depth 10 = k), reordered by the rerank score, each carrying both scores
    assert {r.item_id for r in reranked} == {r.item_id for r in plain}
    scores = [r.rerank_score for r in reranked]
    assert scores == sorted(scores, reverse=True) and all(r.score == r.rerank_score for r in reranked)
    retrieval = {r.item_id: r.score for r in plain}
    assert all(r.retrieval_score == pytest.approx(retrieval[r.item_id], abs=1e-5) for r in reranked)
    # the scores are the cross-encoder's on the texts the stage renders (not a relabelled retrieval score)
    stage = service.reranker
    hist = service.histories.history(int(service.histories.rows([user])[0]))[1].tolist()
    from recsys.context import context_frame

    request = context_frame(ctx, service.known_context_keys).row(0, named=True)
    ids = [r.item_id for r in reranked]
    kw = dict(contexts=[request], profiles=[service.profiles([user])[0]])
    again = stage.score([hist], [ids], retrieval_scores=[[retrieval[i] for i in ids]], **kw)[0]
    np.testing.assert_allclose(again, scores, atol=1e-4)
    # served score = cross-encoder logit + the run's validated weight x retriever cosine
    logits = stage.score([hist], [ids], **kw)[0]
    np.testing.assert_allclose(np.asarray(scores) - logits, stage.retrieval_weight * np.array([retrieval[i] for i in ids]), atol=1e-3)


def test_rerank_depth_widens_the_candidate_pool(service, rerank_stack):
    _, ds = rerank_stack
    user = _user(ds)
    seen = set(ds.interactions.filter(pl.col("user_id") == user)["item_id"].to_list())
    deep = service.recommend(user, k=5, depth=40)
    top40 = {r.item_id for r in service.recommend(user, k=40, rerank=False)}
    assert len(deep) == 5 and {r.item_id for r in deep} <= top40 and not seen & {r.item_id for r in deep}


def test_explain_names_history_items_and_context_effects(service, rerank_stack):
    _, ds = rerank_stack
    user = _user(ds)
    seen = set(ds.interactions.filter(pl.col("user_id") == user)["item_id"].to_list())
    recs = service.recommend(user, k=3, context={"time": "morning", "device": "desktop"}, explain=True)
    for r in recs:
        support = r.reasons["history"]
        assert support and all(s["item_id"] in seen for s in support)
        sims = [s["similarity"] for s in support]
        assert sims == sorted(sims, reverse=True)
        assert "all" in r.reasons["context"] and "device" in r.reasons["context"]
    json.dumps([r.to_dict() for r in recs])  # JSON-able


def test_reranker_of_another_retriever_is_refused(rerank_stack, tmp_path):
    root, _ = rerank_stack
    shutil.copytree(root / "rerank", tmp_path / "rerank")
    manifest = json.loads((tmp_path / "rerank" / "manifest.json").read_text())
    manifest["retriever_fingerprint"] = "0" * 16
    (tmp_path / "rerank" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestMismatchError, match="retrain"):
        RetrievalService.open(root / "index", rerank_run=tmp_path / "rerank")


def test_rerank_without_a_reranker_is_a_clear_error(rerank_stack):
    root, ds = rerank_stack
    svc = RetrievalService.open(root / "index")
    with pytest.raises(RecsysError, match="no reranker"):
        svc.recommend(_user(ds), k=3, rerank=True)


def test_added_item_is_rerankable_by_its_text(rerank_stack, tmp_path):
    from recsys.index.build import add_items

    root, ds = rerank_stack
    shutil.copytree(root / "index", tmp_path / "index")
    new_id = int(ds.items["item_id"].max()) + 1
    add_items(tmp_path / "index", pl.DataFrame({"item_id": [new_id], "title": ["Hand-Forged Damascus Chef Knife"], "category": ["kitchen"]}))
    svc = RetrievalService.open(tmp_path / "index", rerank_run=root / "rerank")
    scores = svc.reranker.score([[]], [[new_id, int(ds.items["item_id"][0])]])[0]
    assert scores.shape == (2,) and np.isfinite(scores).all()
    with pytest.raises(RecsysError, match="no text"):
        svc.reranker.score([[]], [[new_id + 1]])


def test_cooccurrence_candidates_join_the_reranked_pool(rerank_stack, tmp_path):
    from recsys.service.cooccurrence import CooccurrenceSource

    root, ds = rerank_stack
    CooccurrenceSource.fit(ds, neighbours=20).save(tmp_path / "co")
    svc = RetrievalService.open(root / "index", rerank_run=root / "rerank", rerank_depth=5, cooccurrence=tmp_path / "co")
    user = _user(ds)
    seen = set(ds.interactions.filter(pl.col("user_id") == user)["item_id"].to_list())
    hist = svc.histories.history(int(svc.histories.rows([user])[0]))[1].tolist()
    co_ids, _ = svc.cooccurrence.candidates(hist, 10, exclude=hist)
    when = {"timestamp": "2026-11-27T21:00:00+00:00"}
    two_tower = [r.item_id for r in svc.recommend(user, k=10, rerank=False, context=when)]
    pool = list(dict.fromkeys(two_tower + co_ids))
    assert len(pool) > 10 and not seen & set(pool)
    recs = svc.recommend(user, k=10, depth=10, context=when)
    # the top 10 of the whole merged pool by the cross-encoder
    from recsys.context import context_frame

    request = context_frame(when, svc.known_context_keys).row(0, named=True)
    plain = {r.item_id: r.score for r in svc.recommend(user, k=len(ds.items), rerank=False, context=when)}
    z = svc.reranker.score([hist], [pool], contexts=[request], profiles=svc.profiles([user]), retrieval_scores=[[plain[i] for i in pool]])[0]
    assert [r.item_id for r in recs] == [pool[j] for j in np.argsort(-z, kind="stable")[:10]]
    for r in recs:
        expected = "both" if r.item_id in co_ids and r.item_id in two_tower else ("co-occurrence" if r.item_id in co_ids else "two-tower")
        assert r.reasons["source"] == expected
    # retrieval scores of co-occurrence-only items are their two-tower cosines
    assert all(r.retrieval_score == pytest.approx(plain[r.item_id], abs=1e-4) for r in recs)


def test_cooccurrence_of_another_dataset_is_refused(rerank_stack, tmp_path):
    from recsys.service.cooccurrence import CooccurrenceSource
    from recsys.data.demo import generate_demo

    root, _ = rerank_stack
    other, _ = generate_demo(users=30, items=20, seed=9, interactions_per_user=5)
    CooccurrenceSource.fit(other, neighbours=5).save(tmp_path / "co")
    with pytest.raises(ManifestMismatchError, match="build-cooccurrence"):
        RetrievalService.open(root / "index", cooccurrence=tmp_path / "co")


def test_default_inference_is_onnx_when_onnxruntime_is_installed(service):
    from recsys.onnx import onnx_available
    from recsys.service.rerank import resolve_inference

    expected = "onnx" if onnx_available()[0] else "fp32"
    assert resolve_inference("auto") == expected and service.reranker.inference == expected
    assert resolve_inference("onnx-int8") == "onnx-int8"
