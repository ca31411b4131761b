"""Small synthetic catalogue with text that carries the topic but not the order: a sequence model must learn it.

4 topics x 16 items; each user stays in one topic and walks its items in a fixed cyclic order (item k -> k+1).
Text similarity finds the topic (zero-shot), only training finds the next item.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data.dataset import Dataset
from recsys.evaluation.split import encode, leave_one_out

TOPICS = {
    "space": ["rocket", "galaxy", "astronaut", "alien", "orbit", "starship", "planet", "comet"],
    "romance": ["wedding", "love letter", "kiss", "heartbreak", "first date", "honeymoon", "valentine", "proposal"],
    "horror": ["ghost", "haunted house", "zombie", "vampire", "curse", "nightmare", "graveyard", "werewolf"],
    "cooking": ["kitchen", "recipe", "chef", "bakery", "dinner party", "spices", "pastry", "barbecue"],
}
GENRES = {"space": ["Sci-Fi"], "romance": ["Romance"], "horror": ["Horror"], "cooking": ["Documentary"]}
PER_TOPIC = 16
HISTORY = 9


def _catalogue() -> pl.DataFrame:
    rows = []
    for t, (topic, words) in enumerate(TOPICS.items()):
        for k in range(PER_TOPIC):
            rows.append({
                "item_id": t * PER_TOPIC + k,
                "title": f"The {words[k % len(words)]} {['story', 'chronicle'][k // len(words)]}",
                "year": 1990 + k,
                "genres": GENRES[topic],
            })
    return pl.DataFrame(rows)


def synthetic_dataset(n_users: int = 96, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        t = u % len(TOPICS)
        start = int(rng.integers(PER_TOPIC))
        for step in range(HISTORY):
            users.append(u)
            items.append(t * PER_TOPIC + (start + step) % PER_TOPIC)
            ts.append(1_700_000_000 + u * 10_000 + step * 60)
    inter = pl.DataFrame({"user_id": users, "item_id": items, "ts": ts}).select(
        "user_id", "item_id", pl.from_epoch("ts", time_unit="s").dt.cast_time_unit("us").dt.replace_time_zone("UTC").alias("timestamp")
    )
    return Dataset(inter, _catalogue())


@pytest.fixture(scope="session")
def synthetic_split():
    return leave_one_out(encode(synthetic_dataset()))


#: small and fast settings for tests (the real defaults are for MovieLens-sized data)
FAST = dict(d_model=32, layers=1, heads=2, dropout=0.1, max_len=10, batch_size=16, lr=5e-3, epochs=30, patience=30, threads=1, seed=0)
