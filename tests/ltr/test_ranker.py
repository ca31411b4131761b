"""The learned ranker: the label scheme never lets a first stage see its label, the saved run scores identically,
a context x attribute rule is learned (known answer), and bad input is refused without changing anything."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from recsys.errors import ManifestMismatchError, RecsysError
from recsys.evaluation import metrics as M
from recsys.ltr.ranker import LearnedRanker, LTRSettings, holdout_split
from recsys.ltr.sources import make_source
from tests.ltr.synthetic import context_rule_split, rule_share

CHEAP = [{"kind": "ease", "depth": 60, "params": {"l2": 10.0}}, {"kind": "popularity", "depth": 60}]
SMALL = {"sources": CHEAP, "min_child_samples": 10, "n_estimators": 60, "threads": 1}


@pytest.fixture(scope="module")
def split():
    return context_rule_split()


@pytest.fixture(scope="module")
def fitted(split):
    return LearnedRanker(LTRSettings.from_dict(SMALL)).fit(split.train, split.validation)


class Spy:
    """Wraps a real source; records the training sequences of each fit and the cases of each score."""

    log: list[tuple[str, object, object]] = []

    def __init__(self, spec, overrides):
        self.inner = make_source(spec, overrides)
        self.name = self.inner.name

    def fit(self, data, validation=None):
        self.data = data
        self.inner.fit(data, validation)
        return self

    def score(self, cases):
        Spy.log.append((self.name, self.data, cases))
        return self.inner.score(cases)

    def params_without_validation(self):
        return self.inner.params_without_validation()

    def save(self, directory):
        self.inner.save(directory)


def test_holdout_split_holds_out_each_users_last_items(split):
    data = split.train
    a, cases = holdout_split(data, 2)
    assert a.sequences.items.size == data.sequences.items.size - len(cases)
    for r in range(len(cases)):
        u = cases.users[r]
        full = data.sequences.row(u)
        assert cases.targets[r] in full[-2:]
        assert cases.targets[r] not in a.sequences.row(u)
        np.testing.assert_array_equal(cases.history.row(r), full[: list(full).index(cases.targets[r])])
    assert cases.context["device"].null_count() == 0 and "rating" not in cases.context.columns


def test_no_first_stage_score_the_ranker_trains_on_saw_its_label(split):
    """Leakage test: every score matrix used for training rows came from a source fitted without those rows' labels."""
    Spy.log = []
    ranker = LearnedRanker(LTRSettings.from_dict(SMALL), source_factory=Spy).fit(split.train, split.validation)
    labels = ranker.label_cases_
    scored_on_label_fold = 0
    for _, data, cases in Spy.log:
        for r in range(len(cases)):
            assert cases.targets[r] not in data.sequences.row(cases.users[r]), f"user {cases.users[r]}: target in a first stage's training data"
        if data.sequences.items.size == ranker.label_fold_.sequences.items.size:
            scored_on_label_fold += len(cases)
    assert scored_on_label_fold == len(CHEAP) * len(labels), "every label-fold source scores every label case"
    # the feature tables of the training rows were fitted on the same label-free fold
    assert ranker.label_fold_.sequences.items.size == split.train.sequences.items.size - len(labels)


def test_save_load_gives_identical_scores_and_refuses_mismatches(split, fitted, tmp_path):
    run = fitted.save(tmp_path / "run")
    loaded = LearnedRanker.load(run)
    np.testing.assert_array_equal(loaded.score(split.test), fitted.score(split.test))
    np.testing.assert_array_equal(loaded.predict_rating(split.test), fitted.predict_rating(split.test))
    with pytest.raises(ManifestMismatchError, match="built on training data"):
        LearnedRanker.load(run, data_fingerprint="0" * 16)
    (run / "ranker.txt").write_text((run / "ranker.txt").read_text() + "\n")
    with pytest.raises(ManifestMismatchError, match="ranker.txt"):
        LearnedRanker.load(run)


def test_known_answer_context_rule(split, fitted):
    """The ranker's top 10 follows the device -> format rule; the first stage's does not."""
    cases = split.test
    keys = M.tie_keys(np.arange(len(cases)), fitted.n_items_)
    excl = cases.exclude

    def top10(scores):
        s = M.prepare_scores(scores, np.repeat(np.arange(len(cases)), excl.lengths), excl.items, cases.targets)
        return M.top_k(s, keys, 10)

    ranked = rule_share(top10(fitted.score(cases)), split, cases)
    first = rule_share(top10(fitted.serving_["ease"].score(cases)), split, cases)
    assert ranked >= 0.9, ranked
    assert first < 0.6, first


def test_bad_input_is_refused(split, fitted, tmp_path):
    with pytest.raises(RecsysError, match="unknown ltr settings"):
        LTRSettings.from_dict({"trees": 3})
    with pytest.raises(RecsysError, match="names must be unique"):
        LTRSettings.from_dict({"sources": [{"kind": "ease"}, {"kind": "ease"}]})
    with pytest.raises(RecsysError, match="label_fold_time_budget_s"):
        LTRSettings.from_dict({"label_fold_time_budget_s": 0})
    with pytest.raises(RecsysError, match="features.windows"):
        LTRSettings.from_dict({"features": {"windows": [7, -1]}})
    cases = split.test.take(np.arange(3))
    cases.context = cases.context.with_columns(devcie=pl.lit("x"))
    with pytest.raises(RecsysError, match="unknown context keys \\['devcie'\\]"):
        fitted.score(cases)
    frame = fitted.features(fitted.serving_, fitted.tables_, split.test.take(np.arange(3))).drop("pop_all")
    with pytest.raises(RecsysError, match="pop_all"):
        fitted.feature_matrix(frame)
    run = fitted.save(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(RecsysError):
        LearnedRanker(LTRSettings.from_dict({**SMALL, "holdout": 100})).fit(split.train, split.validation)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert json.loads((run / "manifest.json").read_text())["kind"] == "ltr"


def test_label_fold_time_budget_caps_only_the_epoch_trained_refits(split):
    """The cap reaches the label fold's SASRec (which then stops after its first batch), not its serving fold, not
    the sources without epochs; the time-window features train and score (tables of each fold, no leak)."""
    made: list[tuple[str, dict, object]] = []

    def factory(spec, overrides):
        made.append((spec.key, dict(overrides), make_source(spec, overrides)))
        return made[-1][2]

    sources = [{"kind": "sasrec", "depth": 60, "params": {"epochs": 3, "time_budget_s": 600, "d": 16, "max_len": 12}}, *CHEAP]
    settings = {**SMALL, "sources": sources, "label_fold_time_budget_s": 1e-6, "features": {"text_similarity": False, "windows": [1, 7], "user_gap": True}}
    ranker = LearnedRanker(LTRSettings.from_dict(settings), source_factory=factory).fit(split.train, split.validation)
    serving, label = made[: len(sources)], made[len(sources) :]
    assert label[0][1]["time_budget_s"] == 1e-6 and "time_budget_s" not in serving[0][1]
    assert all("time_budget_s" not in overrides for _, overrides, _ in label[1:])
    assert serving[0][2].model.epochs_ == 3 and label[0][2].model.epochs_ == 1
    assert {"pop_1d", "trend_1d", "user_gap_days"} <= set(ranker.feature_names_)
    assert np.isfinite(ranker.score(split.test.take(np.arange(5)))).all()
