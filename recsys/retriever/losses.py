"""In-batch-negatives losses with the logQ popularity correction, for the retriever's text fine-tune.

Why: with in-batch negatives every other row's positive is a negative, so an item appears as a negative about as
often as it appears as a positive: popular items are punished in proportion to their popularity and the model
learns "unpopular = relevant". The sampled-softmax correction (Yi et al. 2019, "Sampling-bias-corrected neural
modeling for large corpus item recommendations") subtracts ``log q(candidate)`` from each candidate's logit,
``q`` being the probability that the candidate is drawn into a batch (here: its share of training positives), which
makes the in-batch softmax an unbiased estimate of the full softmax.

How the correction reaches the loss: the sentence-transformers trainer passes a dataset column named ``label`` to
the loss as ``labels``; we store, per row, ``[log q(positive), log q(negative_1), ...]``. Candidate column ``j``
of the (rows x candidates) score matrix is row ``j``'s positive (or, past the first block, row ``j``'s negative), so
its correction is that row's stored log q. Hard negatives are corrected with their own log q, like every other
candidate: one rule for every logit, q being what the caller says is the item's probability of being a candidate
(``recsys.retriever.training.item_log_q`` counts both how often it is a positive and how often it is mined).

Both losses support only the standard query -> candidates direction (MNRL's default), which is what the retriever
trains; anything else is refused rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss
from sentence_transformers.util import cos_sim


def candidate_log_q(labels: Tensor | None, batch_size: int, n_candidate_columns: int) -> Tensor:
    """(batch_size * n_candidate_columns,) log q per candidate column, in the order MNRL concatenates candidates
    (all positives, then every row's first negative, ...), from the per-row ``labels`` (B,) or (B, n_columns)."""
    if labels is None:
        raise ValueError("the logQ-corrected loss needs a 'label' column holding each row's log q values")
    lq = labels.to(torch.float32)
    if lq.dim() == 1:
        lq = lq.unsqueeze(1)
    if lq.shape != (batch_size, n_candidate_columns):
        raise ValueError(
            f"the logQ-corrected loss needs one log q per candidate column: labels of shape ({batch_size}, {n_candidate_columns}) "
            f"for {batch_size} rows with {n_candidate_columns} candidate column(s) (positive + negatives), got {tuple(labels.shape)}"
        )
    return lq.T.reshape(-1)


def logq_row_losses(
    queries: Tensor,
    candidates: Tensor,
    log_q: Tensor,
    targets: Tensor,
    scale: float,
    similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
) -> Tensor:
    """Per-row cross-entropy of ``scale * sim(query, candidate) - log q(candidate)`` against the target column."""
    logits = similarity_fct(queries, candidates) * scale - log_q.to(queries.device, queries.dtype).unsqueeze(0)
    return F.cross_entropy(logits, targets, reduction="none")


class LogQCorrectedMNRL(MultipleNegativesRankingLoss):
    """``MultipleNegativesRankingLoss`` whose in-batch softmax subtracts log q(candidate) from every logit.

    Inputs: (anchor, positive[, negative...]) text columns plus ``label`` = per-row log q of the positive (and of
    each negative, in column order).
    """

    def __init__(self, model: Any, scale: float = 20.0, similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim) -> None:
        super().__init__(model, scale=scale, similarity_fct=similarity_fct)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        if len(embeddings) < 2:
            raise ValueError(f"Expected at least 2 embeddings, got {len(embeddings)}")
        queries, docs = embeddings[0], embeddings[1:]
        b = queries.size(0)
        log_q = candidate_log_q(labels, b, len(docs))
        targets = torch.arange(b, device=queries.device)
        return logq_row_losses(queries, torch.cat(docs), log_q, targets, self.scale, self.similarity_fct).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "logq_correction": True}


class CachedLogQCorrectedMNRL(CachedMultipleNegativesRankingLoss):
    """GradCache variant of :class:`LogQCorrectedMNRL`: embeds in ``mini_batch_size`` chunks, so the effective
    batch (the number of in-batch negatives) is bounded by time, not memory; the loss is the same number."""

    def __init__(
        self, model: Any, scale: float = 20.0, similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim, mini_batch_size: int = 32
    ) -> None:
        super().__init__(model, scale=scale, similarity_fct=similarity_fct, mini_batch_size=mini_batch_size)

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False) -> Tensor:
        queries = torch.cat(reps[0])
        docs = [torch.cat(r) for r in reps[1:]]
        b = queries.size(0)
        log_q = candidate_log_q(labels, b, len(docs))
        candidates = torch.cat(docs)
        losses: list[Tensor] = []
        for begin in range(0, b, self.mini_batch_size):
            end = min(begin + self.mini_batch_size, b)
            targets = torch.arange(begin, end, device=queries.device)
            chunk = logq_row_losses(queries[begin:end], candidates, log_q, targets, self.scale, self.similarity_fct).sum() / b
            if with_backward:
                chunk.backward()
                chunk = chunk.detach()
            losses.append(chunk)
        return sum(losses)  # type: ignore[return-value]

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "logq_correction": True}


__all__ = ["CachedLogQCorrectedMNRL", "LogQCorrectedMNRL", "candidate_log_q", "logq_row_losses"]
