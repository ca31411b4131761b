"""Small demo data and a short cross-encoder fine-tune shared by the cross-encoder tests (real MiniLM, 2 CPU cores:
200 users x 80 items, 1 case a user, 20 steps of 16 cases x 8 items, 48 tokens)."""

from __future__ import annotations

import pytest

from recsys.data.demo import generate_demo
from recsys.evaluation.split import encode, leave_one_out
from recsys.models.ease import EASE

FAST = dict(max_length=48, history_items=4, positives_per_user=1, negatives=7, hard_pool=20, batch_size=16, max_steps=20,
            lr=1e-4, head_lr=1e-3, warmup_steps=2, cpu_budget_s=None, threads=2)  # fmt: skip


@pytest.fixture(scope="session")
def demo_split():
    ds, _ = generate_demo(users=200, items=80, seed=0, interactions_per_user=12)
    return leave_one_out(encode(ds))


@pytest.fixture(scope="session")
def demo_ease(demo_split):
    return EASE(l2=10.0).fit(demo_split.train)


@pytest.fixture(scope="session")
def trained(demo_split, demo_ease):
    from recsys.reranker.config import CrossEncoderArguments
    from recsys.reranker.model import CrossEncoder
    from recsys.reranker.training import fit_cross_encoder

    return fit_cross_encoder(CrossEncoder(CrossEncoderArguments(**FAST)), demo_split.train, demo_ease.score)
