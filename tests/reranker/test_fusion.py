"""Score fusion (served score = cross-encoder logit + w x retriever cosine) and the validation choice of w."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.reranker import Reranker, RerankerTrainingArguments
from recsys.reranker.config import FUSION_GRID
from recsys.reranker.evaluation import choose_retrieval_weight, fusion_table


def _case(target_logit_rank: int, target_cos_rank: int, n: int = 12, seed: int = 0):
    """One list of n items (target = item 0) whose logits put the target at one rank and cosines at another."""
    rng = np.random.default_rng(seed)
    items = np.arange(n)
    logits = np.linspace(3.0, -3.0, n) + rng.uniform(0, 0.1)
    cos = np.linspace(0.8, 0.2, n)
    lo = np.delete(logits, target_logit_rank)
    co = np.delete(cos, target_cos_rank)
    return items, np.concatenate([[logits[target_logit_rank]], lo]), np.concatenate([[cos[target_cos_rank]], co])


def test_an_informative_cross_encoder_gets_a_small_weight():
    cases = [_case(0, 11, seed=s) for s in range(20)]  # the CE ranks the target first, the retriever last
    w, table = fusion_table([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases], np.zeros(20, dtype=np.int64), FUSION_GRID)
    assert w == 0.0 and table["0"] == pytest.approx(1.0)
    assert table["1000"] < table["0"]


def test_an_uninformative_cross_encoder_defers_to_the_retriever():
    cases = [_case(11, 0, seed=s) for s in range(20)]  # the retriever ranks the target first, the CE last
    w, table = fusion_table([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases], np.zeros(20, dtype=np.int64), FUSION_GRID)
    assert w == 1000.0 and table["1000"] == pytest.approx(1.0) and table["0"] < 0.5


def test_a_target_outside_the_list_scores_zero_for_every_weight():
    items, z, c = _case(0, 0)
    _, table = fusion_table([items], [z], [c], np.array([99]), (0.0, 10.0))
    assert table == {"0": 0.0, "10": 0.0}


def test_fuse_adds_the_weighted_cosine_and_zero_keeps_the_logits():
    r = Reranker(RerankerTrainingArguments(retrieval_weight=10.0))
    np.testing.assert_allclose(r.fuse(np.array([1.0, 2.0]), np.array([0.5, 0.1])), [6.0, 3.0])
    assert np.array_equal(Reranker().fuse(np.array([1.0, 2.0], dtype=np.float32), np.array([0.5, 0.1])), np.array([1.0, 2.0], dtype=np.float32))
    with pytest.raises(ValueError, match="retrieval scores"):
        r.fuse(np.array([1.0, 2.0]), np.array([0.5]))


def test_negative_weight_is_refused():
    with pytest.raises(ValueError, match="retrieval_weight"):
        RerankerTrainingArguments(retrieval_weight=-1.0)


@pytest.mark.slow
def test_choose_retrieval_weight_on_real_candidates(trained_reranker, demo_split, demo_retriever):
    r = Reranker(RerankerTrainingArguments.from_dict(trained_reranker.args.to_dict()))
    r.model = trained_reranker.model
    info = choose_retrieval_weight(r, demo_split.train, demo_split.validation, demo_retriever, depth=10, max_cases=30)
    assert info["retrieval_weight"] in FUSION_GRID and r.args.retrieval_weight == info["retrieval_weight"]
    assert set(info["fusion_NDCG@10"]) == {f"{w:g}" for w in FUSION_GRID} and info["fusion_cases"] == 30
    best = max(info["fusion_NDCG@10"].values())
    assert info["fusion_NDCG@10"][f"{info['retrieval_weight']:g}"] == best
    # the served scores now carry the chosen weight
    z = r.fuse(np.array([0.0, 0.0], dtype=np.float32), np.array([1.0, 0.5]))
    np.testing.assert_allclose(z, [info["retrieval_weight"], 0.5 * info["retrieval_weight"]], rtol=1e-6)
