"""Synthesised timestamps (a table imported without a timestamp column) carry order only: no model reads a time of
day or a weekday from them, in training, in a saved run, or when a service or batch job scores a request."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from recsys.data import schema as S
from recsys.data.importers.table import import_table
from recsys.retriever.model import context_features

WORDS = ["stapler", "pen", "notebook", "calculator", "binder", "marker", "envelope", "folder", "tape", "scissors", "ruler", "glue"]


def _import(tmp_path, *, synthetic: bool):
    rng = np.random.default_rng(0)
    rows = [(u, int(i)) for u in range(40) for i in rng.choice(len(WORDS), 6, replace=False)]
    inter = pl.DataFrame({"user_id": [u for u, _ in rows], "item_id": [i for _, i in rows]})
    if not synthetic:
        inter = inter.with_columns(timestamp=pl.int_range(pl.len()) * 3_600 + 1_700_000_000)
    inter.write_csv(tmp_path / "events.csv")
    pl.DataFrame({"item_id": range(len(WORDS)), "name": [f"red {w}" for w in WORDS]}).write_csv(tmp_path / "items.csv")
    ds, source = import_table(tmp_path / "events.csv", tmp_path / "items.csv")
    return ds.save(tmp_path / "ds", source=source)


def _ctx(hour: int, n: int = 1) -> pl.DataFrame:
    ts = dt.datetime(2024, 5, 4, hour, tzinfo=dt.timezone.utc)  # a Saturday
    return pl.DataFrame({S.TIMESTAMP: [ts] * n}).with_columns(pl.col(S.TIMESTAMP).dt.cast_time_unit("us"))


def test_context_features_without_time_leave_hour_and_weekday_unknown():
    assert context_features(_ctx(20), 1).tolist() == [[20, 24 + 5]]
    assert context_features(_ctx(20), 1, time=False).tolist() == [[-1, -1]]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    from recsys.index.build import build_index
    from recsys.retriever.config import RetrieverTrainingArguments
    from recsys.retriever.run import train_run

    root = tmp_path_factory.mktemp("synthetic-time")
    ds = _import(root, synthetic=True)
    assert ds.synthetic_timestamps
    train_run(ds, root / "run", RetrieverTrainingArguments(epochs=1, max_steps=3, time_budget_s=60, seed=0))
    build_index(root / "run", ds, root / "index", progress=False)
    return root, ds


def test_retriever_trained_on_synthetic_time_ignores_the_hour(synthetic_run):
    from recsys.retriever.run import load_run

    root, _ = synthetic_run
    model, _, manifest = load_run(root / "run")
    assert model.time_context is False and manifest["time_context"] is False
    morning, evening = (model.encode_users([np.array([0, 1, 2])], _ctx(h)) for h in (8, 20))
    np.testing.assert_array_equal(morning, evening)
    model.time_context = True  # the same weights reading the hour: the user vector moves (so the test can fail)
    assert not np.allclose(model.encode_users([np.array([0, 1, 2])], _ctx(8)), model.encode_users([np.array([0, 1, 2])], _ctx(20)))


def test_service_requests_at_different_times_get_the_same_answer(synthetic_run):
    from recsys.service.retrieval import RetrievalService

    root, ds = synthetic_run
    svc = RetrievalService.open(root / "index")
    user = ds.interactions[S.USER_ID][0]
    a = svc.recommend(user_id=user, context={"time": "morning", "weekday": "mon"}, k=5)
    b = svc.recommend(user_id=user, context={"time": "evening", "weekday": "sat"}, k=5)
    assert [(r.item_id, r.score) for r in a] == [(r.item_id, r.score) for r in b]


def test_real_timestamps_keep_time_context(tmp_path):
    ds = _import(tmp_path, synthetic=False)
    assert not ds.synthetic_timestamps
