"""Items without training interactions: they borrow the ID embedding of their text neighbours, rank at least as well
as under the untrained text model, and items added to an index later rank as the evaluation's cold protocol says;
``cold_start = "auto"`` chooses the channel from held-out training items only."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from recsys.data import schema as S
from recsys.evaluation import metrics as M
from recsys.evaluation.split import cold_start, encode
from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever
from recsys.retriever.cold_probe import PROBE_FRACTION, PROBE_MIN_INTERACTIONS, choose_cold_channel, probe_split
from recsys.retriever.model import TwoTowerNet

from .conftest import FAST, synthetic_dataset

pytestmark = pytest.mark.slow


def _ranks(scores: np.ndarray, cases) -> np.ndarray:
    """Target ranks under the protocol (exclusions, fixed tie keys)."""
    excl = cases.exclude
    s = M.prepare_scores(scores.astype(np.float32), np.repeat(np.arange(len(cases)), excl.lengths), excl.items, cases.targets)
    return M.target_ranks(s, cases.targets, M.tie_keys(np.arange(len(cases)), s.shape[1], 0))


@pytest.fixture(scope="module")
def cold_split():
    return cold_start(encode(synthetic_dataset()))


@pytest.fixture(scope="module")
def cold_fitted(cold_split):
    # the protocol's cold pass: trained without validation, the cold items only in the catalogue (no interactions);
    # default settings, so the probe chose the channel at the end of fit
    return TwoTowerRetriever(RetrieverTrainingArguments(**{**FAST, "epochs": 15})).fit(cold_split.train, None)


@pytest.fixture
def text_model(tmp_path, cold_fitted):
    """A copy of the fitted model scoring cold items through the "text" channel (the vectors follow the settings)."""
    model = TwoTowerRetriever.load(cold_fitted.save(tmp_path / "text-model"))
    model.args.cold_start = "text"
    return model


def test_settings_are_checked():
    with pytest.raises(ValueError, match="cold_neighbours"):
        RetrieverTrainingArguments(cold_neighbours=-1)
    with pytest.raises(ValueError, match="cold_temperature"):
        RetrieverTrainingArguments(cold_temperature=0)
    with pytest.raises(ValueError, match="cold_probe_epochs"):
        RetrieverTrainingArguments(cold_probe_epochs=0)
    defaults = RetrieverTrainingArguments()
    assert (defaults.cold_start, defaults.cold_text_shift) == ("auto", 0.25)


def test_text_of_a_known_item_borrows_that_items_id_embedding():
    """A row without an id whose text equals a known item's text gets (almost) that item's ID embedding, so re-adding
    a catalogue item by its text alone puts it where the catalogue has it; cold_neighbours=0 leaves the text path."""
    torch.manual_seed(0)
    args = RetrieverTrainingArguments(d_model=8, heads=2, cold_neighbours=3, cold_temperature=0.01)
    net = TwoTowerNet(16, 6, args)
    with torch.no_grad():
        net.text.copy_(torch.nn.functional.normalize(torch.randn(6, 16), dim=1))
        net.known.copy_(torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool))
    net.eval()
    with torch.no_grad():
        by_text = net.item_raw(net.text[:4], torch.full((4,), -1))
        catalogue = net.item_raw()
        torch.testing.assert_close(by_text, catalogue[:4], atol=1e-3, rtol=0)
        # unknown catalogue items = text path + a borrowed embedding, never their own (untrained) row
        text_path = net.adaptor(net.text)
        assert not torch.allclose(catalogue[4:], text_path[4:])
        torch.testing.assert_close(catalogue[4:] - text_path[4:], net.borrowed_ids(net.text[4:]))
        net.cold_neighbours = 0
        torch.testing.assert_close(net.item_raw()[4:], text_path[4:])
    # training leaves ID-less rows at the text path (ID dropout trains that path; unknown items are never scored)
    net.train()
    net.cold_neighbours = 3
    torch.testing.assert_close(net.item_raw()[4:], net.adaptor(net.text)[4:])


def test_cold_items_rank_at_least_as_well_as_zero_shot(cold_split, cold_fitted):
    from recsys.models.retriever import ZeroShotRecommender

    cases = cold_split.cases
    zero = ZeroShotRecommender(decay=0.3).fit(cold_split.train)
    zero_hr = float((_ranks(zero.score(cases), cases) < 10).mean())
    trained_hr = float((_ranks(cold_fitted.score(cases), cases) < 10).mean())
    assert trained_hr >= zero_hr, (trained_hr, zero_hr)


def test_items_added_to_an_index_rank_as_the_cold_protocol_predicts(tmp_path, cold_split, cold_fitted):
    """Index the warm catalogue, add the cold items by text with `recsys index add-items` (under new ids, so they are
    embedded from text alone), search with the cold cases' users: every target's rank equals its protocol rank."""
    from recsys.cli import app
    from recsys.data.dataset import Dataset
    from recsys.index import ItemIndex
    from recsys.index.build import build_index
    from recsys.retriever.run import CATALOGUE_FILE

    data = synthetic_dataset()
    enc = encode(data)
    cold_items = cold_split.cold_items
    run = tmp_path / "run"
    cold_fitted.save(run)
    pl.DataFrame({S.ITEM_ID: enc.item_ids}).write_parquet(run / CATALOGUE_FILE)
    cold_ids = enc.item_ids[cold_items]
    warm = Dataset(data.interactions.filter(~pl.col(S.ITEM_ID).is_in(cold_ids.tolist())), data.items.filter(~pl.col(S.ITEM_ID).is_in(cold_ids.tolist())))
    build_index(run, warm, tmp_path / "index", index_type="flat", device="cpu", progress=False)
    new_id = 10_000  # ids the run's catalogue does not have: the vectors come from the text alone
    added = data.items.filter(pl.col(S.ITEM_ID).is_in(cold_ids.tolist())).with_columns(pl.col(S.ITEM_ID) + new_id)
    added.write_parquet(tmp_path / "new.parquet")
    result = CliRunner().invoke(app, ["index", "add-items", str(tmp_path / "index"), str(tmp_path / "new.parquet"), "--json"])
    assert result.exit_code == 0, result.output

    cases = cold_split.cases
    protocol_ranks = _ranks(cold_fitted.score(cases), cases)
    index = ItemIndex.load(tmp_path / "index", device="cpu")
    users = cold_fitted.encode_users(cases.history, cases.context)
    to_id = np.asarray(enc.item_ids, dtype=np.int64).copy()
    to_id[cold_items] += new_id  # where the index keeps each catalogue item
    exclude = [np.setdiff1d(to_id[cases.exclude.row(r)], to_id[[cases.targets[r]]]) for r in range(len(cases))]
    scores, ids = index.search(users, enc.n_items, exclude=exclude)
    index_ranks = np.array([int(np.flatnonzero(ids[r] == to_id[cases.targets[r]])[0]) for r in range(len(cases))])
    hits = lambda ranks: float((ranks < 10).mean())  # noqa: E731
    assert hits(index_ranks) == pytest.approx(hits(protocol_ranks)), (hits(index_ranks), hits(protocol_ranks))
    # the same rank case by case (up to float ties between scores equal to 1e-5)
    assert (np.abs(index_ranks - protocol_ranks) <= 1).mean() >= 0.98


def test_text_channel_scores_cold_items_by_the_text_model(cold_split, text_model):
    """Warm items keep the trained score; among cold items the order is the untrained text model's exactly."""
    from recsys.retriever import recency_weighted_mean

    cases = cold_split.cases
    model = text_model
    assert model.dim == model.args.d_model + model.net.text.shape[1] + 1
    items, users = model.encode_items(), model.encode_users(cases.history, cases.context)
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(users, axis=1), 1.0, atol=1e-5)
    scores = users @ items.T
    cold = cold_split.cold_items
    text = model.net.text.numpy()
    zero = recency_weighted_mean([cases.history.row(r) for r in range(len(cases))], text, model.args.cold_text_decay) @ text[cold].T
    for r in range(len(cases)):
        assert (np.argsort(-scores[r, cold], kind="stable") == np.argsort(-zero[r], kind="stable")).all()
    # the same cold item added later by its text alone gets the catalogue's vector
    np.testing.assert_allclose(model.encode_items([model.item_texts[i] for i in cold]), items[cold], atol=1e-5)
    # a user known only by a text scores warm items by the tower and cold items by the text
    u = model.encode_text_users([model.item_texts[0]])
    assert np.isfinite(u).all() and abs(np.linalg.norm(u) - 1) < 1e-5 and (u[0, : model.args.d_model] != 0).any()


