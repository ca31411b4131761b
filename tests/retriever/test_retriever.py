"""The two-tower retriever on a small synthetic catalogue with the real bundled MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever
from recsys.retriever.training import validation_ndcg

from .conftest import FAST

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted(synthetic_split):
    return TwoTowerRetriever(RetrieverTrainingArguments(**FAST)).fit(synthetic_split.train, synthetic_split.validation)


def _hr_at_1(model, cases) -> float:
    from recsys.evaluation import metrics as M

    s = model.score(cases)
    excl = cases.exclude
    s = M.prepare_scores(s, np.repeat(np.arange(len(cases)), excl.lengths), excl.items, cases.targets)
    ranks = M.target_ranks(s, cases.targets, M.tie_keys(np.arange(len(cases)), s.shape[1]))
    return float((ranks < 1).mean())


def test_training_beats_zero_shot_on_validation(synthetic_split, fitted):
    """Text finds the topic (8 unseen candidates per topic), only the trained sequence tower finds the next item."""
    from recsys.models.retriever import ZeroShotRecommender

    zs = ZeroShotRecommender(decay=0.3).fit(synthetic_split.train)
    zero = _hr_at_1(zs, synthetic_split.validation)
    trained = _hr_at_1(fitted, synthetic_split.validation)
    assert trained > zero + 0.3, (trained, zero)
    ndcg, hr = validation_ndcg(fitted, synthetic_split.validation, None)
    assert fitted.metrics["val_NDCG@10"] == pytest.approx(ndcg, abs=1e-6)
    assert fitted.metrics["best_epoch"] >= 1


def test_vectors_are_normalised_float32(synthetic_split, fitted):
    items = fitted.encode_items()
    users = fitted.encode_users(synthetic_split.validation.history)
    for v in (items, users):
        assert v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert items.shape == (synthetic_split.train.n_items, fitted.dim)
    assert users.shape == (len(synthetic_split.validation), fitted.dim)
    # list-of-arrays histories give the same vectors as Sequences
    hs = [synthetic_split.validation.history.row(r) for r in range(3)]
    np.testing.assert_allclose(fitted.encode_users(hs), users[:3], atol=1e-6)


def test_save_load_gives_identical_vectors(tmp_path, synthetic_split, fitted):
    fitted.save(tmp_path / "model")
    manifest = (tmp_path / "model" / "manifest.json").read_text()
    assert '"kind": "retriever"' in manifest and "data_fingerprint" in manifest
    loaded = TwoTowerRetriever.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.encode_items(), fitted.encode_items())
    h = synthetic_split.validation.history
    np.testing.assert_array_equal(loaded.encode_users(h), fitted.encode_users(h))
    texts = ["The rocket saga | Sci-Fi | 2001"]
    np.testing.assert_array_equal(loaded.encode_items(texts), fitted.encode_items(texts))
    assert loaded.args == fitted.args


def test_new_item_is_scorable_by_text_alone(synthetic_split, fitted):
    new = fitted.encode_items(["The haunted graveyard saga | Horror | 2002", "The wedding kiss saga | Romance | 2002"])
    assert np.isfinite(new).all()
    val = synthetic_split.validation
    users = fitted.encode_users(val.history)
    topic = val.targets // 16  # 0 space, 1 romance, 2 horror, 3 cooking
    s = users @ new.T
    # the horror newcomer scores higher for horror users than the romance newcomer does, and vice versa
    assert s[topic == 2, 0].mean() > s[topic == 2, 1].mean()
    assert s[topic == 1, 1].mean() > s[topic == 1, 0].mean()


def test_same_seed_same_model(synthetic_split):
    args = RetrieverTrainingArguments(**{**FAST, "epochs": 3})
    a = TwoTowerRetriever(args).fit(synthetic_split.train)
    b = TwoTowerRetriever(args).fit(synthetic_split.train)
    np.testing.assert_array_equal(a.encode_items(), b.encode_items())
    h = synthetic_split.validation.history
    np.testing.assert_array_equal(a.encode_users(h), b.encode_users(h))
