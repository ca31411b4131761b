"""The context-aware cross-encoder reranker: a sentence-transformers ``CrossEncoder`` (one logit) reading
(user text with the request context, item text) pairs.

User text comes from ``recsys.text.render_users`` (profile, request context, recent history); item text from
``recsys.text.render_items``; with ``use_context=False`` the context part is left out (the ablation).

Scores are the cross-encoder's raw logits (higher = better; no sigmoid, so nothing saturates into ties).
An optional second ``CrossEncoder`` (``rating_model``) regresses rating / 5 on the same kind of pairs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.manifest import atomic_directory, read_manifest, write_manifest
from recsys.reranker.config import RerankerTrainingArguments
from recsys.text import history_item_texts, render_items, render_users

MANIFEST_KIND = "reranker"
RANKER_DIR = "cross_encoder"
RATING_DIR = "rating_model"
#: columns of an event/case frame that are never request context
NON_CONTEXT = ("u", "i", "pos", "len", S.RATING, S.WEIGHT, S.USER_ID, S.ITEM_ID)

_LOCK = threading.Lock()


def load_cross_encoder(name_or_path: str, *, max_length: int = 256, num_labels: int = 1, seed: int | None = 0):
    """A CPU ``CrossEncoder`` with one output. A SentenceTransformer checkpoint (the bundled MiniLM) gets a new
    classification head, initialised from ``seed`` (without touching the global torch RNG); a local path never
    touches the hub."""
    import os

    import torch
    from sentence_transformers import CrossEncoder

    local = os.path.isdir(name_or_path)
    with _LOCK, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return CrossEncoder(name_or_path, num_labels=num_labels, max_length=max_length, device="cpu", local_files_only=local)


def context_frame_of(frame: pl.DataFrame | None) -> pl.DataFrame | None:
    """The request-context columns (timestamp + context columns) of an event or case frame."""
    if frame is None:
        return None
    return frame.select([c for c in frame.columns if c not in NON_CONTEXT])


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
        ONNX files are exported once per weights into the shared cache (``recsys.onnx_inference``), or ``workdir``.
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
    def save(self, directory: Path | str, *, extra_manifest: dict[str, Any] | None = None) -> Path:
        """``cross_encoder/`` (+ ``rating_model/``), ``config.json`` and ``manifest.json``, written atomically."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
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




# ------------------------------------------------------------------------------------------------ runs


def run_fingerprint(run_dir: Path | str) -> str:
    """Fingerprint of what determines the run's scores: the settings and every weight/tokenizer file."""
    from recsys.manifest import fingerprint_bytes, fingerprint_file

    run_dir = Path(run_dir)
    files = [run_dir / "config.json", *sorted(p for d in (RANKER_DIR, RATING_DIR) for p in (run_dir / d).rglob("*") if p.is_file())]
    return fingerprint_bytes(*(f"{p.relative_to(run_dir)}:{fingerprint_file(p)}".encode() for p in files if p.exists()))


def load_run(run_dir: Path | str) -> tuple[Reranker, dict[str, Any]]:
    """(reranker, manifest) of a run written by ``recsys train reranker``; ``manifest["fingerprint"]`` is the run's."""
    from recsys.errors import RecsysError

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecsysError(f"reranker run {run_dir} does not exist (train one with `recsys train reranker`)")
    manifest = read_manifest(run_dir, MANIFEST_KIND)
    manifest["fingerprint"] = run_fingerprint(run_dir)
    return Reranker.load(run_dir), manifest


def _read_candidates(path: Path) -> pl.DataFrame:
    from recsys.errors import RecsysError

    if path.is_dir():
        parts = sorted(path.glob("part-*.parquet"))
        if not parts:
            raise RecsysError(f"{path} holds no part-*.parquet candidate files")
        frame = pl.read_parquet(parts)
    elif path.exists():
        frame = pl.read_parquet(path)
    else:
        raise RecsysError(f"candidates {path} do not exist")
    missing = [c for c in (S.USER_ID, S.ITEM_ID) if c not in frame.columns]
    if missing:
        raise RecsysError(f"candidates {path} lack column(s) {', '.join(missing)}")
    return frame


