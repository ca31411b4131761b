"""Training examples of the reranker: context-swapped negatives (no model is trained here)."""

from __future__ import annotations

import numpy as np

from recsys.reranker import Reranker, RerankerTrainingArguments
from recsys.reranker.examples import Requests, context_swapped_users
from recsys.text import render_context

from .conftest import FAST


def _setup(demo_split, **overrides):
    reranker = Reranker(RerankerTrainingArguments(**{**FAST, **overrides}))
    data = demo_split.train
    req = Requests(data, 2)
    hist = reranker.history_texts(data.items)
    profiles = data.users[req.users]
    users = reranker.user_texts(req.histories, hist, context=req.context, profiles=profiles)
    return reranker, req, hist, profiles, users


def test_context_swapped_users_change_only_the_context(demo_split):
    reranker, req, hist, profiles, users = _setup(demo_split)
    swapped = context_swapped_users(reranker, req, hist, profiles, users, 2, np.random.default_rng(0))
    assert len(swapped) == len(req)
    assert sum(len(s) for s in swapped) >= 0.99 * 2 * len(req)  # re-drawn until the context renders differently
    t = reranker.args.templates
    contexts = {render_context(c, t) for c in req.context.to_dicts()}
    for r in range(0, len(req), 17):
        own = render_context(req.context.row(r, named=True), t)
        assert own in users[r]
        for other in swapped[r]:
            assert other != users[r]
            # the same text with another training request's context in place of this one's
            donor = [c for c in contexts if c != own and users[r].replace(own, c) == other]
            assert donor, (users[r], other)


def test_no_context_means_no_context_negatives(demo_split):
    reranker, req, hist, profiles, users = _setup(demo_split, use_context=False)
    swapped = context_swapped_users(reranker, req, hist, profiles, users, 2, np.random.default_rng(0))
    # without context every swap renders the same text: nothing is produced, nothing contradicts a positive
    assert all(s == [] for s in swapped)