def test_off_mode_keeps_the_tower_vectors(cold_split):
    args = RetrieverTrainingArguments(**{**FAST, "epochs": 2, "cold_start": "off"})
    model = TwoTowerRetriever(args).fit(cold_split.train, None)
    assert model.dim == model.args.d_model == model.encode_items().shape[1]
    with pytest.raises(ValueError, match="cold_start"):
        RetrieverTrainingArguments(cold_start="blend")


def test_adaptor_channel_orders_cold_items_by_the_towers_text_path(tmp_path, cold_split, cold_fitted):
    """The "adaptor" channel: among cold items, the order of the tower's own text path (what "off" scores)."""
    cases = cold_split.cases
    model = TwoTowerRetriever.load(cold_fitted.save(tmp_path / "model"))  # a copy whose settings the test may change
    model.args.cold_start = "adaptor"
    assert model.dim == 2 * model.args.d_model + 1
    items, users = model.encode_items(), model.encode_users(cases.history, cases.context)
    assert items.shape[1] == users.shape[1] == model.dim
    cold = cold_split.cold_items
    model.args.cold_start = "off"
    tower = model.encode_users(cases.history, cases.context) @ model.encode_items()[cold].T
    channel = users @ items[cold].T
    for r in range(len(cases)):
        assert (np.argsort(-channel[r], kind="stable") == np.argsort(-tower[r], kind="stable")).all()