def rerank_candidates(
    run_dir: Path | str,
    candidates: Path | str,
    out: Path | str,
    *,
    dataset: Path | str | None = None,
    context: Mapping[str, Any] | None = None,
    top: int | None = None,
    inference: str = "fp32",
    explain: bool = False,
    batch_size: int = 64,
) -> dict[str, Any]:
    """``recsys rerank``: score every (user, candidate item) row, reorder per user by ``rerank_score`` and write
    parquet (``rank`` = new rank, ``retrieval_rank`` = the old one). The request context is ``context`` when given,
    else the candidates' own ``timestamp``/context columns when present, else now. With ``explain`` a JSON
    ``reasons`` column holds the supporting history items and context effects."""
    import time

    from recsys.context import context_frame
    from recsys.data.dataset import Dataset
    from recsys.errors import RecsysError
    from recsys.retrieval import UserHistories

    start = time.perf_counter()
    reranker, manifest = load_run(run_dir)
    if inference != "fp32":
        reranker.use(inference)
    data_dir = dataset or (manifest.get("dataset") or {}).get("path")
    if not data_dir:
        raise RecsysError(f"reranker run {run_dir} does not record its dataset; pass --dataset")
    ds = Dataset.load(data_dir)
    frame = _read_candidates(Path(candidates))
    items = ds.items
    catalogue_ids = items[S.ITEM_ID]
    item_texts = reranker.render_items(items)
    hist_texts = reranker.history_texts(items)
    lookup = pl.DataFrame({S.ITEM_ID: catalogue_ids, "__cat": np.arange(len(catalogue_ids), dtype=np.int64)})
    frame = frame.with_row_index("__row").join(
        lookup.with_columns(pl.col(S.ITEM_ID).cast(frame.schema[S.ITEM_ID], strict=False)), on=S.ITEM_ID, how="left", maintain_order="left"
    )
    if frame["__cat"].null_count():
        raise RecsysError(f"{frame['__cat'].null_count()} candidate item(s) are not in the dataset's catalogue")
    histories = UserHistories(ds, catalogue_ids)
    groups = frame.partition_by(S.USER_ID, maintain_order=True, as_dict=False)
    users = pl.Series(S.USER_ID, [g[S.USER_ID][0] for g in groups], dtype=frame.schema[S.USER_ID])
    rows = histories.rows(users)
    profiles_frame = ds.users
    prof_lookup: dict[Any, dict[str, Any]] = {}
    if profiles_frame is not None:
        prof_lookup = {r[S.USER_ID]: r for r in profiles_frame.to_dicts()}
    ctx_cols = list(ds.context_columns)
    own_ctx = [c for c in (S.TIMESTAMP, *ctx_cols) if c in frame.columns]
    fixed = None
    if context is not None or not own_ctx:
        fixed = context_frame(context, ctx_cols).to_dicts()[0]
    item_vectors = None
    if explain:
        from recsys.retriever.run import load_run as load_retriever

        rdir = manifest.get("retriever_run")
        if rdir and Path(rdir).is_dir():
            retriever, _, _ = load_retriever(rdir)
            item_vectors = retriever.encode_items()
    scores_all = np.zeros(frame.height, dtype=np.float32)
    reasons_all: list[str | None] = [None] * frame.height
    hist_list, cand_list, ctx_list, prof_list = [], [], [], []
    for user, row, g in zip(users.to_list(), rows, groups):
        h = histories.history(int(row))[0] if row >= 0 else np.zeros(0, dtype=np.int32)
        hist_list.append(h)
        cand_list.append(g["__cat"].to_numpy())
        ctx_list.append(fixed if fixed is not None else g.select(own_ctx).row(0, named=True))
        prof_list.append({k: v for k, v in prof_lookup.get(user, {}).items() if k != S.USER_ID} or None)
    # a retrieval_score column (batch-score output) is fused with the logits by the run's retrieval weight
    fused = [g["retrieval_score"].cast(pl.Float32).to_numpy() for g in groups] if "retrieval_score" in frame.columns else None
    scores = reranker.score_candidates(
        hist_list, cand_list, item_texts, hist_texts, context=ctx_list, profiles=prof_list, batch_size=batch_size, retrieval_scores=fused
    )
    for g, s in zip(groups, scores):
        scores_all[g["__row"].to_numpy()] = s
    if explain:
        import json as _json

        from recsys.reranker.explain import explain as explain_one

        titles = items["title"].cast(pl.String).to_list() if "title" in items.columns else None
        for g, h, c, p in zip(groups, hist_list, ctx_list, prof_list):
            for r, i in zip(g["__row"].to_list(), g["__cat"].to_list()):
                e = explain_one(reranker, int(i), h, item_vectors=item_vectors, item_texts=item_texts, history_texts=hist_texts, context=c, profile=p, item_ids=catalogue_ids.to_list(), titles=titles)
                reasons_all[r] = _json.dumps(e, default=str)
    result = frame.with_columns(rerank_score=pl.Series(scores_all, dtype=pl.Float32))
    if explain:
        result = result.with_columns(reasons=pl.Series(reasons_all, dtype=pl.String))
    if "rank" in result.columns:
        result = result.rename({"rank": "retrieval_rank"})
    result = result.sort([S.USER_ID, "rerank_score", "__row"], descending=[False, True, False], maintain_order=True)
    result = result.with_columns(rank=pl.int_range(1, pl.len() + 1).over(S.USER_ID).cast(pl.Int32))
    if top is not None:
        result = result.filter(pl.col("rank") <= top)
    # users keep their first-seen order
    order = pl.DataFrame({S.USER_ID: users, "__u": np.arange(len(users))})
    result = result.join(order, on=S.USER_ID, how="left").sort(["__u", "rank"]).drop(["__u", "__row", "__cat"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    result.write_parquet(tmp)
    tmp.replace(out)
    seconds = time.perf_counter() - start
    return {
        "out": str(out), "users": len(users), "rows": int(frame.height), "written": int(result.height), "inference": inference,
        "seconds": round(seconds, 1), "pairs_per_second": round(frame.height / seconds, 1) if seconds > 0 else None,
        "reranker_run": str(run_dir), "dataset": str(data_dir),
    }


__all__ = ["MANIFEST_KIND", "Reranker", "context_frame_of", "load_cross_encoder", "load_run", "rerank_candidates", "run_fingerprint"]
