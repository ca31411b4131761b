"""Candidate sources and the merger: provenance columns, exclusions, depth, recall."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.errors import RecsysError
from recsys.ltr.sources import CandidateSource, SourceSpec, make_source, merge_candidates, recall_at, source_scores, top_depth
from recsys.models.ease import EASE
from tests.models.contract import cases_for, synthetic_train


def test_top_depth_ranks_best_first_and_skips_excluded_and_unscorable():
    s = np.array([[0.1, 0.9, 0.5, -np.inf, 0.7]], dtype=np.float32)
    excl = np.array([[False, True, False, False, False]])
    r = top_depth(s, excl, 3)
    assert r.tolist() == [[3, 0, 2, 0, 1]]
    assert top_depth(s, excl, 10).tolist() == [[3, 0, 2, 0, 1]]  # -inf never proposed, even with room


def test_merge_unites_sources_with_provenance():
    data = synthetic_train()
    cases = cases_for(data, [0, 25])
    a = np.tile(np.arange(22, dtype=np.float32), (2, 1))  # prefers high ids
    b = a[:, ::-1].copy()  # prefers low ids
    c = merge_candidates({"a": a, "b": b}, {"a": 3, "b": 2}, cases)
    for r in range(2):
        rows = c.filter(pl.col("case") == r)
        history = set(cases.history.row(r).tolist())
        assert not history & set(rows["item"].to_list()), "history items must never be candidates"
        assert rows.height == 5
        assert rows.filter(pl.col("a_rank").is_not_null()).height == 3
        assert rows.filter(pl.col("b_rank").is_not_null()).height == 2
        # scores are known beyond depth (dense scorers), ranks only where proposed
        assert rows["b_score"].null_count() == 0
    off = merge_candidates({"a": a, "b": b}, {"a": 3, "b": 2}, cases, scores_beyond_depth=False)
    assert off.filter(pl.col("a_rank").is_null())["a_score"].null_count() == off.filter(pl.col("a_rank").is_null()).height


def test_sources_follow_the_protocol_and_recall_counts_targets():
    data = synthetic_train()
    cases = cases_for(data, list(range(30)))
    ease = make_source(SourceSpec("ease", 5, {"l2": 10.0})).fit(data)
    assert isinstance(ease, CandidateSource)
    np.testing.assert_allclose(source_scores(ease, cases, batch_size=7), EASE(l2=10.0).fit(data).score(cases))
    co = make_source(SourceSpec("cooccurrence", 5, {"neighbours": 5})).fit(data)
    cand = merge_candidates({"ease": source_scores(ease, cases), "co": source_scores(co, cases)}, {"ease": 10, "co": 10}, cases)
    assert recall_at(cand, cases.targets) == 1.0  # every unseen in-block item is proposed
    assert recall_at(cand.head(0), cases.targets) == 0.0


def test_bad_source_spec_is_refused():
    with pytest.raises(RecsysError, match="kind 'nope' is unknown"):
        SourceSpec.from_dict({"kind": "nope"})
    with pytest.raises(RecsysError, match="unknown keys"):
        SourceSpec.from_dict({"kind": "ease", "deepth": 3})


@pytest.mark.slow
def test_retriever_source_saves_its_model_its_own_way(tmp_path):
    from recsys.ltr.sources import load_source

    data = synthetic_train()
    cases = cases_for(data, [0, 25])
    fast = dict(d_model=32, layers=1, heads=2, dropout=0.1, max_len=10, batch_size=16, lr=5e-3, epochs=2, patience=2, threads=1, seed=0)
    src = make_source(SourceSpec("retriever", 10, fast)).fit(data)
    src.save(tmp_path / "r")
    assert (tmp_path / "r" / "model" / "manifest.json").is_file()
    np.testing.assert_array_equal(load_source(tmp_path / "r").score(cases), src.score(cases))
