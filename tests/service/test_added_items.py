"""Items added to an index after the ranking run (``recsys index add-items``) are ranked among the others, and the
reasons follow the catalogue's verb. Real MiniLM retriever, exact FAISS index and LightGBM run (``ranking_stack``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.errors import ManifestMismatchError
from recsys.index.build import add_items
from recsys.service.retrieval import RetrievalService

pytestmark = pytest.mark.slow
runner = CliRunner()
WHEN = "2026-01-02T20:00:00"
NEW = [900_001, 900_002, 900_003]


@pytest.fixture(scope="module")
def added(ranking_stack, tmp_path_factory):
    """A copy of the stack's index with three new items: second editions of the first user's top retrieved items
    (their text reworded a little, so the retriever proposes them); returns (root, index dir, user, new items)."""
    root, ds = ranking_stack
    user = int(ds.interactions["user_id"].min())
    index_dir = tmp_path_factory.mktemp("added") / "index"
    shutil.copytree(root / "index", index_dir)
    top = [r.item_id for r in RetrievalService.open(index_dir).recommend(user, k=3)]
    originals = ds.items.filter(pl.col("item_id").is_in(top))
    new = originals.with_columns(
        item_id=pl.Series(NEW[: originals.height]), title=pl.col("title") + " (second edition)", description=pl.col("description") + " Revised."
    )
    assert add_items(index_dir, new)["added"] == len(new)
    return root, index_dir, user, new, originals


def test_added_items_are_ranked_among_the_others(added):
    root, index_dir, user, new, originals = added
    svc = RetrievalService.open(index_dir, rerank_run=root / "rank")
    stage = svc.ranker
    assert stage.n_items == stage.run_items + len(new) and svc.rank_ids.tail(len(new)).to_list() == new["item_id"].to_list()
    recs = svc.recommend(user, k=500, context={"timestamp": WHEN}, explain=True)
    ranked = [r for r in recs if r.rerank_score is not None]
    assert recs[: len(ranked)] == ranked  # the ranked list first, then the retrieved items beyond its depth
    scores = [r.rerank_score for r in ranked]
    assert scores == sorted(scores, reverse=True)
    mine = [r for r in ranked if r.item_id in set(NEW)]
    assert mine, "the retriever proposed none of the added items"
    for r in mine:
        assert r.reasons["sources"] == ["retriever"] and r.retrieval_score is not None  # no other source can score it
        assert isinstance(r.reasons["ranker"], list) and r.reasons["contributions"]
        assert r.title.endswith("(second edition)")
        assert all(not s.endswith(r.title) for s in r.reasons["ranker"])  # never "you bought <itself>"
    # its position is the ranker's: some item the run knows is ranked below it (an appended item would be last)
    last_new = max(ranked.index(r) for r in mine)
    assert any(r.item_id not in set(NEW) for r in ranked[last_new + 1 :])


def test_an_added_item_in_a_history_or_exclude_is_read_safely_and_never_recommended(added):
    from recsys.service.ranking import RankRequest

    root, index_dir, user, new, _ = added
    svc = RetrievalService.open(index_dir, rerank_run=root / "rank")
    recs = svc.recommend(user, k=60, history=[NEW[1]], exclude=[NEW[0]], context={"timestamp": WHEN}, explain=True)
    assert len(recs) == 60 and not {r.item_id for r in recs} & set(NEW[:2])
    stage, n = svc.ranker, svc.ranker.run_items
    hist = np.array([0, 1, n + 1])  # the stage itself takes added rows in a history
    ranking = stage.rank([RankRequest(hist, np.array([n + 2, 5]), np.array([0.6, 0.5]), exclude=np.array([n]))], explain=True)[0]
    assert n + 2 in ranking.items and not {n, n + 1} & set(ranking.items.tolist()) and len(ranking.reasons) == len(ranking.items)


def test_the_added_items_features_come_from_their_columns_and_text(added):
    root, index_dir, _, new, originals = added
    svc = RetrievalService.open(index_dir, rerank_run=root / "rank")
    tables, n = svc.ranker.ranker.tables_, svc.ranker.run_items
    rows = np.arange(n, n + len(new))
    orig = svc.to_catalogue(originals["item_id"].to_list())
    assert (tables.log_pop[rows] == 0).all() and (tables.log_pop_recent[rows] == 0).all() and np.isnan(tables.first_seen[rows]).all()
    assert np.isfinite(tables.item_rating[rows]).all() and np.ptp(tables.item_rating[rows]) == 0  # the unrated item's mean
    for a in tables.attributes:  # same category, brand, tags... as the item it copies
        assert (a.matrix[rows] != a.matrix[orig]).nnz == 0, a.name
    assert all((v[:, rows] == 0).all() for (k, t), v in tables.lifts.items() if t == "item")
    cos = (tables.item_vectors[rows] * tables.item_vectors[orig]).sum(1)
    assert (cos > 0.8).all() and (cos < 0.9999).all()  # MiniLM vectors of the reworded text, not copies
    assert tables.extra["names"].tail(len(new)).to_list() == new["title"].to_list()


def test_cli_and_http_rank_added_items_and_say_bought(added):
    from fastapi.testclient import TestClient

    from recsys.serving.app import create_app

    root, index_dir, user, new, _ = added
    args = ["retrieve", "-i", str(index_dir), "--user", str(user), "-k", "500", "--rerank", str(root / "rank"), "--context", f"timestamp={WHEN}"]
    out = runner.invoke(app, [*args, "--explain", "--json"])
    assert out.exit_code == 0, out.output
    items = json.loads(out.stdout)["items"]
    mine = [r for r in items if r["item_id"] in NEW]
    assert mine and all(r["rerank_score"] is not None and r["reasons"]["sources"] == ["retriever"] for r in mine)
    said = [s for r in items for s in r["reasons"].get("ranker", [])]
    # the demo is a product catalogue: its reasons say "bought", never "watched"
    assert any(" bought" in s for s in said) and not any("watched" in s for s in said)
    table = runner.invoke(app, [*args, "--explain"])
    assert table.exit_code == 0, table.output
    assert "(second edition)" in table.output and "watched" not in table.output
    viewed = runner.invoke(app, [*args, "--explain", "--json", "--verb", "viewed"])
    assert viewed.exit_code == 0, viewed.output
    said = [s for r in json.loads(viewed.stdout)["items"] for s in r["reasons"].get("ranker", [])]
    assert any(" viewed" in s for s in said) and not any("bought" in s for s in said)
    bad = runner.invoke(app, [*args, "--explain", "--verb", "<script>"])
    assert bad.exit_code == 2 and "explanation verb" in bad.output
    bad = runner.invoke(app, ["serve", "-i", str(index_dir), "--rerank", str(root / "rank"), "--verb", "<script>"])
    assert bad.exit_code == 2 and "explanation verb" in bad.output  # refused before the server starts
    with TestClient(create_app(index_dir, rerank_run=root / "rank")) as client:
        r = client.post("/recommend", json={"user_id": user, "k": 500, "explain": True, "context": {"timestamp": WHEN}})
        assert r.status_code == 200, r.text
        body = r.json()["items"]
        mine = [it for it in body if it["item_id"] in NEW]
        assert mine and all(it["rerank_score"] is not None for it in mine)
        assert [it["item_id"] for it in body] == [it["item_id"] for it in items]
        said = [s for it in body for s in it["reasons"].get("ranker", [])]
        assert any(" bought" in s for s in said) and not any("watched" in s for s in said)


def test_batch_scoring_ranks_added_items_too(added, tmp_path):
    from recsys.batch import BatchJob, run_batch

    root, index_dir, user, _, _ = added
    users = tmp_path / "users.csv"
    pl.DataFrame({"user_id": [user]}).write_csv(users)
    job = BatchJob(index=index_dir, out=tmp_path / "cands", users=str(users), k=500, rerank=root / "rank", generated_at=WHEN + "+00:00")
    run_batch(job, progress=False)
    batch = pl.read_parquet(tmp_path / "cands" / "part-00000.parquet")
    mine = batch.filter(pl.col("item_id").is_in(NEW))
    assert mine.height and mine["rerank_score"].is_not_null().all()


def test_a_ranking_run_of_another_retriever_is_still_refused(added, tmp_path):
    root, index_dir, user, _, _ = added
    other = tmp_path / "rank"
    shutil.copytree(root / "rank", other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["retriever"]["fingerprint"] = "0" * 16
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestMismatchError, match="0{16}"):
        RetrievalService.open(index_dir, rerank_run=other)
    result = runner.invoke(app, ["retrieve", "-i", str(index_dir), "--user", str(user), "--rerank", str(other)])
    assert result.exit_code == 2 and "recsys train ranker" in result.output
