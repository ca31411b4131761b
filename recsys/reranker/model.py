"""The context-aware cross-encoder reranker: a sentence-transformers ``CrossEncoder`` (one logit) reading
(user text with the request context, item text) pairs.

User text comes from ``recsys.text.render_users`` (profile, request context, recent history); item text from
``recsys.text.render_items``; with ``use_context=False`` the context part is left out (the ablation).

Scores are the cross-encoder's raw logits (higher = better; no sigmoid, so nothing saturates into ties).
An optional second ``CrossEncoder`` (``rating_model``) regresses rating / 5 on the same kind of pairs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.manifest import atomic_directory, read_manifest, write_manifest
from recsys.reranker.backbone import load_cross_encoder
from recsys.reranker.config import RerankerTrainingArguments
from recsys.reranker.features import context_frame_of
from recsys.data import schema as S
from recsys.text import history_item_texts, render_items, render_users

MANIFEST_KIND = "reranker"
RANKER_DIR = "cross_encoder"
RATING_DIR = "rating_model"


def without_time(context: pl.DataFrame | Sequence[Mapping[str, Any] | None]) -> pl.DataFrame | list[Mapping[str, Any] | None]:
    """The request contexts without their timestamp (so no time of day or weekday is rendered from it)."""
    if isinstance(context, pl.DataFrame):
        return context.drop(S.TIMESTAMP, strict=False)
    return [None if c is None else {k: v for k, v in c.items() if k != S.TIMESTAMP} for c in context]


def _identity():
    import torch

    return torch.nn.Identity()


class Reranker:
    """Cross-encoder reranker. Verbs: ``predict(pairs)``, ``rank(query, documents)``, ``rerank(user_text, item_texts)``;
    ``user_texts``/``score_candidates`` build the texts from histories, contexts and profiles the way training did."""

    def __init__(self, args: RerankerTrainingArguments | None = None, **overrides: Any) -> None:
        base = args.to_dict() if args is not None else {}
        self.args = RerankerTrainingArguments.from_dict({**base, **overrides})
        self._model: Any = None
        self.rating_model: Any = None
        self.metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.data_fingerprint: str | None = None
        self.retriever_fingerprint: str | None = None
        #: False when trained on synthesised timestamps: the context text then never names a time of day or weekday
        self.time_context = True
        self._model_dir: str | None = None
        self._scorer: Any = None  # fast.Scorer when an inference option other than fp32 is active
        self.inference: str = "fp32"

    # model -----------------------------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The ranking ``CrossEncoder`` (loaded lazily: the base model until fitted or loaded)."""
        if self._model is None:
            self._model = load_cross_encoder(self._model_dir or self.args.resolved_base_model, max_length=self.args.max_length, seed=self.args.seed)
        return self._model

    @model.setter
    def model(self, value: Any) -> None:
        self._model = value
        self._scorer = None
        self.inference = "fp32"

    def use(self, option: str = "fp32", *, workdir: Path | str | None = None, threads: int | None = None) -> "Reranker":
        """Switch inference to ``fp32`` (default), ``bf16``, ``onnx`` or ``onnx-int8`` (see ``recsys.reranker.fast``);
        ONNX files are exported once per weights into the shared cache (``recsys.onnx``), or ``workdir``.
        ``threads``: onnxruntime intra-op threads (None = its default, every core), so side-by-side runs can share a CPU."""
        from recsys.reranker.fast import make_scorer

        self._scorer = None if option == "fp32" else make_scorer(self.model, option, max_length=self.args.max_length, workdir=workdir, threads=threads)
        self.inference = option
        return self

    # text ------------------------------------------------------------------------------------------------------
    def render_items(self, items: pl.DataFrame) -> list[str]:
        return render_items(items, self.args.templates)

    def history_texts(self, items: pl.DataFrame) -> list[str]:
        return history_item_texts(items, self.args.templates)

    def user_texts(
        self,
        histories: Sequence[Sequence[int] | np.ndarray],
        history_texts: Sequence[str] | pl.DataFrame,
        *,
        context: pl.DataFrame | Sequence[Mapping[str, Any] | None] | None = None,
        profiles: pl.DataFrame | Sequence[Mapping[str, Any] | None] | None = None,
        use_context: bool | None = None,
    ) -> list[str]:
        """User texts (profile, request context, recent history); the context is dropped when the model was
        trained without it (or ``use_context=False``)."""
        if use_context is None:
            use_context = self.args.use_context
        if isinstance(context, pl.DataFrame):
            context = context_frame_of(context)
        if context is not None and not self.time_context:
            context = without_time(context)
        texts = history_texts if isinstance(history_texts, pl.DataFrame) else list(history_texts)
        return render_users(
            histories, texts, profiles=profiles, context=context if use_context else None, templates=self.args.templates
        )

    # verbs -----------------------------------------------------------------------------------------------------
    def predict(self, pairs: Sequence[tuple[str, str]] | Sequence[Sequence[str]], *, batch_size: int = 64) -> np.ndarray:
        """float32 logits of (user text, item text) pairs, higher = more likely the user's next item."""
        pairs = [(str(a), str(b)) for a, b in pairs]
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        if self._scorer is not None:
            return self._scorer(pairs, batch_size=batch_size)
        scores = self.model.predict(pairs, batch_size=batch_size, activation_fn=_identity(), show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    def rerank(self, user_text: str, item_texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Scores of ``item_texts`` for one user text (the candidates' order is kept: sort them yourself or use rank)."""
        return self.predict([(user_text, t) for t in item_texts], batch_size=batch_size)

    def rank(self, query: str, documents: Sequence[str], *, top_k: int | None = None, batch_size: int = 64) -> list[dict[str, Any]]:
        """``[{"corpus_id": i, "score": s}, ...]`` best first (the CrossEncoder.rank shape)."""
        scores = self.rerank(query, documents, batch_size=batch_size)
        order = np.argsort(-scores, kind="stable")[: top_k if top_k is not None else len(scores)]
        return [{"corpus_id": int(i), "score": float(scores[i])} for i in order]

    def score_candidates(
        self,
        histories: Sequence[Sequence[int] | np.ndarray],
        candidates: Sequence[Sequence[int] | np.ndarray],
        item_texts: Sequence[str],
        history_texts: Sequence[str],
        *,
        context: pl.DataFrame | Sequence[Mapping[str, Any] | None] | None = None,
        profiles: pl.DataFrame | Sequence[Mapping[str, Any] | None] | None = None,
        batch_size: int = 64,
        retrieval_scores: Sequence[Sequence[float] | np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """One score array per request, aligned with its candidate list (catalogue indices into ``item_texts``).

        With ``retrieval_scores`` (the retriever's cosine of each candidate) the scores are fused (``fuse``)."""
        users = self.user_texts(histories, history_texts, context=context, profiles=profiles)
        pairs = [(u, item_texts[int(i)]) for u, cand in zip(users, candidates) for i in cand]
        flat = self.predict(pairs, batch_size=batch_size)
        out, lo = [], 0
        for cand in candidates:
            out.append(flat[lo : lo + len(cand)])
            lo += len(cand)
        if retrieval_scores is not None:
            out = [self.fuse(z, r) for z, r in zip(out, retrieval_scores)]
        return out

    @property
    def retrieval_weight(self) -> float:
        """The fusion weight in use (0 when the run predates fusion or none was chosen)."""
        return float(self.args.retrieval_weight or 0.0)

    def fuse(self, logits: np.ndarray, retrieval_scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Served score: cross-encoder logit + ``retrieval_weight`` x retriever cosine (missing cosines count 0)."""
        logits = np.asarray(logits, dtype=np.float32)
        w = self.retrieval_weight
        if w == 0.0:
            return logits
        r = np.nan_to_num(np.asarray(retrieval_scores, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if r.shape != logits.shape:
            raise ValueError(f"{len(r)} retrieval scores for {len(logits)} candidates")
        return (logits + np.float32(w) * r).astype(np.float32)

    def predict_rating(self, pairs: Sequence[tuple[str, str]], *, batch_size: int = 64) -> np.ndarray:
        """Predicted ratings on the 0-5 scale (the rating head's sigmoid output x 5)."""
        if self.rating_model is None:
            raise RuntimeError("this reranker has no rating head (train with rating_head=True)")
        pairs = [(str(a), str(b)) for a, b in pairs]
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        import torch

        p = self.rating_model.predict(pairs, batch_size=batch_size, activation_fn=torch.nn.Sigmoid(), show_progress_bar=False, convert_to_numpy=True)
        return 5.0 * np.asarray(p, dtype=np.float32).reshape(-1)

    # fitting ---------------------------------------------------------------------------------------------------
    def fit(self, data: Any, retriever: Any = None, validation: Any = None, *, progress: Any = None) -> "Reranker":
        """Fine-tune on ``data`` (TrainData); hard negatives from ``retriever`` (a TwoTowerRetriever, optional);
        ``validation`` cases (optional) are only reported on, never trained on."""
        from recsys.reranker.training import fit_reranker

        fit_reranker(self, data, retriever, validation, progress=progress)
        return self

    # persistence -----------------------------------------------------------------------------------------------
    def save(self, directory: Path | str, *, extra_manifest: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
        """``cross_encoder/`` (+ ``rating_model/``), ``config.json`` and ``manifest.json``, written atomically."""
        directory = Path(directory)
        with atomic_directory(directory, MANIFEST_KIND, overwrite=overwrite) as tmp:
            self.model.save(str(tmp / RANKER_DIR))
            if self.rating_model is not None:
                self.rating_model.save(str(tmp / RATING_DIR))
            (tmp / "config.json").write_text(json.dumps(self.args.to_dict(), indent=2, sort_keys=True))
            write_manifest(
                tmp,
                {
                    "kind": MANIFEST_KIND,
                    "base_model": self.args.base_model or "bundled:sentence-transformers/all-MiniLM-L6-v2",
                    "retriever_fingerprint": self.retriever_fingerprint,
                    "data_fingerprint": self.data_fingerprint,
                    "time_context": self.time_context,
                    "rating_head": self.rating_model is not None,
                    "settings": self.args.to_dict(),
                    "metrics": self.metrics,
                    "training": self.history,
                    **(extra_manifest or {}),
                },
            )
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> "Reranker":
        directory = Path(directory)
        manifest = read_manifest(directory, MANIFEST_KIND)
        args = RerankerTrainingArguments.from_dict(json.loads((directory / "config.json").read_text()))
        self = cls(args)
        self._model_dir = str(directory / RANKER_DIR)
        self._model = load_cross_encoder(self._model_dir, max_length=args.max_length)
        if (directory / RATING_DIR).is_dir():
            self.rating_model = load_cross_encoder(str(directory / RATING_DIR), max_length=args.max_length)
        self.metrics = manifest.get("metrics", {})
        self.history = manifest.get("training", [])
        self.data_fingerprint = manifest.get("data_fingerprint")
        self.retriever_fingerprint = manifest.get("retriever_fingerprint")
        self.time_context = bool(manifest.get("time_context", True))
        return self


__all__ = ["MANIFEST_KIND", "RANKER_DIR", "RATING_DIR", "Reranker"]
