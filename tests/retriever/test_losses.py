"""The logQ-corrected in-batch-negatives losses against a hand-computed cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss  # noqa: E402

from recsys.retriever import load_text_model  # noqa: E402
from recsys.retriever.losses import CachedLogQCorrectedMNRL, LogQCorrectedMNRL, candidate_log_q  # noqa: E402

SCALE = 20.0


@pytest.fixture(scope="module")
def model():
    return load_text_model()


def _batch(seed: int = 0, rows: int = 4, dim: int = 6, negatives: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, dim, generator=g, dtype=torch.float64).float() for _ in range(2 + negatives)]


def _hand_loss(emb: list[torch.Tensor], log_q: np.ndarray) -> float:
    """Mean over rows of -log softmax, logits = SCALE * cos(query_i, candidate_j) - log q_j, target j = i."""
    q = emb[0].double().numpy()
    cands = np.concatenate([e.double().numpy() for e in emb[1:]])  # positives, then negatives
    col_lq = log_q.T.reshape(-1)  # candidate j of block b = row (j mod B)'s column b
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cn = cands / np.linalg.norm(cands, axis=1, keepdims=True)
    logits = SCALE * qn @ cn.T - col_lq[None, :]
    out = []
    for i in range(len(q)):
        m = logits[i].max()
        out.append(m + np.log(np.exp(logits[i] - m).sum()) - logits[i, i])
    return float(np.mean(out))


def test_logq_loss_equals_hand_computed_cross_entropy(model):
    emb = _batch(negatives=1)
    log_q = np.log(np.array([[0.5, 0.01], [0.2, 0.05], [0.02, 0.1], [0.001, 0.3]]))  # (rows, positive + negative)
    got = LogQCorrectedMNRL(model, scale=SCALE).compute_loss_from_embeddings(emb, torch.tensor(log_q, dtype=torch.float32))
    assert float(got) == pytest.approx(_hand_loss(emb, log_q), rel=1e-4)
    plain = MultipleNegativesRankingLoss(model, scale=SCALE).compute_loss_from_embeddings(emb, None)
    assert float(plain) == pytest.approx(_hand_loss(emb, np.zeros_like(log_q)), rel=1e-4)
    assert abs(float(got) - float(plain)) > 1e-2  # a non-uniform q changes the loss


def test_uniform_q_is_plain_mnrl(model):
    """A constant log q shifts every logit equally: the softmax, hence the loss, is unchanged."""
    emb = _batch(seed=1, negatives=0)
    labels = torch.full((4,), float(np.log(1 / 50)))  # one column: a (B,) label works too
    got = LogQCorrectedMNRL(model, scale=SCALE).compute_loss_from_embeddings(emb, labels)
    plain = MultipleNegativesRankingLoss(model, scale=SCALE).compute_loss_from_embeddings(emb, None)
    assert float(got) == pytest.approx(float(plain), rel=1e-5)


def test_cached_variant_same_loss_and_gradients(model):
    emb = _batch(seed=2, rows=5, negatives=1)
    log_q = torch.log(torch.tensor([[0.5, 0.01], [0.2, 0.05], [0.02, 0.1], [0.001, 0.3], [0.1, 0.1]]))
    leaves = [e.clone().requires_grad_() for e in emb]
    ref = LogQCorrectedMNRL(model, scale=SCALE).compute_loss_from_embeddings(leaves, log_q)
    ref.backward()
    cached = CachedLogQCorrectedMNRL(model, scale=SCALE, mini_batch_size=2)
    # GradCache hands the loss each column as a list of mini-batch embeddings (here 2 + 2 + 1 rows)
    reps = [[c.detach().clone().requires_grad_() for c in e.split(2)] for e in emb]
    got = cached.calculate_loss(reps, log_q, with_backward=True)
    assert float(got) == pytest.approx(float(ref.detach()), rel=1e-5)
    for leaf, parts in zip(leaves, reps):
        np.testing.assert_allclose(torch.cat([p.grad for p in parts]).numpy(), leaf.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_labels_must_hold_one_log_q_per_candidate_column(model):
    emb = _batch(negatives=1)
    loss = LogQCorrectedMNRL(model)
    with pytest.raises(ValueError, match="one log q per candidate column"):
        loss.compute_loss_from_embeddings(emb, torch.zeros(4))  # the negative's log q is missing
    with pytest.raises(ValueError, match="'label' column"):
        loss.compute_loss_from_embeddings(emb, None)
    assert candidate_log_q(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), 2, 2).tolist() == [1.0, 3.0, 2.0, 4.0]
