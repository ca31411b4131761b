"""SASRec: the shared contract, a sequence it must learn, early stopping, budgets and scoring edges."""

from __future__ import annotations

import pickle

import numpy as np
import polars as pl
import pytest
import torch

from recsys.data.types import Cases, Sequences, TrainData
from recsys.models import get_model_class
from recsys.models.sasrec import SASRec, _left_padded, _ndcg_at, _training_windows
from tests.models.contract import UNSEEN, RecommenderContract, cases_for, synthetic_train

N_SUCC = 30  # successor catalogue: items 28 and 29 never occur in training


def successor_train(n_users: int = 60, seed: int = 0) -> TrainData:
    """Every user consumes a run of consecutive items: item k is always followed by item k + 1."""
    rng = np.random.default_rng(seed)
    rows, items = [], []
    for u in range(n_users):
        length = int(rng.integers(4, 10))
        start = int(rng.integers(0, N_SUCC - 2 - length + 1))
        rows += [u] * length
        items += list(range(start, start + length))
    seq = Sequences.from_sorted(np.array(rows), np.array(items), n_users)
    events = pl.DataFrame({"u": np.array(rows, dtype=np.int32), "i": np.array(items, dtype=np.int32)})
    return TrainData(seq, N_SUCC, pl.DataFrame({"item_id": np.arange(N_SUCC)}), events)


def successor_cases(n: int = 50, seed: int = 1) -> Cases:
    rng = np.random.default_rng(seed)
    hists, targets = [], []
    for _ in range(n):
        length = int(rng.integers(2, 8))
        start = int(rng.integers(0, N_SUCC - 2 - length))
        hists.append(np.arange(start, start + length))
        targets.append(start + length)
    h = Sequences.from_sorted(np.repeat(np.arange(n), [len(x) for x in hists]), np.concatenate(hists), n)
    return Cases(np.arange(n), h, np.array(targets), h)


# The contract's catalogue is tiny (30 users x 6 items): the full 2-layer model memorises it, so the contract
# runs a 1-layer, 1-head, heavily regularised SASRec (measured: passes for 10 of 10 seeds).
class TestSASRecContract(RecommenderContract):
    def make_model(self):
        return SASRec(d=32, layers=1, heads=1, max_len=8, dropout=0.5, lr=3e-3, batch_size=8, epochs=40, seed=0)


def _small(**kw) -> SASRec:
    params = dict(d=32, max_len=10, batch_size=16, epochs=15, lr=3e-3, seed=0)  # the protocol's 2 layers, 2 heads
    return SASRec(**{**params, **kw})


def test_learns_the_successor_item():
    data = successor_train()
    cases = successor_cases()
    s = _small().fit(data).score(cases)
    assert s.shape == (len(cases), N_SUCC) and s.dtype == np.float32  # no padding column
    top1 = s.argmax(axis=1)
    assert (top1 == cases.targets).mean() >= 0.8
    assert np.isneginf(s[:, 28:]).all()  # never seen in training
    assert np.isfinite(s[:, :28]).all()


def test_early_stopping_keeps_the_best_state():
    data = successor_train()
    val = successor_cases(seed=2)
    model = _small(epochs=40, patience=2, lr=1e-2).fit(data, val)
    epochs, scores = zip(*model.val_history_)
    assert list(epochs) == list(range(1, model.epochs_ + 1))
    assert model.best_val_ndcg10_ == max(scores)
    assert model.best_epoch_ == epochs[int(np.argmax(scores))]
    if model.stopped_by_ == "patience":
        assert model.epochs_ == model.best_epoch_ + 2
    # the model in hand is the best one, not the last one
    assert _ndcg_at(model.score(val), val) == pytest.approx(model.best_val_ndcg10_)


def test_time_budget_stops_training():
    model = _small(epochs=50, time_budget_s=0.0).fit(successor_train(), successor_cases())
    assert model.stopped_by_ == "time_budget"
    assert model.epochs_ == 1 and len(model.val_history_) == 1


def test_fit_leaves_global_torch_state_alone():
    threads = torch.get_num_threads()
    rng_state = torch.get_rng_state()
    _small(epochs=1).fit(successor_train())
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_empty_and_long_histories_score():
    data = successor_train()
    model = _small(epochs=2, max_len=5).fit(data)
    hist = Sequences(np.array([0, 0, 12]), np.arange(12, dtype=np.int32))  # empty; longer than max_len
    s = model.score(Cases(np.array([0, 1]), hist, np.array([0, 12]), hist))
    assert np.isfinite(s[:, :28]).all()
    # only the last max_len items matter
    tail = Sequences(np.array([0, 5]), np.arange(7, 12, dtype=np.int32))
    np.testing.assert_allclose(s[1], model.score(Cases(np.array([1]), tail, np.array([12]), tail))[0], rtol=1e-5)


def test_pickle_round_trip():
    data = successor_train()
    cases = successor_cases(n=5)
    model = _small(epochs=2).fit(data)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(model.score(cases), again.score(cases))


def test_left_padding_and_windows():
    seqs = Sequences(np.array([0, 1, 4, 14]), np.arange(14, dtype=np.int32))
    padded = _left_padded(seqs, 4)
    np.testing.assert_array_equal(padded, [[0, 0, 0, 1], [0, 2, 3, 4], [11, 12, 13, 14]])  # item i -> row i + 1
    assert _training_windows(seqs, 4, "last") is seqs
    w = _training_windows(seqs, 4, "all")
    assert [w.row(r).tolist() for r in range(w.n_rows)] == [[0], [1, 2, 3], [10, 11, 12, 13], [7, 8, 9, 10], [4, 5, 6, 7]]
    with pytest.raises(ValueError):
        _training_windows(seqs, 4, "some")


def test_contract_attributes():
    assert get_model_class("sasrec") is SASRec
    assert SASRec.refit_for_test is False
    assert len(SASRec.grid) == 1
    m = SASRec()
    assert (m.d, m.layers, m.heads, m.max_len, m.dropout, m.lr, m.batch_size) == (64, 2, 2, 50, 0.2, 1e-3, 64)
    assert (m.epochs, m.time_budget_s, m.patience) == (200, 600.0, 10)
    assert m.windows == "all"  # the strongest setting is the default (every comparison is against it)


def test_contract_never_seen_items_have_no_score():
    data = synthetic_train()
    model = TestSASRecContract().make_model()
    model.epochs = 2
    s = model.fit(data).score(cases_for(data, [0, 25]))
    assert np.isneginf(s[:, UNSEEN]).all()


def test_all_windows_train_on_older_history():
    # max_len 3 < every user's length: the default "all" cuts each row into overlapping 4-item windows
    data = successor_train()
    cases = successor_cases()
    s = _small(max_len=3).fit(data).score(cases)
    assert (s.argmax(axis=1) == cases.targets).mean() >= 0.8
