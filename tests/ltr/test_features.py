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
