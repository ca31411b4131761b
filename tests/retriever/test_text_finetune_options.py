"""Text fine-tune options: logQ correction, mined hard negatives, the cached (GradCache) loss."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import RecsysError
from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever, load_text_model
from recsys.retriever.training import item_log_q, mine_hard_negatives, sample_text_pairs, text_finetune_dataset

from .conftest import FAST

pytestmark = pytest.mark.slow
pytest.importorskip("datasets")
pytest.importorskip("accelerate")


def _eligible_top_k(item_emb: np.ndarray, query: np.ndarray, banned: set[int], k: int) -> np.ndarray:
    """Brute force: scores of the k best items that are neither banned nor missing."""
    s = item_emb @ query
    s[list(banned)] = -np.inf
    return np.sort(s)[::-1][:k]


@pytest.mark.parametrize("pairs", ["item", "user"])
def test_hard_negatives_come_from_the_anchors_top_k_and_are_never_seen_items(synthetic_split, pairs):
    data = synthetic_split.train
    r = TwoTowerRetriever(RetrieverTrainingArguments(**FAST, text_finetune_pairs=pairs))
    texts = r.render_items(data.items)
    p = sample_text_pairs(r, data, texts, 60, seed=0)
    k = 5
    neg = mine_hard_negatives(r, data, p, texts, k, seed=1)
    assert neg.shape == (60,) and (neg >= 0).all()
    item_emb = r.embed(texts)
    queries = item_emb[p.anchor_items] if pairs == "item" else r.embed(p.anchors, cache=False)
    for row in range(len(neg)):
        history = set(data.sequences.row(int(p.users[row])).tolist())
        assert neg[row] != p.positive_items[row]
        assert int(neg[row]) not in history
        top = _eligible_top_k(item_emb, queries[row], history | {int(p.positive_items[row])}, k)
        assert float(item_emb[neg[row]] @ queries[row]) >= top[-1] - 1e-5  # among the k nearest eligible items
    # a random pick among the k, not always the nearest; seeded
    nearest = [np.isclose(item_emb[n] @ q, _eligible_top_k(item_emb, q, set(data.sequences.row(int(u)).tolist()) | {int(pi)}, 1)[0])
               for n, q, u, pi in zip(neg, queries, p.users, p.positive_items)]
    assert not all(nearest)
    np.testing.assert_array_equal(neg, mine_hard_negatives(r, data, p, texts, k, seed=1))


def test_dataset_columns_carry_log_q_of_positive_and_negative(synthetic_split):
    data = synthetic_split.train
    r = TwoTowerRetriever(RetrieverTrainingArguments(**FAST, text_finetune_logq=True, text_finetune_hard_negatives=4))
    texts = r.render_items(data.items)
    cols, stats = text_finetune_dataset(r, data, texts, 40)
    assert list(cols) == ["anchor", "positive", "negative", "label"]
    assert stats["pairs_without_negative"] == 0 and len(cols["label"]) == 40
    by_text = {t: i for i, t in enumerate(texts)}  # synthetic titles are unique
    negatives = np.array([by_text[t] for t in cols["negative"]])
    lq = item_log_q(data, negatives)
    for pos, neg, label in zip(cols["positive"], negatives, cols["label"]):
        assert label == pytest.approx([lq[by_text[pos]], lq[neg]], rel=1e-6)


def test_log_q_is_the_share_among_positives_and_mined_negatives(synthetic_split):
    data = synthetic_split.train
    counts = data.item_counts + 1.0
    lq = item_log_q(data)
    np.testing.assert_allclose(np.exp(lq), counts / counts.sum(), rtol=1e-5)
    assert lq[np.argmax(counts)] > lq[np.argmin(counts)]
    mixed = item_log_q(data, np.array([3, 3, 3, 5]))  # half the candidates are mined negatives: 3/4 of them item 3
    expected = counts / counts.sum() / 2
    expected[3] += 0.75 / 2
    expected[5] += 0.25 / 2
    np.testing.assert_allclose(np.exp(mixed), expected, rtol=1e-5)
    assert np.exp(mixed).sum() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {"text_finetune_logq": True},
        {"text_finetune_hard_negatives": 3},
        {"text_finetune_cached": True, "text_finetune_mini_batch_size": 3},
        {"text_finetune_logq": True, "text_finetune_cached": True, "text_finetune_mini_batch_size": 3, "text_finetune_hard_negatives": 3},
    ],
    ids=["logq", "hard-negatives", "cached", "all"],
)
def test_finetune_with_each_option_moves_the_text_model(synthetic_split, options):
    args = RetrieverTrainingArguments(**{**FAST, "epochs": 1, "max_steps": 1, "text_finetune_steps": 2, "text_finetune_batch_size": 6, **options})
    r = TwoTowerRetriever(args).fit(synthetic_split.train)
    stage = r.history[0]
    assert stage["stage"] == "text_finetune" and stage["steps"] == 2 and np.isfinite(stage["loss"])
    expected = ("Cached" if args.text_finetune_cached else "") + ("LogQCorrectedMNRL" if args.text_finetune_logq else "MultipleNegativesRankingLoss")
    assert stage["loss_fn"] == expected
    text = ["The ghost story | Horror | 1990"]
    base = load_text_model().encode(text, normalize_embeddings=True)
    tuned = r.text_model.encode(text, normalize_embeddings=True)
    assert not np.allclose(base, tuned, atol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"text_finetune_hard_negatives": -1}, "text_finetune_hard_negatives"),
        ({"text_finetune_mini_batch_size": 0}, "text_finetune_mini_batch_size"),
        ({"text_finetune_batch_size": 1}, "text_finetune_batch_size"),
        ({"text_finetune_steps": -2}, "text_finetune_steps"),
    ],
)
def test_invalid_options_are_refused_with_the_field_name(bad, message):
    with pytest.raises(ValueError, match=message):
        RetrieverTrainingArguments(**bad)
    with pytest.raises(RecsysError, match=message):
        RetrieverTrainingArguments.from_dict(bad)


def test_options_round_trip_through_the_settings_dict():
    args = RetrieverTrainingArguments(text_finetune_logq=True, text_finetune_hard_negatives=7, text_finetune_cached=True, text_finetune_mini_batch_size=16)
    again = RetrieverTrainingArguments.from_dict(args.to_dict())
    assert (again.text_finetune_logq, again.text_finetune_hard_negatives, again.text_finetune_cached, again.text_finetune_mini_batch_size) == (True, 7, True, 16)
