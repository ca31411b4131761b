"""The pure helpers of benchmarks/experiments/rerank_context.py: the counterfactual context and the depth reordering."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.context import TIMES_OF_DAY, time_of_day_expr
from recsys.evaluation import metrics as M

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "rerank_context.py"
_spec = importlib.util.spec_from_file_location("rerank_context_benchmark", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_swapped_context_moves_to_the_opposite_time_and_another_device_on_the_same_day():
    ts = pl.Series(["2024-03-01T02:30:00", "2024-03-02T09:00:00", "2024-03-03T15:59:00", "2024-03-04T23:10:00"]).str.to_datetime(time_unit="us", time_zone="UTC")
    ctx = pl.DataFrame({S.TIMESTAMP: ts, "device": ["mobile", "desktop", "tv", "mobile"]})
    out = bench.swapped_context(ctx)
    before = ctx.select(time_of_day_expr())[S.TIMESTAMP].to_list()
    after = out.select(time_of_day_expr())[S.TIMESTAMP].to_list()
    opposite = {t: TIMES_OF_DAY[(i + 2) % 4] for i, t in enumerate(TIMES_OF_DAY)}
    assert after == [opposite[t] for t in before]
    assert out[S.TIMESTAMP].dt.date().to_list() == ctx[S.TIMESTAMP].dt.date().to_list()  # weekday kept
    assert out["device"].to_list() == ["desktop", "tv", "mobile", "desktop"]
    assert (out["device"] != ctx["device"]).all()


def test_ranks_reordered_reorders_only_the_candidates():
    # one case, 6 items; item 4 excluded (NaN); retriever order 0 > 1 > 2 > 3 > 5
    prepared = np.array([[0.9, 0.8, 0.7, 0.6, np.nan, 0.1]])
    keys = M.tie_keys(np.array([0]), 6)
    top = np.array([[0, 1, 2]])
    targets = np.array([2])
    assert bench.ranks_reordered(prepared, top, None, targets, keys).tolist() == [2]
    # the reranker puts the target first among the top 3
    assert bench.ranks_reordered(prepared, top, np.array([[0.0, -1.0, 5.0]]), targets, keys).tolist() == [0]
    # a target outside the candidates keeps its place behind every reranked candidate
    assert bench.ranks_reordered(prepared, top, np.array([[-3.0, -2.0, -1.0]]), np.array([5]), keys).tolist() == [4]


def test_label_prior_entropy_is_the_bce_of_the_constant_prior():
    assert math.isclose(bench.label_prior_entropy(3), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert math.isclose(bench.label_prior_entropy(1), math.log(2))


def test_format_rule_measures_the_share_and_the_score_gap_of_fitting_items():
    # 12 candidates, 4 of them bite-size (the format mobile favours); two identical cases judged against mobile
    formats = np.array(["bite-size", "in-depth", "big-screen"] * 4)
    top = np.tile(np.arange(12), (2, 1))
    fits_first = np.where(formats == "bite-size", 1.0, 0.0)[None].repeat(2, axis=0)
    rows = bench.format_rule(formats, top, [("likes fitting", fits_first, ["mobile", "mobile"]),
                                            ("dislikes fitting", -fits_first, ["mobile", "mobile"]),
                                            ("judged for tv", fits_first, ["tv", "tv"])])
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["likes fitting"] == ["0.333", "0.400 ± 0.000", "+1.0000 ± 0.0000"]  # all 4 fitting in the top 10
    assert by_name["dislikes fitting"][1:] == ["0.200 ± 0.000", "-1.0000 ± 0.0000"]  # 8 others first, then 2 of 4
    assert by_name["judged for tv"][2].startswith("-0.5000")  # big-screen items sit at 0 beside bite-size at 1