def test_a_model_saved_without_the_setting_loads_with_its_old_vectors(tmp_path, cold_fitted):
    """Indexes built from a model saved before the channel existed must still match its vectors' dimension."""
    import json

    path = cold_fitted.save(tmp_path / "model")
    config = json.loads((path / "config.json").read_text())
    del config["cold_start"]
    (path / "config.json").write_text(json.dumps(config))
    old = TwoTowerRetriever.load(path)
    assert old.args.cold_start == "off" and old.encode_items().shape[1] == old.args.d_model
    # saved with the text channel before the shift existed: loads with the channel and no shift, as it scored then
    config["cold_start"] = "text"
    config.pop("cold_text_shift", None)
    (path / "config.json").write_text(json.dumps(config))
    older = TwoTowerRetriever.load(path)
    assert (older.args.cold_start, older.args.cold_text_shift) == ("text", 0.0)
    # a model fitted with "auto" is saved with the channel its probe chose, so it loads with the same vectors
    new = TwoTowerRetriever.load(cold_fitted.save(tmp_path / "new"))
    assert new.args.cold_start == cold_fitted.args.cold_start in ("text", "adaptor")
    np.testing.assert_array_equal(new.encode_items(), cold_fitted.encode_items())


def test_probe_holds_out_a_tenth_of_the_items_and_never_trains_on_them(cold_split):
    """The probe's split: a seeded tenth of the items with enough interactions leaves the training data entirely;
    one case per held-out interaction, history = the user's other items, the user's other held-out items excluded."""
    data = cold_split.train
    probe = probe_split(data, seed=0)
    eligible = np.flatnonzero(data.item_counts >= PROBE_MIN_INTERACTIONS)
    assert len(probe.held_out) == round(PROBE_FRACTION * len(eligible)) and np.isin(probe.held_out, eligible).all()
    assert (probe.train.item_counts[probe.held_out] == 0).all()  # never seen by the probe retriever
    kept = np.setdiff1d(np.arange(data.n_items), probe.held_out)
    np.testing.assert_array_equal(probe.train.item_counts[kept], data.item_counts[kept])
    assert len(probe.cases) == int(data.item_counts[probe.held_out].sum())
    assert np.isin(probe.cases.targets, probe.held_out).all()
    assert not np.isin(probe.cases.history.items, probe.held_out).any()
    held = set(probe.held_out.tolist())
    for r in range(len(probe.cases)):
        user = probe.cases.users[r]
        own = set(data.sequences.row(user).tolist())
        assert set(probe.cases.history.row(r).tolist()) == own - held
        assert set(probe.cases.exclude.row(r).tolist()) == own  # history + every held-out item of the user
    assert probe.cases.context.height == len(probe.cases) and "timestamp" in probe.cases.context.columns
    np.testing.assert_array_equal(probe_split(data, seed=0).held_out, probe.held_out)  # deterministic


