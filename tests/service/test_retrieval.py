"""Retrieval end to end with the real bundled MiniLM and real FAISS on small demo data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.errors import ManifestMismatchError, RecsysError
from recsys.index.build import add_items
from recsys.service.retrieval import RetrievalService
from recsys.retriever.config import RetrieverTrainingArguments
from recsys.retriever.run import run_fingerprint, train_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(retrieval_stack):
    return retrieval_stack


def test_known_user_never_gets_seen_items(stack):
    root, ds = stack
    svc = RetrievalService.open(root / "index")
    for user in ds.interactions["user_id"].unique().sort().head(10).to_list():
        recs = svc.recommend(user, k=15)
        assert len(recs) == 15
        seen = set(ds.interactions.filter(pl.col("user_id") == user)["item_id"].to_list())
        assert not seen & {r.item_id for r in recs}
        scores = [r.score for r in recs]
        assert scores == sorted(scores, reverse=True)


def test_unknown_user_needs_history_or_profile(stack):
    root, _ = stack
    svc = RetrievalService.open(root / "index")
    with pytest.raises(RecsysError, match="unknown user"):
        svc.recommend(10_000_000)
    recs = svc.recommend(10_000_000, history=[1, 2, 3], k=5)
    assert len(recs) == 5 and not {1, 2, 3} & {r.item_id for r in recs}


def test_added_item_is_retrievable_by_its_text_alone(stack, tmp_path):
    root, ds = stack
    import shutil

    index_dir = tmp_path / "index"
    shutil.copytree(root / "index", index_dir)
    text = "Hand-Forged Damascus Chef Knife for Sushi Masters"
    new = pl.DataFrame({"item_id": [999_001], "title": [text], "category": ["kitchen"], "description": ["razor sharp knife"]})
    result = add_items(index_dir, new)
    assert result["added"] == 1
    svc = RetrievalService.open(index_dir)
    rendered = svc.model.render_items(new)[0]
    recs = svc.recommend(profile=rendered, k=3)
    assert recs[0].item_id == 999_001
    assert recs[0].title == text


def test_unknown_context_key_is_refused(stack):
    root, _ = stack
    svc = RetrievalService.open(root / "index")
    with pytest.raises(RecsysError, match="unknown context key"):
        svc.recommend(next(iter(svc.histories.user_ids.to_list())), context={"moon": "full"})
    assert svc.recommend(svc.histories.user_ids[0], context={"time": "evening", "device": "mobile"}, k=3)


def test_index_from_another_model_is_refused(stack, tmp_path):
    root, ds = stack
    other = tmp_path / "other-run"
    train_run(ds, other, RetrieverTrainingArguments(epochs=1, max_steps=3, seed=1))
    assert run_fingerprint(other) != run_fingerprint(root / "run")
    with pytest.raises(ManifestMismatchError, match="rebuild the index"):
        RetrievalService.open(root / "index", run_dir=other)


def test_index_vectors_equal_the_model_catalogue(stack):
    root, ds = stack
    svc = RetrievalService.open(root / "index")
    ids = ds.items["item_id"].head(5).to_list()
    got = svc.index.get_vectors(ids)
    want = svc.model.encode_items()[: len(ids)]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_single_user_lookup_agrees_with_the_join():
    from types import SimpleNamespace

    from recsys.data.demo import generate_demo
    from recsys.service.histories import UserHistories

    ds, _ = generate_demo(users=40, items=15, seed=2, interactions_per_user=4)
    for inter in (ds.interactions, ds.interactions.with_columns(("u" + pl.col("user_id").cast(pl.String)).alias("user_id"))):
        h = UserHistories(SimpleNamespace(interactions=inter, interactions_loaded=True, path=None), ds.items["item_id"])
        string_ids = inter.schema["user_id"] == pl.String
        probes = [*h.user_ids.to_list(), "nope" if string_ids else 10**12, "u-1" if string_ids else -1]
        assert [h.row(u) for u in probes] == [int(h.rows([u])[0]) for u in probes]
        assert h.row(probes[-1]) == -1 and h.row(probes[5]) == 5


def test_many_user_histories_equal_one_at_a_time():
    from types import SimpleNamespace

    from recsys.data.demo import generate_demo
    from recsys.service.histories import UserHistories

    ds, _ = generate_demo(users=60, items=30, seed=4, interactions_per_user=5)
    # a catalogue missing some items: their catalogue index is -1 and only the seen ids keep them
    h = UserHistories(SimpleNamespace(interactions=ds.interactions, interactions_loaded=True, path=None), ds.items["item_id"].head(20))
    assert (h.catalogue.items < 0).any()
    rng = np.random.default_rng(0)
    for rows in (np.arange(len(h.user_ids)), rng.permutation(len(h.user_ids))[:17], np.array([4, 4, 0]), np.zeros(0, dtype=np.int64)):
        cats, seen = h.histories(rows)
        assert len(cats) == len(seen) == len(rows)
        for r, c, s in zip(rows, cats, seen):
            want_c, want_s = h.history(int(r))
            np.testing.assert_array_equal(c, want_c)
            np.testing.assert_array_equal(s, want_s)
