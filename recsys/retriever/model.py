"""The two-tower retriever (UniSRec-style): frozen-PLM item text embeddings -> learned adaptor (+ ID embeddings)
for the item tower; a small causal transformer over the history's item-tower vectors for the user tower.

Why this shape: embedding a user's *rendered text* with MiniLM and matching it to the next item's text loses the
order and the collaborative signal (NDCG@10 ~0.01-0.03 on MovieLens 100K), while a sequence model over item
vectors that start from text keeps both and still scores items it never saw (their text alone gives a vector).

Vectors: item vectors are L2-normalised, user vectors too; score = user . item (cosine), so a FAISS inner-product
index over ``encode_items()`` retrieves exactly what ``score`` ranks. Items without training interactions are scored
through the vectors' text channel (docs/cold-start.md).

Over 450 lines because the network and the retriever that owns it (encoding, caching, persistence) change together;
their inputs live in ``features`` and their training in ``training``.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from recsys import distributed as D
from recsys.data.types import Cases, Sequences, TrainData
from recsys.manifest import atomic_directory, read_manifest, write_manifest
from recsys.retriever.cold_probe import choose_cold_channel
from recsys.retriever.config import RetrieverTrainingArguments
from recsys.retriever.features import (
    CONTEXT_HASH_BUCKETS,
    N_HOURS,
    N_WEEKDAYS,
    as_histories,
    context_columns_of,
    context_features,
    embed_texts,
    load_text_model,
    pad_left,
    recency_weighted_mean,
)
from recsys.retriever.training import data_fingerprint, finetune_text_model, train_towers
from recsys.text import render_items, render_profile, require_item_text

MANIFEST_KIND = "retriever"
#: warm items the text channel is calibrated on, at most
REFERENCE_ITEMS = 4096
SQRT_HALF = float(np.sqrt(0.5))
#: the text channel maps the user's best and ANCHOR_RANK-th best text cosine onto the trained scores of those ranks
ANCHOR_RANK = 10
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- the network


class TwoTowerNet(nn.Module):
    """Item tower: adaptor(text) (+ ID embedding of known items). User tower: causal transformer over item vectors."""

    def __init__(self, text_dim: int, n_items: int, args: RetrieverTrainingArguments, n_context_cols: int = 0) -> None:
        super().__init__()
        d = args.d_model
        self.n_items, self.max_len, self.heads = n_items, args.max_len, args.heads
        self.temperature = args.temperature
        self.cold_neighbours, self.cold_temperature = args.cold_neighbours, args.cold_temperature
        if args.adaptor == "linear":
            self.adaptor: nn.Module = nn.Linear(text_dim, d)
        else:
            self.adaptor = nn.Sequential(nn.Linear(text_dim, 2 * d), nn.GELU(), nn.Dropout(args.dropout), nn.Linear(2 * d, d))
        self.id_emb = nn.Embedding(n_items, d) if args.use_id_embeddings else None
        if self.id_emb is not None:
            nn.init.normal_(self.id_emb.weight, std=0.02)
        self.pos_emb = nn.Embedding(args.max_len, d)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        n_ctx = N_HOURS + N_WEEKDAYS + n_context_cols * CONTEXT_HASH_BUCKETS
        self.ctx_emb = nn.Embedding(n_ctx + 1, d, padding_idx=n_ctx) if args.use_context else None
        if self.ctx_emb is not None:
            nn.init.normal_(self.ctx_emb.weight, std=0.02)
            with torch.no_grad():
                self.ctx_emb.weight[n_ctx].zero_()
        self.profile_proj = nn.Linear(text_dim, d) if args.use_profiles else None
        self.in_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(args.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d, args.heads, 2 * d, args.dropout, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(args.layers)
        )
        self.out_norm = nn.LayerNorm(d)
        # frozen inputs: the catalogue's text embeddings and which items have an ID embedding
        self.register_buffer("text", torch.zeros(n_items, text_dim))
        self.register_buffer("known", torch.zeros(n_items, dtype=torch.bool))

    # item tower ------------------------------------------------------------------------------------------
    def item_raw(self, text: torch.Tensor | None = None, ids: torch.Tensor | None = None, id_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised item vectors: catalogue by default; ``text`` rows with ``ids`` (-1 = no ID embedding).

        Outside training, a row without an ID embedding (an item with no training interactions, or text without a
        catalogue id) borrows one from its text neighbours (``borrowed_ids``); during training ID dropout leaves
        the dropped rows at the text path alone (DropoutNet), and items without interactions are never scored.
        """
        if text is None:
            text = self.text
            ids = torch.arange(self.n_items, device=text.device)
        z = self.adaptor(text)
        if self.id_emb is None:
            return z
        if ids is None:
            ids = torch.full((len(text),), -1, dtype=torch.long, device=text.device)
        safe = ids.clamp(min=0)
        has_id = (ids >= 0) & self.known[safe]
        keep = has_id & id_keep if id_keep is not None else has_id
        z = z + self.id_emb(safe) * keep.unsqueeze(-1).to(z.dtype)
        if not self.training and self.cold_neighbours > 0 and not bool(has_id.all()):
            rows = (~has_id).nonzero().flatten()
            z = z.index_add(0, rows, self.borrowed_ids(text[rows]))
        return z

    def borrowed_ids(self, text: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """(n, d) ID embeddings for text rows without one: softmax(cos / cold_temperature)-weighted mean over the
        ``cold_neighbours`` known items nearest by text. The pretrained text geometry decides which learned items a
        new item resembles, and the borrowed embedding puts it in the same region of the score scale as they are."""
        assert self.id_emb is not None
        known = self.known.nonzero().flatten()
        out = torch.zeros(len(text), self.id_emb.embedding_dim, dtype=self.id_emb.weight.dtype, device=text.device)
        if len(known) == 0:
            return out
        k = min(self.cold_neighbours, len(known))
        known_text = self.text[known]
        for lo in range(0, len(text), chunk):
            sims, nearest = (text[lo : lo + chunk] @ known_text.T).topk(k, dim=1)
            weights = torch.softmax(sims / self.cold_temperature, dim=1)
            out[lo : lo + chunk] = torch.einsum("nk,nkd->nd", weights, self.id_emb(known[nearest]))
        return out

    @staticmethod
    def normalise(z: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(z, dim=-1)

    # user tower ------------------------------------------------------------------------------------------
    def user_states(
        self,
        seq: torch.Tensor,
        table: torch.Tensor,
        ctx: torch.Tensor | None = None,
        profile: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, L) item indices (pad = n_items, left-padded) -> (B, L, d) normalised states; position t predicts t+1.

        ``ctx`` (B, L, C): the context of the interaction each position predicts (added after the transformer, so
        scoring needs only the request's context, not the history's timestamps). ``profile`` (B, text_dim).
        """
        b, length = seq.shape
        pad = seq == self.n_items
        x = table[seq]  # table has a zero row for the pad index
        x = x + self.pos_emb.weight[self.max_len - length :].unsqueeze(0)
        if self.profile_proj is not None and profile is not None:
            x = x + self.profile_proj(profile).unsqueeze(1)
        x = self.drop(self.in_norm(x))
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=seq.device), 1)
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)
        mask = causal.unsqueeze(0) | (pad.unsqueeze(1) & ~eye.unsqueeze(0))  # pad rows still see themselves
        mask = mask.repeat_interleave(self.heads, dim=0)
        for blk in self.blocks:
            x = blk(x, src_mask=mask)
        if self.ctx_emb is not None and ctx is not None:
            pad_idx = self.ctx_emb.padding_idx
            x = x + self.ctx_emb(torch.where(ctx < 0, torch.full_like(ctx, pad_idx), ctx)).sum(dim=2)
        return self.normalise(self.out_norm(x))

    def logits(self, states: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        return states @ item_vectors.T / self.temperature


# ------------------------------------------------------------------------------------- the retriever


class TwoTowerRetriever:
    """Text-initialised two-tower retriever: ``fit`` on ``TrainData``, then ``encode_items`` / ``encode_users``.

    ``encode_items`` works for any text (cold items, items added after training); ``save``/``load`` round-trip
    exactly (the catalogue's text embeddings are stored, so loading does not re-embed).
    """

    def __init__(self, args: RetrieverTrainingArguments | None = None, **overrides: Any) -> None:
        base = args.to_dict() if args is not None else {}
        self.args = RetrieverTrainingArguments.from_dict({**base, **overrides})
        self.net: TwoTowerNet | None = None
        self.item_texts: list[str] = []
        self.context_columns: list[str] = []
        #: False when trained on synthesised timestamps: hour and weekday are then never read
        self.time_context = True
        self.metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.data_fingerprint: str | None = None
        self._text_model: Any = None  # fine-tuned in memory, or loaded lazily
        self._text_model_dir: str | None = None  # where a fine-tuned text model lives after save/load
        self._finetuned = False  # True while the text model is an in-memory fine-tuned copy
        self.inference = "fp32"  # how text is embedded: fp32 (torch), onnx or onnx-int8 (see use())

    # text ----------------------------------------------------------------------------------------------------
    @property
    def text_model(self) -> Any:
        if self._text_model is None:
            self._text_model = load_text_model(self._text_model_dir or self.args.resolved_base_model)
        return self._text_model

    @property
    def text_model_key(self) -> str:
        return self._text_model_dir or self.args.resolved_base_model

    def use(self, inference: str = "fp32") -> "TwoTowerRetriever":
        """Embed text with ``fp32`` (torch, the default), ``onnx`` or ``onnx-int8`` (``recsys.onnx``);
        the export happens here (once per weights, cached on disk) so a bad option or a missing onnxruntime fails
        early. Training always embeds in fp32 torch."""
        from recsys.onnx import parse_option, sentence_encoder

        base, _ = parse_option(inference, "embedder")
        if base != "fp32":
            sentence_encoder(self.text_model, inference, threads=self.args.threads, refresh=True)
        self.inference = inference
        return self

    def embed(self, texts: Sequence[str], *, cache: bool = True) -> np.ndarray:
        """Text embeddings from the (possibly fine-tuned) text model, normalised; an in-memory fine-tuned copy is
        never cached (it is unique to this retriever)."""
        key = self.text_model_key if (cache and not self._finetuned) else None
        return embed_texts(
            texts, self.text_model, batch_size=self.args.encode_batch_size, cache_key=key, inference=self.inference, threads=self.args.threads
        )

    def render_items(self, items: pl.DataFrame) -> list[str]:
        return render_items(items, self.args.templates)

    # fitting ---------------------------------------------------------------------------------------------------
    def fit(self, data: TrainData, validation: Cases | None = None, *, progress: Callable[[str], None] | None = None) -> "TwoTowerRetriever":
        """Optional MNRL text fine-tune, then the adaptor + sequence tower (early-stopped on ``validation``).

        Under ``torchrun``/``accelerate launch`` every rank trains (``recsys.retriever.training.train_towers``).
        """
        inference, self.inference = self.inference, "fp32"
        try:
            self._fit(data, validation, progress)
        finally:
            if inference != "fp32":
                self.use(inference)  # re-exports when the text fine-tune changed the weights
            else:
                self.inference = inference
        return self

    def _fit(self, data: TrainData, validation: Cases | None, progress: Callable[[str], None] | None) -> None:
        a = self.args
        started = time.perf_counter()
        D.init_if_launched()
        if a.threads:
            torch.set_num_threads(a.threads)
        torch.manual_seed(a.seed)  # the network's initial weights and every dropout draw after it
        say = (progress or log.info) if D.is_main() else None
        item_texts = self.render_items(data.items)
        require_item_text(item_texts, data.items, a.templates, model="the two-tower retriever")
        if len(item_texts) != data.n_items:
            raise ValueError(f"the catalogue has {len(item_texts)} rows but the data has {data.n_items} items")
        self.item_texts = item_texts
        self._text_model, self._finetuned, self._text_model_dir = None, False, None
        history: list[dict[str, Any]] = []
        if a.text_finetune_steps > 0:
            self._text_model, info = finetune_text_model(self, data, item_texts, say)
            self._finetuned = True
            history.append(info)
            if D.is_distributed():  # the HF trainer kept the replicas in step; prove it before every rank embeds with them
                D.check_replicas(self._text_model.state_dict(), "text model")
        text_emb = self.embed(item_texts)
        self._build(text_emb, data.item_counts > 0, context_columns_of(data.events) if a.use_context else [])
        self.time_context = not data.synthetic_timestamps
        self.data_fingerprint = data_fingerprint(data, item_texts)
        train_towers(self, data, validation, history=history, started=started, progress=progress)
        if a.cold_start == "auto":  # resolved once, from the training data alone; saved as the chosen channel
            choice = choose_cold_channel(type(self), a, data, say)
            a.cold_start = choice["cold_start"]
            self.history.append({"stage": "cold_probe", **choice})
            self.metrics["cold_start"] = a.cold_start

    def _build(self, text_emb: np.ndarray, known: np.ndarray, context_columns: list[str]) -> None:
        self.context_columns = list(context_columns)
        net = TwoTowerNet(text_emb.shape[1], text_emb.shape[0], self.args, len(self.context_columns))
        with torch.no_grad():
            net.text.copy_(torch.from_numpy(text_emb))
            net.known.copy_(torch.from_numpy(known.astype(bool)))
        self.net = net
        self._table_cache = None

    def _require(self) -> TwoTowerNet:
        if self.net is None:
            raise RuntimeError("the retriever is not fitted: call fit() or load() first")
        return self.net

    @property
    def n_items(self) -> int:
        return self._require().n_items

    # encoding --------------------------------------------------------------------------------------------------
    @property
    def text_channel(self) -> bool:
        """Whether vectors carry the cold-item channel (``cold_start`` "text" or "adaptor"): [tower ; channel ; offset]."""
        return self.args.cold_start != "off"

    @property
    def channel(self) -> str:
        """The cold-item channel in use: "text", "adaptor" or "off"; an unresolved "auto" (during ``fit``, before the
        probe chose) scores as "text"."""
        return "text" if self.args.cold_start == "auto" else self.args.cold_start

    def _channel_vectors(self, text: torch.Tensor) -> torch.Tensor:
        """Normalised cold-item channel vectors of text embeddings: the text itself ("text", the pretrained model's
        geometry) or its item-tower text path without ID embedding ("adaptor", what training made of the text)."""
        net = self._require()
        return net.normalise(text if self.channel == "text" else net.adaptor(text))

    @property
    def dim(self) -> int:
        """Dimension of ``encode_items``/``encode_users`` vectors."""
        net = self._require()
        d = int(net.pos_emb.weight.shape[1])
        return d + ((int(net.text.shape[1]) if self.channel == "text" else d) + 1 if self.text_channel else 0)

    def encode_items(
        self,
        items: pl.DataFrame | Sequence[str] | None = None,
        *,
        ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n, dim) float32 L2-normalised item vectors.

        ``items=None``: the fitted catalogue (with ID embeddings of items seen in training). A frame or texts:
        any items by their text alone (cold start, items added after training); ``ids`` optionally maps each row
        to a catalogue index whose learned ID embedding is added (-1 = none).

        With the text channel (``cold_start = "text"``), an item with training interactions is [tower vector ; 0 ; 0]
        and any other item (no interactions, or text without a catalogue id) is [0 ; text embedding ; 1] / sqrt 2.
        """
        net = self._require()
        net.eval()
        with torch.inference_mode():
            if items is None:
                text, idt = net.text, torch.arange(net.n_items, device=net.text.device)
            else:
                texts = self.render_items(items) if isinstance(items, pl.DataFrame) else list(items)
                text = torch.from_numpy(self.embed(texts, cache=False)).to(net.text.device)
                idt = torch.full((len(texts),), -1, dtype=torch.long) if ids is None else torch.as_tensor(np.asarray(ids), dtype=torch.long)
                idt = idt.to(net.text.device)
            tower = net.normalise(net.item_raw(text, idt))
            if not self.text_channel:
                return tower.cpu().numpy().astype(np.float32)
            warm = ((idt >= 0) & net.known[idt.clamp(min=0)]).unsqueeze(-1).to(tower.dtype)
            half = (1 - warm) * SQRT_HALF
            out = torch.cat([tower * warm, self._channel_vectors(text) * half, half], dim=1)
            return out.cpu().numpy().astype(np.float32)

    def encode_text_users(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) user vectors of users known only by a text (a profile, a query): the text's item-tower vector, and
        with the text channel its text embedding too, so it scores warm and cold items alike."""
        if not self.text_channel:
            return self.encode_items(list(texts))
        net = self._require()
        net.eval()
        with torch.inference_mode():
            text = torch.from_numpy(self.embed(list(texts), cache=False)).to(net.text.device)
            z = net.normalise(net.item_raw(text, torch.full((len(text),), -1, dtype=torch.long, device=text.device)))
            signal = z if self.channel == "adaptor" else net.normalise(text)
        return self._with_text_channel(z.cpu().numpy(), signal.cpu().numpy())

    def _with_text_channel(self, tower: np.ndarray, signal: np.ndarray, histories: list[np.ndarray] | None = None) -> np.ndarray:
        """[tower ; sqrt2 a_u text ; sqrt2 c_u], normalised: against cold items ([0 ; text / sqrt2 ; 1 / sqrt2]) this
        scores a_u cos(text, item text) + c_u, the text cosine mapped onto the user's trained-score scale.

        a_u, c_u map the user's best and 10th-best text cosine over the reference warm items (those not in the
        history) onto the best and 10th-best trained score over the same items, then shift by ``cold_text_shift``
        times their gap: a cold item that the untrained model would put in the user's top 10 against warm items is
        put in the top 10 against warm items here too, so cold HR@10 matches zero-shot's (and ties break alike among
        cold items, ranked by the text cosine). Rescaling a user's vector leaves that user's ranking unchanged.
        """
        net = self._require()
        ref = self._reference_items()
        with torch.inference_mode():
            warm = net.normalise(self._catalogue_table()[torch.from_numpy(ref)]).cpu().numpy()
            channel = self._channel_vectors(net.text[torch.from_numpy(ref)]).cpu().numpy()
        s, q = tower @ warm.T, signal @ channel.T
        if histories is not None:  # the user's own items are excluded at ranking, so not anchors either
            pos = np.full(net.n_items, -1, dtype=np.int64)
            pos[ref] = np.arange(len(ref))
            rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
            cols = pos[np.concatenate(histories).astype(np.int64)] if len(rows) else np.zeros(0, dtype=np.int64)
            s[rows[cols >= 0], cols[cols >= 0]] = -np.inf
            q[rows[cols >= 0], cols[cols >= 0]] = -np.inf
        k = min(ANCHOR_RANK, s.shape[1]) - 1
        s_top, s_k = s.max(axis=1), -np.partition(-s, k, axis=1)[:, k]
        q_top, q_k = q.max(axis=1), -np.partition(-q, k, axis=1)[:, k]
        gap_s, gap_q = s_top - s_k, q_top - q_k
        ok = np.isfinite(gap_s) & np.isfinite(gap_q) & (gap_q > 1e-6)
        a = np.where(ok, gap_s / np.where(ok, gap_q, 1.0), 0.0)
        c = np.where(ok, s_k - a * np.where(ok, q_k, 0.0) + self.args.cold_text_shift * np.where(ok, gap_s, 0.0), np.where(np.isfinite(s_k), s_k, 0.0))
        both = np.concatenate([tower, signal * (a / SQRT_HALF)[:, None], (c / SQRT_HALF)[:, None]], axis=1)
        return (both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def _reference_items(self) -> np.ndarray:
        """Catalogue indices of the warm items the text channel is calibrated on (at most REFERENCE_ITEMS, evenly
        spaced, so the calibration is deterministic and its cost bounded on large catalogues)."""
        known = np.flatnonzero(self._require().known.cpu().numpy())
        if len(known) > REFERENCE_ITEMS:
            known = known[np.linspace(0, len(known) - 1, REFERENCE_ITEMS).astype(np.int64)]
        return known

    def _catalogue_table(self) -> torch.Tensor:
        """The item tower over the whole catalogue (+ a zero padding row), cached until any weight changes.

        Keyed on the parameters' in-place version counters, so training invalidates it and serving computes it
        once, instead of running the item tower over the catalogue for every user encode (docs/performance.md).
        """
        net = self._require()
        if torch.is_grad_enabled() and net.training:
            z = net.item_raw()
            return torch.cat([z, torch.zeros(1, z.shape[1], dtype=z.dtype, device=z.device)])
        key = (id(net), net.training, net.text.device, tuple(p._version for p in net.parameters()))
        cached = getattr(self, "_table_cache", None)
        if cached is None or cached[0] != key:
            with torch.inference_mode():
                z = net.item_raw()
                table = torch.cat([z, torch.zeros(1, z.shape[1], dtype=z.dtype, device=z.device)])
            self._table_cache = (key, table)
        return self._table_cache[1]

    def _profile_embeddings(self, profiles: pl.DataFrame | Sequence[dict] | None, n: int) -> torch.Tensor | None:
        net = self._require()
        if net.profile_proj is None or profiles is None:
            return None
        rows = profiles.to_dicts() if isinstance(profiles, pl.DataFrame) else list(profiles)
        if len(rows) != n:
            raise ValueError(f"{n} histories but {len(rows)} profiles")
        texts = [render_profile(p, self.args.templates) for p in rows]
        return torch.from_numpy(self.embed(texts))

    def encode_users(
        self,
        histories: Sequences | Sequence[np.ndarray] | Sequence[Sequence[int]],
        context: pl.DataFrame | None = None,
        profiles: pl.DataFrame | Sequence[dict] | None = None,
        *,
        batch_size: int = 512,
    ) -> np.ndarray:
        """(n, dim) float32 L2-normalised user vectors from histories of catalogue item indices (oldest first).

        With the text channel a user vector is [sequence-tower state ; the recency-weighted mean of the history's text
        embeddings and an offset, calibrated per user] (normalised): warm items are scored by the first part, cold
        items by the second (``_with_text_channel``).

        ``context``: one row per history, the request's timestamp (+ context columns), used when trained with
        ``use_context``. ``profiles``: one profile row per history, used when trained with ``use_profiles``.
        """
        net = self._require()
        net.eval()
        hs = as_histories(histories)
        n = len(hs)
        ctx_all = context_features(context, n, self.context_columns, time=self.time_context) if net.ctx_emb is not None else None
        prof_all = self._profile_embeddings(profiles, n)
        out = np.zeros((n, net.pos_emb.weight.shape[1]), dtype=np.float32)
        dev = net.text.device  # CPU unless a launched run trains on its GPU (recsys.distributed.device)
        with torch.inference_mode():
            table = self._catalogue_table()
            for lo in range(0, n, batch_size):
                hi = min(n, lo + batch_size)
                seq = torch.from_numpy(pad_left(hs[lo:hi], net.max_len, net.n_items)).to(dev)
                ctx = None
                if ctx_all is not None:
                    ctx = torch.full((hi - lo, seq.shape[1], ctx_all.shape[1]), -1, dtype=torch.long)
                    ctx[:, -1] = torch.from_numpy(ctx_all[lo:hi])
                    ctx = ctx.to(dev)
                prof = prof_all[lo:hi].to(dev) if prof_all is not None else None
                out[lo:hi] = net.user_states(seq, table, ctx, prof)[:, -1].cpu().numpy()
        if not self.text_channel:
            return out
        if self.channel == "adaptor":  # cold items by the tower state . their text path
            return self._with_text_channel(out, out, hs)
        return self._with_text_channel(out, recency_weighted_mean(hs, net.text.cpu().numpy(), self.args.cold_text_decay), hs)

    def score(self, cases: Cases, profiles: pl.DataFrame | None = None) -> np.ndarray:
        """(len(cases), n_items) float32 cosine scores over the whole fitted catalogue."""
        u = self.encode_users(cases.history, cases.context, profiles)
        return u @ self.encode_items().T

    # persistence -----------------------------------------------------------------------------------------------
    def save(self, directory: Path | str, *, extra_manifest: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
        """Weights, settings, catalogue text embeddings (+ the fine-tuned text model) and ``manifest.json``."""
        net = self._require()
        directory = Path(directory)
        with atomic_directory(directory, MANIFEST_KIND, overwrite=overwrite) as tmp:
            torch.save(net.state_dict(), tmp / "weights.pt")
            (tmp / "config.json").write_text(json.dumps(self.args.to_dict(), indent=2, sort_keys=True))
            (tmp / "state.json").write_text(
                json.dumps(
                    {"item_texts": self.item_texts, "context_columns": self.context_columns, "text_dim": int(net.text.shape[1]),
                     "time_context": self.time_context},
                    ensure_ascii=False,
                )
            )
            text_model = None
            if self._finetuned or self._text_model_dir:
                self.text_model.save(str(tmp / "text_model"))
                text_model = "text_model"
            write_manifest(
                tmp,
                {
                    "kind": MANIFEST_KIND,
                    "base_model": self.args.base_model or "bundled:sentence-transformers/all-MiniLM-L6-v2",
                    "text_model": text_model or "base_model",
                    "data_fingerprint": self.data_fingerprint,
                    "time_context": self.time_context,
                    "n_items": net.n_items,
                    "dim": self.dim,
                    "settings": self.args.to_dict(),
                    "metrics": self.metrics,
                    "training": self.history,
                    **(extra_manifest or {}),
                },
            )
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> "TwoTowerRetriever":
        directory = Path(directory)
        manifest = read_manifest(directory, MANIFEST_KIND)
        config = json.loads((directory / "config.json").read_text())
        # a model saved before the cold-start channel existed keeps the vectors (and dimension) its indexes were built with
        config.setdefault("cold_start", "off")
        config.setdefault("cold_text_shift", 0.0)  # saved before the shift existed: its channel had none
        args = RetrieverTrainingArguments.from_dict(config)
        state = json.loads((directory / "state.json").read_text())
        self = cls(args)
        weights = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
        n_items, text_dim = weights["text"].shape
        self._build(np.zeros((n_items, text_dim), dtype=np.float32), np.zeros(n_items, dtype=bool), state["context_columns"])
        self._require().load_state_dict(weights)
        self.item_texts = state["item_texts"]
        self.time_context = bool(state.get("time_context", True))
        self.metrics = manifest.get("metrics", {})
        self.history = manifest.get("training", [])
        self.data_fingerprint = manifest.get("data_fingerprint")
        if manifest.get("text_model") == "text_model":
            self._text_model_dir = str(directory / "text_model")
        return self

    def copy_state(self) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self._require().state_dict())


__all__ = ["MANIFEST_KIND", "TwoTowerNet", "TwoTowerRetriever", "load_text_model"]

