"""Small demo data, a quickly trained retriever and a short reranker fine-tune shared by the reranker tests.

Sizes are chosen for 2 CPU cores: 300 users x 120 items, the retriever for a few epochs, the cross-encoder for
40 steps of 16 pairs of at most 80 tokens (user text = profile, context and the 4 newest titles; item text = title
and category).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.data.demo import generate_demo
from recsys.evaluation.split import encode, leave_one_out
from recsys.text import TextTemplates

TEST_TEMPLATES = TextTemplates(
    history_max_items=4, history_max_chars=200, profile_template="{age} year old {gender}, {occupation}, {country}, {bio}",
    item_fields=["title", "category"],
)
FAST = dict(
    max_length=80, batch_size=16, max_steps=40, lr=8e-5, positives_per_user=2, negatives_per_positive=3,
    hard_negative_fraction=0.67, candidates=20, progress_bar=False, threads=2, templates=TEST_TEMPLATES,
)
RETRIEVER_FAST = dict(d_model=32, layers=1, heads=2, max_len=20, batch_size=32, lr=5e-3, epochs=4, patience=10, threads=2, use_context=True)


@pytest.fixture(scope="session")
def demo_dataset():
    ds, _ = generate_demo(users=300, items=120, seed=0, interactions_per_user=20)
    return ds


@pytest.fixture(scope="session")
def demo_split(demo_dataset):
    return leave_one_out(encode(demo_dataset))


@pytest.fixture(scope="session")
def demo_retriever(demo_split):
    from recsys.retriever import TwoTowerRetriever

    torch.manual_seed(0)
    return TwoTowerRetriever(**RETRIEVER_FAST).fit(demo_split.train, demo_split.validation)


@pytest.fixture(scope="session")
def trained_reranker(demo_split, demo_retriever):
    from recsys.reranker import Reranker, RerankerTrainingArguments

    return Reranker(RerankerTrainingArguments(**FAST)).fit(demo_split.train, demo_retriever)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)
