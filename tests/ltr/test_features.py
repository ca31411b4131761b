"""The ranking features on real MovieLens 100K: every column equals a straightforward per-row reference computation
(Python datetimes, dense matrices, dictionaries), and a single served request gets exactly the features its case
gets inside a training-sized batch (one feature module for both; the batch takes the large-column paths); the
optional ``gaps`` features against values computed by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
import pytest

from recsys.data.types import TrainData
from recsys.evaluation.split import encode, leave_one_out
from recsys.ltr.features import SMALL_COLUMN, TIME_OF_DAY, FeatureSettings, FeatureTables, _time_parts, build_features
from recsys.ltr.ranker import holdout_split
from recsys.ltr.sources import SourceSpec, make_source, merge_candidates, source_scores
from tests.ltr.synthetic import context_rule_split


def _device(u: np.ndarray) -> list[str | None]:
    """A string context column derived from the user row (one value in five missing)."""
    return [None if x % 5 == 0 else ("mobile" if x % 2 else "web") for x in u]


@pytest.fixture(scope="module")
def ml(movielens_100k_dataset):
    split = leave_one_out(encode(movielens_100k_dataset))
    train = split.train
    decade = train.items["year"].map_elements(lambda y: f"{y // 10 * 10}s", return_dtype=pl.String).alias("decade")
    events = train.events.with_columns(device=pl.Series(_device(train.events["u"].to_numpy()), dtype=pl.String))
    train = TrainData(train.sequences, train.n_items, train.items.with_columns(decade), events, train.users, train.cold_items)
    data_a, cases = holdout_split(train, 2)
    assert len(cases) > SMALL_COLUMN  # the batch takes the large-column paths, a single request the small ones
    tables = FeatureTables.fit(data_a, FeatureSettings(text_similarity=False))
    specs = [SourceSpec("ease", 40, {"l2": 100.0}), SourceSpec("popularity", 20)]
    scores = {s.key: source_scores(make_source(s).fit(data_a), cases) for s in specs}
    merged = merge_candidates(scores, {s.key: s.depth for s in specs}, cases)
    return data_a, cases, tables, merged, build_features(merged, cases, tables)


def test_tables_cover_every_feature_kind(ml):
    _, _, tables, _, frame = ml
    assert {a.name: a.single for a in tables.attributes} == {"genres": False, "decade": True}
    assert set(tables.context_values) == {"time_of_day", "weekday", "device"}
    for col in ("ctx_device", "attr_decade", "affinity_genres", "lift_device_genres", "lift_weekday_item", "item_age_days"):
        assert col in frame.columns


def test_features_equal_a_per_row_reference(ml):
    data_a, cases, tables, merged, frame = ml
    case, item = frame["case"].to_numpy(), frame["item"].to_numpy()
    assert frame.select("case", "item").equals(merged.select("case", "item"))
    stamps = cases.context["timestamp"].to_list()
    hours = np.array([t.hour for t in stamps])
    assert np.array_equal(frame["hour"].to_numpy(), hours[case])
    assert np.array_equal(frame["weekday_num"].to_numpy(), np.array([t.isoweekday() for t in stamps])[case])
    seconds = np.array([(t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) / dt.timedelta(seconds=1) for t in stamps])
    np.testing.assert_allclose(frame["item_age_days"].to_numpy(), (seconds[case] - tables.first_seen[item]) / 86400, rtol=1e-6)
    assert np.array_equal(frame["history_length"].to_numpy(), cases.history.lengths[case])

    codes = {
        "time_of_day": [tables.context_values["time_of_day"].index(TIME_OF_DAY[h // 6]) for h in hours],
        "weekday": [tables.context_values["weekday"].index(str(t.isoweekday())) for t in stamps],
        "device": [-1 if d is None else tables.context_values["device"].index(d) for d in cases.context["device"].to_list()],
    }
    for key, per_case in codes.items():
        assert np.array_equal(frame[f"ctx_{key}"].to_numpy(), np.array(per_case)[case]), key

    decade = {a.name: a for a in tables.attributes}["decade"]
    values = data_a.items["decade"].to_list()
    assert np.array_equal(frame["attr_decade"].to_numpy(), np.array([decade.values.index(values[i]) for i in item]))

    genres = {a.name: a for a in tables.attributes}["genres"].matrix.toarray()
    hist = np.zeros((len(cases), tables.n_items))
    for r in range(len(cases)):
        hist[r, np.unique(cases.history.row(r))] = 1.0
    profile = hist @ genres / np.maximum(cases.history.lengths, 1)[:, None]
    np.testing.assert_allclose(frame["affinity_genres"].to_numpy(), (profile[case] * genres[item]).sum(1), rtol=1e-5, atol=1e-7)

    for key in codes:
        code = np.array(codes[key])[case]
        lift = tables.lifts[(key, "genres")]
        with np.errstate(invalid="ignore"):
            mean = (lift[np.maximum(code, 0)] * genres[item]).sum(1) / genres[item].sum(1)
        ref = np.where((code >= 0) & (genres[item].sum(1) > 0), mean, np.nan)
        np.testing.assert_allclose(frame[f"lift_{key}_genres"].to_numpy(), ref, rtol=1e-5, atol=1e-6, equal_nan=True)
        ref_item = np.where(code >= 0, tables.lifts[(key, "item")][np.maximum(code, 0), item], np.nan)
        assert np.array_equal(frame[f"lift_{key}_item"].to_numpy(), ref_item.astype(np.float32), equal_nan=True)


def test_a_single_request_gets_its_batch_features(ml):
    _, cases, tables, merged, frame = ml
    for c in [0, 1, 17, 500, len(cases) - 1]:
        one = merged.filter(pl.col("case") == c).with_columns(case=pl.lit(0, dtype=pl.Int32))
        alone = build_features(one, cases.take(np.array([c])), tables)
        assert alone.equals(frame.filter(pl.col("case") == c).with_columns(case=pl.lit(0, dtype=pl.Int32)), null_equal=True), c


@pytest.mark.parametrize("zone", [None, "UTC", "Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_time_parts_match_polars_datetime(zone, unit):
    stamps = [dt.datetime(1960, 3, 1, 23, 59, 59), dt.datetime(1997, 9, 20, 5, 30), None, dt.datetime(2024, 2, 29, 0, 0, 0, 123456)]
    ts = pl.Series("timestamp", stamps).dt.cast_time_unit(unit)
    ts = ts if zone is None else ts.dt.replace_time_zone(zone)
    epoch, hour, weekday = _time_parts(ts)
    ref = pl.DataFrame({"t": ts}).select(e=pl.col("t").dt.epoch("us"), h=pl.col("t").dt.hour(), w=pl.col("t").dt.weekday())
    assert np.array_equal(epoch, ref["e"].to_numpy().astype(np.float64) / 1e6, equal_nan=True)
    assert hour.tolist() == [-1 if h is None else h for h in ref["h"].to_list()]
    assert weekday.tolist() == [-1 if w is None else w for w in ref["w"].to_list()]


def test_gaps_are_candidate_minus_recent_mean_and_cosine_to_the_last_item():
    split = context_rule_split(users=40, items=30)
    train = split.train
    year = np.arange(train.n_items, dtype=np.float64) + 1950.0
    year[3] = np.nan  # a missing value is skipped in the user's mean, not propagated
    train = dataclasses.replace(train, items=train.items.with_columns(year=pl.Series(year)))
    vectors = np.random.default_rng(0).normal(size=(train.n_items, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    settings = FeatureSettings(gaps=True, recent_items=4)
    tables = FeatureTables.fit(train, settings, item_vectors=vectors)
    cases = split.test.take(np.arange(3))
    cand = pl.DataFrame({"case": np.repeat(np.arange(3), 2).astype(np.int32), "item": np.tile([0, 7], 3).astype(np.int32)})
    f = build_features(cand, cases, tables)
    for row in f.iter_rows(named=True):
        hist = cases.history.row(row["case"])
        recent = hist[-4:]
        assert np.isclose(row["pop_gap"], tables.log_pop[row["item"]] - tables.log_pop[recent].mean(), atol=1e-5)
        assert np.isclose(row["item_year_gap"], year[row["item"]] - np.nanmean(year[recent]), atol=1e-3)
        assert np.isclose(row["text_sim_last"], vectors[row["item"]] @ vectors[hist[-1]], atol=1e-5)
    plain = build_features(cand, cases, FeatureTables.fit(train, FeatureSettings(recent_items=4), item_vectors=vectors))
    assert not {"pop_gap", "item_year_gap", "text_sim_last"} & set(plain.columns)  # off by default


DAY = 86_400.0
T0 = 1_704_067_200.0  # 2024-01-01 00:00 UTC


def _timed_tables(events: list[tuple[int, int, float]], settings: FeatureSettings) -> tuple[TrainData, FeatureTables]:
    """Tables over hand-made (user, item, day) interactions (5 users, a 40-item catalogue)."""
    base = context_rule_split(users=5, items=40).train
    u, i, d = (np.array(x) for x in zip(*events))
    frame = pl.DataFrame({"u": u.astype(np.int32), "i": i.astype(np.int32), "timestamp": pl.from_epoch(pl.Series(T0 + d * DAY), time_unit="s").dt.replace_time_zone("UTC")})
    data = dataclasses.replace(base, events=frame)
    return data, FeatureTables.fit(data, settings)


def _request(user: int, day: float, items: list[int]) -> tuple[pl.DataFrame, "Cases"]:
    from recsys.data.types import Cases, Sequences

    hist = Sequences(np.array([0, 1]), np.array([3]))
    ctx = pl.DataFrame({"timestamp": pl.from_epoch(pl.Series([T0 + day * DAY]), time_unit="s").dt.replace_time_zone("UTC")})
    cand = pl.DataFrame({"case": np.zeros(len(items), np.int32), "item": np.array(items, np.int32)})
    return cand, Cases(np.array([user]), hist, np.array([items[0]]), hist, ctx)


def test_time_windows_known_answer_counts_only_what_precedes_the_request():
    st = FeatureSettings(text_similarity=False, context=False, windows=(1, 7, 30), user_gap=True)
    before = [(0, 0, 0.0), (1, 0, 1.0), (2, 0, 2.0), (3, 0, 5.0), (4, 0, 9.0), (0, 0, 9.5), (3, 1, 9.75), (1, 1, 9.9)]
    at_or_after = [(2, 0, 10.0), (3, 0, 10.0), (4, 1, 10.0), (3, 1, 10.5), (0, 0, 12.0), (1, 0, 40.0)]
    cand, cases = _request(3, 10.0, [0, 1, 2])
    _, tables = _timed_tables(before + at_or_after, st)
    f = build_features(cand, cases, tables).to_dicts()
    item0, item1, item2 = f
    # item 0 before day 10: days 9 and 9.5 in the last day, 5, 9, 9.5 in the last week, all six in the last 30 days
    assert np.isclose(item0["pop_1d"], np.log1p(2)) and np.isclose(item0["pop_7d"], np.log1p(3)) and np.isclose(item0["pop_30d"], np.log1p(6))
    assert np.isclose(item0["share_1d"], 2 / 4)  # 4 interactions of any item in [day 9, day 10): 9, 9.5, 9.75, 9.9
    assert np.isclose(item0["share_30d"], 6 / 8)
    assert np.isclose(item0["trend_1d"], np.log1p(2) - np.log1p(6 / 30), atol=1e-6)
    assert np.isclose(item0["trend_7d"], np.log1p(3) - np.log1p(6 * 7 / 30), atol=1e-6)
    assert np.isclose(item0["item_idle_days"], 0.5)
    assert np.isclose(item1["pop_1d"], np.log1p(2)) and np.isclose(item1["item_idle_days"], 0.1, atol=1e-6)
    assert item2["pop_30d"] == 0 and item2["share_7d"] == 0 and np.isnan(item2["item_idle_days"])  # never interacted with
    assert np.isclose(item0["user_gap_days"], 0.25)  # user 3's last interaction before day 10 was at 9.75
    # the causal rule: interactions at or after the request time change nothing (both data end on day 40)
    cols = ["pop_1d", "pop_7d", "pop_30d", "share_1d", "share_7d", "share_30d", "trend_1d", "trend_7d", "item_idle_days", "user_gap_days"]
    _, only_before = _timed_tables([*before, (1, 5, 40.0)], st)
    assert build_features(cand, cases, only_before).select(cols).equals(build_features(cand, cases, tables).select(cols), null_equal=True)
    # a request after the training data counts as just after its last interaction (day 40)
    late, late_cases = _request(3, 400.0, [0, 1, 2])
    at_end = _request(3, 40.0 + 1 / DAY, [0, 1, 2])[1]
    assert build_features(late, late_cases, tables).select(cols).equals(build_features(late, at_end, tables).select(cols), null_equal=True)
    assert np.isclose(build_features(late, late_cases, tables)["pop_30d"][0], np.log1p(2))  # days 12 and 40


def test_time_index_ignores_keys_it_never_saw():
    from recsys.ltr.features import TimeIndex

    idx = TimeIndex.build(np.array([0, 0, 1]), np.array([10.0, 20.0, 30.0]))
    keys = np.array([0, 1, 2, 7, -1])  # 2 and 7: items added after the run; -1: an unknown user
    assert idx.count(keys, np.zeros(5), np.full(5, 100.0)).tolist() == [2, 1, 0, 0, 0]
    assert np.array_equal(idx.last_before(keys, np.full(5, 25.0)), [20.0, np.nan, np.nan, np.nan, np.nan], equal_nan=True)
    assert idx.count(np.array([0]), np.array([10.0]), np.array([20.0])).tolist() == [1]  # [10, 20): 20 is not before 20


def test_time_windows_equal_a_per_row_reference(ml):
    data_a, cases, _, merged, _ = ml
    tables = FeatureTables.fit(data_a, FeatureSettings(text_similarity=False, windows=(7, 30), user_gap=True))
    frame = build_features(merged, cases, tables)
    ev = data_a.events.select("u", "i", t=pl.col("timestamp").dt.epoch("s")).to_numpy()
    req = cases.context["timestamp"].dt.epoch("s").to_numpy()
    rows = np.random.default_rng(0).choice(frame.height, 300, replace=False).tolist()
    end_of_data = ev[:, 2].max() + 1
    for r in rows:
        c, i = int(frame["case"][r]), int(frame["item"][r])
        t = min(req[c], end_of_data)
        mine = ev[(ev[:, 1] == i) & (ev[:, 2] < t)][:, 2]
        assert np.isclose(frame["pop_7d"][r], np.log1p((mine >= t - 7 * 86400).sum()))
        assert np.isclose(frame["share_30d"][r], (mine >= t - 30 * 86400).sum() / max(((ev[:, 2] < t) & (ev[:, 2] >= t - 30 * 86400)).sum(), 1))
        idle = frame["item_idle_days"][r]
        assert np.isnan(idle) if len(mine) == 0 else np.isclose(idle, (t - mine.max()) / 86400, rtol=1e-5)
        users = ev[(ev[:, 0] == cases.users[c]) & (ev[:, 2] < t)][:, 2]
        gap = frame["user_gap_days"][r]
        assert np.isnan(gap) if len(users) == 0 else np.isclose(gap, (t - users.max()) / 86400, rtol=1e-5)
    assert "pop_7d" not in build_features(merged.head(5), cases, FeatureTables.fit(data_a, FeatureSettings(text_similarity=False))).columns
