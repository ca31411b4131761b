"""One ranking path: retrieve, batch-score, serve and the pipeline model give the same request the same order.

Real data layer, real MiniLM retriever run, real exact FAISS index, real LightGBM ranking run (``ranking_stack``).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.errors import ManifestMismatchError, RecsysError

pytestmark = pytest.mark.slow
runner = CliRunner()
WHEN = "2026-01-02T20:00:00"
K = 10


def _user(ds) -> int:
    return int(ds.interactions["user_id"].min())


def _retrieve(root, user, *extra):
    result = runner.invoke(app, ["retrieve", "-i", str(root / "index"), "--user", str(user), "-k", str(K), "--rerank", str(root / "rank"),
                                 "--context", f"timestamp={WHEN}", "--json", *extra])  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_same_order_from_retrieve_batch_serve_and_the_pipeline_model(ranking_stack, tmp_path):
    from fastapi.testclient import TestClient

    from recsys.batch import BatchJob, run_batch
    from recsys.context import context_frame
    from recsys.data.types import Cases, Sequences
    from recsys.evaluation.split import encode, leave_one_out
    from recsys.models.pipeline import PipelineRecommender
    from recsys.serving.app import create_app

    root, ds = ranking_stack
    user = _user(ds)
    out = _retrieve(root, user)
    order = [r["item_id"] for r in out["items"]]
    assert len(order) == K and out["ranker"]["sources"] == ["retriever", "ease", "cooccurrence", "popularity"]
    assert any(r["retrieval_score"] is None for r in out["items"]) or any("ease" in r["reasons"]["sources"] for r in out["items"])

    # batch-score
    users = tmp_path / "users.csv"
    pl.DataFrame({"user_id": [user]}).write_csv(users)
    job = BatchJob(index=root / "index", out=tmp_path / "cands", users=str(users), k=K, rerank=root / "rank", generated_at=WHEN + "+00:00")
    run_batch(job, progress=False)
    batch = pl.read_parquet(tmp_path / "cands" / "part-00000.parquet").sort("rank")
    assert batch["item_id"].to_list() == order
    np.testing.assert_allclose(batch["rerank_score"].to_numpy(), [r["rerank_score"] for r in out["items"]], rtol=1e-6)

    # serve (HTTP)
    with TestClient(create_app(root / "index", rerank_run=root / "rank")) as client:
        r = client.get(f"/recommend/{user}", params={"k": K, "context": f"timestamp={WHEN}"})
        assert r.status_code == 200, r.text
        assert [it["item_id"] for it in r.json()["items"]] == order and r.json()["ranker_fingerprint"]

    # the pipeline model's score() under the harness, from the same saved runs
    enc = encode(ds)
    split = leave_one_out(enc)
    model = PipelineRecommender.from_runs(root / "rank", root / "run", split.train_full)
    u = int(np.flatnonzero(enc.user_ids == user)[0])
    hist = enc.events.filter(pl.col("u") == u)["i"].to_numpy().astype(np.int32)
    seq = Sequences(np.array([0, len(hist)]), hist)
    ctx = context_frame({"timestamp": WHEN}, ds.context_columns)
    scores = model.score(Cases(np.array([u]), seq, np.array([0]), seq, ctx))
    top = np.argsort(-scores[0], kind="stable")[:K]
    assert enc.item_ids[top].tolist() == order


def test_explanations_in_the_table_json_and_http(ranking_stack):
    from fastapi.testclient import TestClient

    from recsys.serving.app import create_app

    root, ds = ranking_stack
    user = _user(ds)
    out = _retrieve(root, user, "--explain")
    first = out["items"][0]["reasons"]
    assert first["ranker"] and all(isinstance(s, str) and s for s in first["ranker"]) and first["contributions"]
    table = runner.invoke(app, ["retrieve", "-i", str(root / "index"), "--user", str(user), "-k", "3", "--rerank", str(root / "rank"), "--explain"])
    assert table.exit_code == 0, table.output
    assert "proposed by:" in table.output and any(w in table.output for w in ("you watched", "popular", "similar to", "often"))
    with TestClient(create_app(root / "index", rerank_run=root / "rank")) as client:
        body = client.post("/recommend", json={"user_id": user, "k": 3, "explain": True}).json()
        assert body["items"][0]["reasons"]["ranker"] and body["items"][0]["reasons"]["contributions"]


def test_a_ranking_run_of_another_retriever_is_refused_and_changes_nothing(ranking_stack, tmp_path):
    from recsys.service.ranking import RankingStage

    root, ds = ranking_stack
    other = tmp_path / "rank"
    shutil.copytree(root / "rank", other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["retriever"]["fingerprint"] = "0" * 16
    (other / "manifest.json").write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in other.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["retrieve", "-i", str(root / "index"), "--user", str(_user(ds)), "--rerank", str(other)])
    assert result.exit_code == 2
    assert "0" * 16 in result.output and "recsys train ranker" in result.output
    with pytest.raises(ManifestMismatchError, match="0{16}"):
        RankingStage.open(other, retriever_fingerprint=json.loads((root / "rank" / "manifest.json").read_text())["retriever"]["fingerprint"])
    batch = runner.invoke(app, ["batch-score", "-i", str(root / "index"), "-o", str(tmp_path / "cands"), "--rerank", str(other)])
    assert batch.exit_code == 2 and not (tmp_path / "cands").exists()
    assert {p.name: p.read_bytes() for p in other.rglob("*") if p.is_file()} == before


def test_bad_requests_get_clear_errors(ranking_stack):
    from recsys.context import context_frame
    from recsys.service.ranking import RankingStage, RankRequest

    root, ds = ranking_stack
    stage = RankingStage.open(root / "rank")
    request = RankRequest(np.array([1, 2, 3]), np.array([4, 5]), np.array([0.5, 0.4]))
    assert len(stage.rank([request])[0].items) >= 2
    odd = context_frame({"timestamp": WHEN}, []).with_columns(moon_phase=pl.lit("full"))
    with pytest.raises(RecsysError, match="unknown context keys.*moon_phase"):
        stage.rank([RankRequest(np.array([1]), np.array([4]), np.array([0.5]), odd)])
    with pytest.raises(RecsysError, match="catalogue of"):
        stage.rank([RankRequest(np.array([1]), np.array([10**6]), np.array([0.5]))])
    stage.ranker.feature_names_ = [*stage.ranker.feature_names_, "no_such_feature"]
    with pytest.raises(RecsysError, match="no_such_feature"):
        stage.rank([request])


def test_train_ranker_cli_refuses_a_retriever_of_another_dataset(retrieval_stack, tmp_path):
    from recsys.data.demo import generate_demo

    root, _ = retrieval_stack
    other, src = generate_demo(users=40, items=30, seed=9, interactions_per_user=6)
    other.save(tmp_path / "other", source=src)
    result = runner.invoke(app, ["train", "ranker", str(tmp_path / "other"), "--retriever", str(root / "run"), "--out", str(tmp_path / "rank")])
    assert result.exit_code == 2 and "recsys train retriever" in result.output and not (tmp_path / "rank").exists()


def test_full_scores_put_the_ranking_first_then_retriever_order():
    from recsys.service.ranking import Ranking, full_scores

    retrieval = np.array([[0.9, 0.1, 0.5, 0.3, -np.inf]], dtype=np.float32)
    ranking = Ranking(np.array([3, 4]), np.array([2.0, 1.0], dtype=np.float32), np.array([0.3, np.nan]), [["retriever"], ["ease"]])
    scores = full_scores([ranking], retrieval)
    assert np.argsort(-scores[0], kind="stable").tolist() == [3, 4, 0, 2, 1]
