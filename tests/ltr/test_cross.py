"""The cross-encoder feature of the learned ranker: trained on the label fold only (leakage), present in the feature
rows, saved and loaded with the run, and a pre-trained model from other data is refused."""

from __future__ import annotations

import numpy as np
import pytest

import recsys.ltr.cross as cross
from recsys.errors import ManifestMismatchError
from recsys.ltr.ranker import LearnedRanker, LTRSettings, holdout_split
from recsys.models.ease import EASE
from recsys.reranker.config import CrossEncoderArguments
from recsys.reranker.model import CrossEncoder
from recsys.reranker.training import fit_cross_encoder
from tests.ltr.synthetic import context_rule_split

CHEAP = [{"kind": "ease", "depth": 30, "params": {"l2": 10.0}}, {"kind": "popularity", "depth": 30}]
TINY = dict(max_length=24, history_items=3, positives_per_user=1, negatives=5, hard_pool=10, batch_size=16, max_steps=3,
            warmup_steps=1, cpu_budget_s=None, threads=2)  # fmt: skip
SMALL = {"sources": CHEAP, "min_child_samples": 10, "n_estimators": 30, "threads": 1, "cross_encoder": TINY}


@pytest.fixture(scope="module")
def split():
    return context_rule_split(users=120, items=30, length=8)


@pytest.fixture(scope="module")
def spied(split):
    """A ranker fitted with the cross-encoder feature, and the data the cross-encoder was trained on."""
    seen = []

    def spy(model, data, scorer, **kw):
        seen.append(data)
        return fit_cross_encoder(model, data, scorer, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cross, "fit_cross_encoder", spy)
        ranker = LearnedRanker(LTRSettings.from_dict(SMALL)).fit(split.train, split.validation)
    return ranker, seen


def test_cross_encoder_trains_on_the_label_fold_only(split, spied):
    """Leakage test: the cross-encoder scoring the label-fold rows never saw a label-fold label (nor validation/test)."""
    ranker, seen = spied
    assert len(seen) == 1
    data = seen[0]
    data_a, labels = holdout_split(split.train, ranker.settings.holdout)
    np.testing.assert_array_equal(data.sequences.indptr, data_a.sequences.indptr)
    np.testing.assert_array_equal(data.sequences.items, data_a.sequences.items)
    for r in range(len(labels)):
        assert labels.targets[r] not in data.sequences.row(labels.users[r])
    for cases in (split.validation, split.test):
        for r in range(len(cases)):
            assert cases.targets[r] not in data.sequences.row(cases.users[r])
    assert ranker.cross_.data_fingerprint == cross.train_data_fingerprint(data_a, ranker.cross_.render_items(data_a.items))


def test_feature_rows_carry_the_cross_encoder_score(split, spied):
    ranker, _ = spied
    assert "cross_encoder" in ranker.feature_names_
    frame = ranker.rank_frame(split.test.take(np.arange(4)))
    col = frame["cross_encoder"].to_numpy()
    assert np.isfinite(col).all() and col.std() > 0 and np.abs(col).max() <= 1.0 + 1e-5
    case, item = frame["case"].to_numpy(), frame["item"].to_numpy()
    histories = [split.test.history.row(r) for r in range(4)]
    np.testing.assert_allclose(col, ranker.cross_.score(histories, case, item), rtol=1e-6)


def test_save_load_keeps_the_cross_encoder(split, spied, tmp_path):
    ranker, _ = spied
    run = ranker.save(tmp_path / "run")
    assert (run / "cross_encoder" / "manifest.json").is_file()
    loaded = LearnedRanker.load(run)
    np.testing.assert_array_equal(loaded.score(split.test), ranker.score(split.test))


def test_a_cross_encoder_trained_on_other_data_is_refused(split, tmp_path):
    """A pre-trained model (``{"run": DIR}``) trained on the whole train split has seen the label fold's labels."""
    other = fit_cross_encoder(CrossEncoder(CrossEncoderArguments(**{**TINY, "max_steps": 0})), split.train, EASE(l2=10.0).fit(split.train).score)
    other.save(tmp_path / "ce")
    settings = {**SMALL, "cross_encoder": {"run": str(tmp_path / "ce")}}
    with pytest.raises(ManifestMismatchError, match="label fold"):
        LearnedRanker(LTRSettings.from_dict(settings)).fit(split.train, split.validation)
    data_a, _ = holdout_split(split.train, 3)
    ok = fit_cross_encoder(CrossEncoder(CrossEncoderArguments(**{**TINY, "max_steps": 0})), data_a, EASE(l2=10.0).fit(data_a).score)
    ok.save(tmp_path / "ce_a")
    ranker = LearnedRanker(LTRSettings.from_dict({**SMALL, "cross_encoder": {"run": str(tmp_path / "ce_a")}})).fit(split.train, split.validation)
    assert "cross_encoder" in ranker.feature_names_
