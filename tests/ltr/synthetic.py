"""A tiny dataset whose next item is decided by a context x item-attribute rule (the known answer).

Every item has a ``format`` (a, b or c); every interaction has a ``device`` (x, y or z) and the item is drawn, by
popularity, among the items whose format the device decides (x -> a, y -> b, z -> c). A model that ignores context
puts about a third of its top 10 in the right format; one that reads device x format puts all of it there.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.data.dataset import Dataset
from recsys.evaluation.split import LeaveOneOutSplit, encode, leave_one_out

FORMATS = ["a", "b", "c"]
DEVICES = ["x", "y", "z"]
RULE = dict(zip(DEVICES, FORMATS))


def context_rule_dataset(users: int = 300, items: int = 60, length: int = 12, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    fmt = np.array(FORMATS)[np.arange(items) % 3]
    popularity = 1.0 / (1.0 + rng.permutation(items))
    rows = []
    for u in range(users):
        seen: set[int] = set()
        t0 = 1_704_067_200 + int(rng.integers(0, 100_000))
        for k in range(length):
            device = DEVICES[int(rng.integers(0, 3))]
            ok = np.flatnonzero((fmt == RULE[device]) & ~np.isin(np.arange(items), list(seen)))
            p = popularity[ok] / popularity[ok].sum()
            i = int(rng.choice(ok, p=p))
            seen.add(i)
            rows.append((u + 1, i + 1, t0 + 3600 * k, float(rng.integers(1, 6)), device))
    inter = pl.DataFrame(rows, schema=["user_id", "item_id", "ts", "rating", "device"], orient="row").with_columns(
        timestamp=pl.from_epoch("ts", time_unit="s").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    ).select("user_id", "item_id", "timestamp", "rating", "device")
    catalogue = pl.DataFrame({"item_id": np.arange(1, items + 1), "title": [f"thing {i}" for i in range(1, items + 1)], "format": fmt.tolist()})
    return Dataset(inter, catalogue)


def context_rule_split(**kw) -> LeaveOneOutSplit:
    return leave_one_out(encode(context_rule_dataset(**kw)))


def rule_share(top: np.ndarray, split: LeaveOneOutSplit, cases) -> float:
    """Share of top-k items whose format is the one the case's device decides."""
    fmt = np.array(split.encoded.dataset.items["format"].to_list())
    want = np.array([RULE[d] for d in cases.context["device"].to_list()])
    return float((fmt[top] == want[:, None]).mean())