class _Scripted:
    """A stand-in probe retriever whose hits per channel are given (cases start <= row < stop hit, at rank 0; the rest
    rank last): the decision rule in isolation."""

    def __init__(self, hits: dict[str, tuple[int, int]]) -> None:
        self.hits, self.args = hits, None

    def __call__(self, args):
        self.args = args
        return self

    def fit(self, data, validation=None, progress=None):
        self.n_items = data.n_items
        return self

    def score(self, cases):
        s = np.random.default_rng(0).random((len(cases), self.n_items)).astype(np.float32)
        start, stop = self.hits[self.args.cold_start]
        rows = np.arange(len(cases))
        s[rows, cases.targets] = np.where((rows >= start) & (rows < stop), 2.0, -1.0)
        return s


def test_the_probe_picks_adaptor_only_when_it_wins_by_more_than_one_standard_error(cold_split):
    args = RetrieverTrainingArguments(**FAST)
    n = len(probe_split(cold_split.train, args.seed).cases)
    k = n // 4
    clear = choose_cold_channel(_Scripted({"text": (0, k), "adaptor": (0, 2 * k)}), args, cold_split.train)
    assert clear["cold_start"] == "adaptor" and clear["probe"]["cases"] == n
    assert clear["probe"]["text"]["HR@10"] == pytest.approx(k / n) and clear["probe"]["adaptor"]["HR@10"] == pytest.approx(2 * k / n)
    assert choose_cold_channel(_Scripted({"text": (0, 2 * k), "adaptor": (0, k)}), args, cold_split.train)["cold_start"] == "text"
    assert choose_cold_channel(_Scripted({"text": (0, k), "adaptor": (1, k + 1)}), args, cold_split.train)["cold_start"] == "text"
    # adaptor loses 2 cases and wins 4: a gain of 2 / n against a paired standard error of about 2.4 / n is a tie,
    # and a tie keeps the pretrained text
    tie = choose_cold_channel(_Scripted({"text": (0, k), "adaptor": (2, k + 4)}), args, cold_split.train)
    d = tie["probe"]["adaptor_minus_text"]
    assert d["diff"] == pytest.approx(2 / n) and d["se"] > d["diff"] and tie["cold_start"] == "text"


def test_auto_resolves_in_fit_and_records_the_probe(cold_fitted):
    """The fitted model scores with the chosen channel, says which, and keeps what the probe measured."""
    assert cold_fitted.args.cold_start in ("text", "adaptor") and cold_fitted.channel == cold_fitted.args.cold_start
    record = next(h for h in cold_fitted.history if h.get("stage") == "cold_probe")
    probe = record["probe"]
    assert record["cold_start"] == cold_fitted.metrics["cold_start"] == cold_fitted.args.cold_start
    winner = "adaptor" if probe["adaptor_minus_text"]["diff"] > probe["adaptor_minus_text"]["se"] else "text"
    assert record["cold_start"] == winner and probe["cases"] > 0 and probe["epochs"] == cold_fitted.args.cold_probe_epochs

