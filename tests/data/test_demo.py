"""The demo dataset generator: format, determinism and the planted signals (docs/demo-data.md)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.data import demo
from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.context import TIMES_OF_DAY, time_of_day, time_of_day_expr
from recsys.data.demo import CATEGORIES, CATEGORY_CONTEXT, context_boost, generate_demo
from recsys.data.validate import validate_dataset
from recsys.errors import RecsysError


@pytest.fixture(scope="module")
def demo_data():
    return generate_demo(users=600, items=1200, seed=3, interactions_per_user=24)


@pytest.fixture(scope="module")
def events(demo_data):
    """Interactions with their item's category, time of day and position in the user's sequence."""
    ds, _ = demo_data
    return (
        ds.interactions.join(ds.items.select(S.ITEM_ID, "category"), on=S.ITEM_ID, how="left", maintain_order="left")
        .with_columns(
            tod=time_of_day_expr(),
            pos=pl.int_range(pl.len()).over(S.USER_ID),
            n=pl.len().over(S.USER_ID),
        )
    )


def test_schema_and_validation(demo_data):
    ds, source = demo_data
    validate_dataset(ds.interactions, ds.items, ds.users)
    assert source == {
        "name": "demo",
        "format": "demo",
        "version": demo.DEMO_VERSION,
        "params": {"users": 600, "items": 1200, "seed": 3, "interactions_per_user": 24},
    }
    assert ds.interactions.schema == pl.Schema(
        {"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Datetime("us", "UTC"), "rating": pl.Float64,
         "device": pl.String}
    )
    assert ds.items.schema == pl.Schema(
        {"item_id": pl.Int64, "title": pl.String, "category": pl.String, "description": pl.String,
         "tags": pl.List(pl.String), "price_tier": pl.String, "brand": pl.String}
    )
    assert ds.users.schema == pl.Schema({"user_id": pl.Int64, "age": pl.Int64, "country": pl.String, "bio": pl.String})
    assert ds.items.height == 1200 and ds.users.height == 600
    assert ds.interactions[S.USER_ID].n_unique() == 600
    assert set(ds.interactions["device"].unique()) == set(demo.DEVICES)
    assert set(ds.items["category"].unique()) == set(CATEGORIES)
    r = ds.interactions[S.RATING]
    assert r.min() >= 1 and r.max() <= 5 and set(r.unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ds.context_columns == ["device"]
    # about interactions_per_user draws per user, minus the dropped repeats
    assert 12 <= ds.interactions.height / 600 <= 24


def test_no_repeated_pairs_and_increasing_time(demo_data):
    inter = demo_data[0].interactions
    assert not inter.select(pl.struct(S.USER_ID, S.ITEM_ID).is_duplicated().any()).item()
    steps = inter.select(pl.col(S.TIMESTAMP).diff().over(S.USER_ID).alias("d")).drop_nulls()["d"]
    assert steps.min() > timedelta(0)
    ts = inter[S.TIMESTAMP]
    assert datetime(2024, 1, 1, tzinfo=timezone.utc) <= ts.min() and ts.max() < datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert (ts.max() - ts.min()).days >= 300  # spread over about a year


def test_deterministic_per_seed(demo_data, tmp_path):
    a, _ = generate_demo(users=80, items=100, seed=7, interactions_per_user=10)
    b, _ = generate_demo(users=80, items=100, seed=7, interactions_per_user=10)
    c, _ = generate_demo(users=80, items=100, seed=8, interactions_per_user=10)
    for name in ("interactions", "items", "users"):
        assert getattr(a, name).equals(getattr(b, name)), name
        assert not getattr(a, name).equals(getattr(c, name)), name
    # byte-identical files on re-run
    pa = a.save(tmp_path / "a", source={"name": "demo"}).path
    pb = b.save(tmp_path / "b", source={"name": "demo"}).path
    for f in (S.INTERACTIONS_FILE, S.ITEMS_FILE, S.USERS_FILE):
        assert (pa / f).read_bytes() == (pb / f).read_bytes(), f


def test_many_chunks(monkeypatch, tmp_path):
    """With many tiny chunks: format, ids and repeat-free pairs hold, and re-runs stay byte-identical."""
    monkeypatch.setattr(demo, "_CELLS_PER_CHUNK", 50)
    ds, _ = generate_demo(users=40, items=60, seed=1, interactions_per_user=10)
    again, _ = generate_demo(users=40, items=60, seed=1, interactions_per_user=10)
    pa = ds.save(tmp_path / "a", source={"name": "demo"}).path
    pb = again.save(tmp_path / "b", source={"name": "demo"}).path
    assert (pa / S.INTERACTIONS_FILE).read_bytes() == (pb / S.INTERACTIONS_FILE).read_bytes()
    validate_dataset(ds.interactions, ds.items, ds.users)
    assert ds.interactions[S.USER_ID].n_unique() == 40
    assert ds.users[S.USER_ID].to_list() == list(range(1, 41))
    assert not ds.interactions.select(pl.struct(S.USER_ID, S.ITEM_ID).is_duplicated().any()).item()


def test_save_and_load_roundtrip(demo_data, tmp_path):
    ds, source = demo_data
    loaded = Dataset.load(ds.save(tmp_path / "demo", source=source).path)
    assert loaded.interactions.equals(ds.interactions)
    assert loaded.items.equals(ds.items)
    assert loaded.users.equals(ds.users)
    assert loaded.manifest["source"] == source


def test_bad_parameters_raise():
    for kwargs in ({"users": 0}, {"items": 5}, {"interactions_per_user": 0}, {"seed": -1}):
        with pytest.raises(RecsysError, match=next(iter(kwargs))):
            generate_demo(**{"users": 5, "items": 20, **kwargs})


def test_vocabularies_are_disjoint_and_rich():
    seen: dict[str, str] = {}
    for c in CATEGORIES:
        words = demo.CATEGORY_VOCABULARY[c]
        assert len(words) >= 20 and len(set(words)) == len(words)
        for w in words:
            assert w not in seen, f"{w!r} is in both {seen.get(w)} and {c}"
            assert w not in demo.GENERIC_WORDS
            seen[w] = c
    assert 8 <= len(CATEGORIES) <= 12


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_text_similarity_carries_category(demo_data):
    items = demo_data[0].items
    words = [_words(f"{t} {d}") for t, d in zip(items["title"], items["description"])]
    cats = items["category"].to_numpy()
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, items.height, (2, 4000))
    keep = a != b
    a, b = a[keep], b[keep]
    jac = np.array([len(words[i] & words[j]) / len(words[i] | words[j]) for i, j in zip(a, b)])
    same = cats[a] == cats[b]
    assert same.sum() > 100
    assert jac[same].mean() > 1.5 * jac[~same].mean(), (jac[same].mean(), jac[~same].mean())
    # without the template words (in more than a quarter of all items, as TF-IDF would discount them) the
    # overlap is almost only within a category
    df: dict[str, int] = {}
    for ws in words:
        for w in ws:
            df[w] = df.get(w, 0) + 1
    common = {w for w, k in df.items() if k > items.height / 4}
    content = [ws - common for ws in words]
    shared = np.array([len(content[i] & content[j]) for i, j in zip(a, b)])
    assert shared[same].mean() > 4 * shared[~same].mean(), (shared[same].mean(), shared[~same].mean())
    # every item's text uses its own category's words and no other category's
    for i in rng.integers(0, items.height, 50):
        own = set(demo.CATEGORY_VOCABULARY[cats[i]])
        other = {w for c in CATEGORIES if c != cats[i] for w in demo.CATEGORY_VOCABULARY[c]}
        assert words[i] & own and not (words[i] & other)
        assert set(items["tags"][int(i)]) <= own


def test_bio_names_liked_categories(demo_data, events):
    ds, _ = demo_data
    top = events.group_by(S.USER_ID, "category").len()
    top = top.sort([S.USER_ID, "len", "category"], descending=[False, True, False])
    fav = top.group_by(S.USER_ID, maintain_order=True).first()
    bios = fav.join(ds.users, on=S.USER_ID, how="left")
    hit = np.mean([c in bio for c, bio in zip(bios["category"], bios["bio"])])
    assert hit > 0.7  # the most-interacted category is named in the bio for most users


def test_context_over_represents_preferred_category(events):
    ratios = []
    for c in CATEGORIES:
        dev, tod = CATEGORY_CONTEXT[c]
        match = events.filter((pl.col("device") == dev) & (pl.col("tod") == tod))
        miss = events.filter((pl.col("device") != dev) & (pl.col("tod") != tod))
        ratios.append((match["category"] == c).mean() / (miss["category"] == c).mean())
    assert np.exp(np.mean(np.log(ratios))) > 1.4, ratios
    assert sum(r > 1 for r in ratios) >= len(CATEGORIES) - 1, ratios


def test_context_boost_truth():
    pairs = set(CATEGORY_CONTEXT.values())
    assert len(pairs) == len(CATEGORIES)  # every category has its own (device, time of day)
    for c, (dev, tod) in CATEGORY_CONTEXT.items():
        assert dev in demo.DEVICES and tod in TIMES_OF_DAY
        assert context_boost(c, dev, tod) == pytest.approx(3.0)
        other_dev = next(d for d in demo.DEVICES if d != dev)
        other_tod = next(t for t in TIMES_OF_DAY if t != tod)
        assert context_boost(c, other_dev, other_tod) == 1.0
        assert 1.0 < context_boost(c, dev, other_tod) < 3.0
    assert [time_of_day(h) for h in (0, 5, 6, 11, 12, 17, 18, 23)] == [
        "night", "night", "morning", "morning", "afternoon", "afternoon", "evening", "evening"
    ]


def _third_distance(ev: pl.DataFrame) -> float:
    """Mean total-variation distance between each user's first-third and last-third category histograms."""
    thirds = ev.filter(pl.col("n") >= 9).with_columns(third=(pl.col("pos") * 3 // pl.col("n")))
    counts = (
        thirds.filter(pl.col("third") != 1)
        .group_by(S.USER_ID, "third", "category")
        .len()
        .with_columns(p=pl.col("len") / pl.col("len").sum().over(S.USER_ID, "third"))
        .pivot(on="third", index=[S.USER_ID, "category"], values="p")
        .fill_null(0.0)
    )
    tv = counts.group_by(S.USER_ID).agg(((pl.col("0") - pl.col("2")).abs().sum() / 2).alias("tv"))
    return float(tv["tv"].mean())


def test_taste_drifts_over_the_sequence(events):
    drift = _third_distance(events)
    rng = np.random.default_rng(0)
    shuffled = events.with_columns(r=pl.Series(rng.random(events.height))).with_columns(
        pos=pl.col("r").rank("ordinal").over(S.USER_ID).cast(pl.Int64) - 1
    )
    chance = _third_distance(shuffled)
    assert drift > chance + 0.15, (drift, chance)


def test_sequential_same_category_habit(events):
    """The category repeats right after itself more often than three steps later."""
    ev = events.with_columns(
        prev=pl.col("category").shift(1).over(S.USER_ID), prev3=pl.col("category").shift(3).over(S.USER_ID)
    ).drop_nulls(["prev", "prev3"])
    assert (ev["category"] == ev["prev"]).mean() > (ev["category"] == ev["prev3"]).mean() + 0.1


def test_popularity_is_skewed(demo_data):
    counts = demo_data[0].interactions[S.ITEM_ID].value_counts()["count"].sort(descending=True).to_numpy()
    top = counts[: len(counts) // 10].sum() / counts.sum()
    assert top > 0.3  # the top 10% of items take far more than 10% of interactions


runner = CliRunner()


def test_cli_demo_writes_dataset(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["data", "demo", "--out", str(out), "--users", "50", "--items", "60", "--seed", "2",
                                 "--interactions-per-user", "8"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    ds = Dataset.load(out)
    assert ds.users.height == 50 and ds.items.height == 60
    assert ds.manifest["source"]["params"] == {"users": 50, "items": 60, "seed": 2, "interactions_per_user": 8}
    expected, _ = generate_demo(users=50, items=60, seed=2, interactions_per_user=8)
    assert ds.interactions.equals(expected.interactions)


def test_cli_demo_json(tmp_path):
    args = ["data", "demo", "-o", str(tmp_path / "d"), "--users", "20", "--items", "30", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)
    assert manifest["kind"] == "dataset" and manifest["source"]["name"] == "demo"
    assert manifest["counts"]["profiles"] == 20


def test_cli_demo_item_context(tmp_path):
    out = tmp_path / "d"
    result = runner.invoke(app, ["data", "demo", "-o", str(out), "--users", "20", "--items", "30", "--item-context"])
    assert result.exit_code == 0, result.output
    ds = Dataset.load(out)
    assert ds.manifest["source"]["params"]["item_context"] is True
    expected, _ = generate_demo(users=20, items=30, item_context=True)
    assert ds.items.equals(expected.items) and ds.interactions.equals(expected.interactions)


def test_cli_demo_rejects_zero_users(tmp_path):
    result = runner.invoke(app, ["data", "demo", "--out", str(tmp_path / "bad"), "--users", "0"])
    assert result.exit_code != 0
    assert "users must be an integer >= 1" in result.output
    assert not (tmp_path / "bad").exists()


def test_item_context_variant_moves_items_not_only_categories(demo_data):
    """``item_context=True``: same catalogue plus a ``format`` per item, and within its category the request's device
    favours the items of its format (x FORMAT_BOOST), so the context predicts the item."""
    ds, _ = demo_data
    var, source = generate_demo(users=600, items=1200, seed=3, interactions_per_user=24, item_context=True)
    assert source["params"]["item_context"] is True
    assert var.items.drop("format").equals(ds.items) and var.users.equals(ds.users)
    assert set(var.items["format"].unique()) == set(demo.FORMATS.values())
    device_of_format = {v: k for k, v in demo.FORMATS.items()}
    matched = (
        var.interactions.join(var.items.select(S.ITEM_ID, "format"), on=S.ITEM_ID)
        .select((pl.col("format").replace_strict(device_of_format) == pl.col("device")).mean())
        .item()
    )
    # a third of the items suit a device: x4 makes that 4/6 of a category's draws (less the Zipf head's luck)
    assert 0.55 < matched < 0.8, matched
    plain = ds.interactions.join(var.items.select(S.ITEM_ID, "format"), on=S.ITEM_ID).select(
        (pl.col("format").replace_strict(device_of_format) == pl.col("device")).mean()
    ).item()
    assert abs(plain - 1 / 3) < 0.05, plain  # the default data ignore the format
