"""A short fine-tune of the real bundled MiniLM cross-encoder on the demo data (shared fixture, ~60 steps)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from recsys.data.demo import context_boost
from recsys.reranker.evaluation import evaluate_reranker

pytestmark = pytest.mark.slow


def test_fine_tune_beats_the_untrained_cross_encoder(trained_reranker, demo_split, demo_retriever):
    """Held-out positive vs 5 negatives, 2 of them the retriever's hard negatives (the training mix).

    Against retriever hard negatives alone a short fine-tune does not beat the untrained model on the demo data
    (measured 0.47 vs 0.51 win rate): they share the positive's categories and differ mostly by popularity, which
    item text does not carry. With random negatives in the list it does (measured 0.45 -> 0.60, and 0.46 -> 0.75
    against random negatives only)."""
    from recsys.reranker import Reranker

    untrained = Reranker(trained_reranker.args)
    kw = dict(n_negatives=5, hard_fraction=0.4, max_cases=40, seed=1)
    before = evaluate_reranker(untrained, demo_split.train, demo_split.validation, demo_retriever, **kw)
    after = evaluate_reranker(trained_reranker, demo_split.train, demo_split.validation, demo_retriever, **kw)
    assert after["win_rate"] > before["win_rate"] + 0.05, (before, after)
    assert after["MRR"] > before["MRR"], (before, after)


def test_context_shifts_scores_the_way_the_generator_prescribes(trained_reranker, demo_split, demo_dataset):
    """Same users, same items, only the request context changes: items whose category prefers (mobile, evening)
    gain more from (mobile, evening) vs (tv, morning) than items whose category prefers (tv, morning)-like contexts."""
    a, b = ("mobile", "evening"), ("tv", "morning")
    cats = demo_dataset.items["category"].to_list()
    up = np.array([i for i, c in enumerate(cats) if context_boost(c, *a) > context_boost(c, *b)])
    down = np.array([i for i, c in enumerate(cats) if context_boost(c, *a) < context_boost(c, *b)])
    rng = np.random.default_rng(0)
    up, down = rng.choice(up, 10, replace=False), rng.choice(down, 10, replace=False)
    users = rng.choice(len(demo_split.validation), 8, replace=False)
    r = trained_reranker
    item_texts = r.render_items(demo_dataset.items)
    hist = r.history_texts(demo_dataset.items)
    profiles = demo_split.train.users[demo_split.validation.users[users]]
    histories = [demo_split.validation.history.row(int(u)) for u in users]
    day = dt.datetime(2024, 6, 7, tzinfo=dt.timezone.utc)  # a Friday for both contexts
    ctx_a = [{"timestamp": day.replace(hour=20), "device": a[0]}] * len(users)
    ctx_b = [{"timestamp": day.replace(hour=9), "device": b[0]}] * len(users)
    cand = [np.concatenate([up, down])] * len(users)
    sa = np.stack(r.score_candidates(histories, cand, item_texts, hist, context=ctx_a, profiles=profiles))
    sb = np.stack(r.score_candidates(histories, cand, item_texts, hist, context=ctx_b, profiles=profiles))
    gain = sa - sb  # (users, items)
    gain_up, gain_down = gain[:, : len(up)].mean(), gain[:, len(up) :].mean()
    assert gain_up > gain_down, (gain_up, gain_down)
    # and for most users, not just on average
    per_user = gain[:, : len(up)].mean(axis=1) > gain[:, len(up) :].mean(axis=1)
    assert per_user.mean() >= 0.75, per_user


def test_without_context_the_user_text_has_no_context(trained_reranker, demo_split):
    from recsys.reranker import Reranker

    r = Reranker(trained_reranker.args, use_context=False)
    ctx = demo_split.validation.context[:1]
    hist = r.history_texts(demo_split.train.items)
    with_ctx = trained_reranker.user_texts([demo_split.validation.history.row(0)], hist, context=ctx)[0]
    without = r.user_texts([demo_split.validation.history.row(0)], hist, context=ctx)[0]
    assert "device:" in with_ctx and "device:" not in without


def test_verbs_agree(trained_reranker, demo_dataset):
    r = trained_reranker
    texts = r.render_items(demo_dataset.items)[:6]
    user = "36 year old US, Big fan of jazz records. Now: night, Friday, device: desktop. Recently: Classic Bebop Swing Vinyl"
    s = r.rerank(user, texts)
    assert s.shape == (6,) and s.dtype == np.float32
    np.testing.assert_allclose(r.predict([(user, t) for t in texts]), s, rtol=1e-5, atol=1e-5)
    ranked = r.rank(user, texts, top_k=3)
    assert [d["corpus_id"] for d in ranked] == list(np.argsort(-s, kind="stable")[:3])


def test_explanations_name_history_items(trained_reranker, demo_split, demo_retriever, demo_dataset):
    from recsys.reranker.explain import explain

    r = trained_reranker
    vec = demo_retriever.encode_items()
    item_texts, hist_texts = r.render_items(demo_dataset.items), r.history_texts(demo_dataset.items)
    cases = demo_split.validation
    ids = demo_dataset.items["item_id"].to_list()
    for row in range(3):
        h = cases.history.row(row)
        ctx = cases.context.row(row, named=True)
        e = explain(r, int(cases.targets[row]), h, item_vectors=vec, item_texts=item_texts, history_texts=hist_texts, context=ctx, item_ids=ids)
        assert 1 <= len(e["history"]) <= 3
        assert all(x["item"] in set(h.tolist()) for x in e["history"])
        sims = [x["similarity"] for x in e["history"]]
        assert sims == sorted(sims, reverse=True)
        assert set(e["context"]) == {"all", "time_of_day", "weekday", "device"}
        assert all(np.isfinite(v) for v in e["context"].values())


def test_save_and_load_round_trip(trained_reranker, tmp_path):
    from recsys.manifest import read_manifest
    from recsys.reranker import Reranker

    trained_reranker.retriever_fingerprint = "abc"
    trained_reranker.save(tmp_path / "rr")
    m = read_manifest(tmp_path / "rr", "reranker")
    assert m["retriever_fingerprint"] == "abc" and m["data_fingerprint"] == trained_reranker.data_fingerprint
    assert m["settings"]["max_length"] == 80
    loaded = Reranker.load(tmp_path / "rr")
    pairs = [("a user who likes jazz", "Classic Bebop Swing Vinyl"), ("morning runner", "Trail Shoe")]
    np.testing.assert_allclose(loaded.predict(pairs), trained_reranker.predict(pairs), atol=1e-5)



def test_score_spread_tells_a_collapsed_model(trained_reranker):
    """A cross-encoder whose classifier ignores its input (the collapse seen at high learning rates) scores every pair
    alike: its spread is below COLLAPSED_STD, while the fine-tuned model's is not 0 and is what training reported."""
    import copy

    import torch
    from datasets import Dataset

    from recsys.reranker.training import COLLAPSED_STD, score_spread

    assert trained_reranker.history[0]["score_std"] > 0.0
    texts = ["A quiet cookbook about soups", "A robot starship anthology", "An oak workbench", "A yoga bolster"] * 8
    train = Dataset.from_dict({"query": [f"user {k % 5} likes cooking" for k in range(32)], "document": texts, "label": [0.0] * 32})
    assert score_spread(trained_reranker, train, np.random.default_rng(0)) > 0.0
    collapsed = copy.deepcopy(trained_reranker)
    with torch.no_grad():
        for name, p in collapsed.model.named_parameters():
            if "classifier" in name and name.endswith("weight"):
                p.zero_()
    collapsed.model = collapsed.model  # drop any fast scorer
    assert score_spread(collapsed, train, np.random.default_rng(0)) < COLLAPSED_STD
