"""The text cross-encoder feature: a relevance score of (user text, item text) that starts at the bi-encoder cosine.

Design (late interaction over a shared MiniLM body; the cheapest one that trains on two CPU cores):

- Both segments (user text = the newest history titles; item text = the protocol's item rendering, each at most
  ``max_length`` tokens) go through the same MiniLM. The lower layers are frozen, so their outputs are computed
  once per text and cached for the whole training run; each step runs only the top ``trainable_layers`` layer(s).
- Each segment is mean-pooled (MiniLM's own pooling) and passed through a linear head initialised to the
  identity (``user_head``, ``item_head``); score = cosine of the two head outputs. At step 0 the score is therefore
  exactly the cosine of the MiniLM sentence embeddings of the two segments (tested).
- Training (``recsys.reranker.training``) moves the top layer and the heads with a listwise softmax over one
  positive and hard negatives.

Why not a joint (one-sequence) encoder: it cannot start at the bi-encoder cosine without a fresh head, every
(user, item) pair needs a pass through all layers (the catalogue side cannot be cached), and ranking 100
candidates costs 100 passes. Here a request costs one user-text pass plus dot products with cached item vectors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.errors import ManifestMismatchError, RecsysError
from recsys.manifest import atomic_directory, fingerprint_file, read_manifest, write_manifest
from recsys.reranker.config import CrossEncoderArguments
from recsys.text import history_item_texts, render_items, render_users

MANIFEST_KIND = "cross_encoder"
WEIGHTS_FILE, SETTINGS_FILE, CATALOGUE_FILE = "weights.pt", "settings.json", "catalogue.npz"
USER, ITEM = "user", "item"


class CrossEncoder:
    """Scores (user text, item text) pairs. ``index_catalogue(items)`` caches the item side; ``score(histories,
    case, item)`` scores rows; ``save``/``load`` keep the trained top layer(s), heads and the catalogue vectors."""

    def __init__(self, args: CrossEncoderArguments | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.args = args or CrossEncoderArguments()
        path = self.args.resolved_base_model
        local = os.path.isdir(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        self.bert = AutoModel.from_pretrained(path, local_files_only=local)
        self.bert.eval()
        for p in self.bert.parameters():
            p.requires_grad_(False)
        n_layers = int(self.bert.config.num_hidden_layers)
        self.split = n_layers - min(self.args.trainable_layers, n_layers)
        self.top = torch.nn.ModuleList(list(self.bert.encoder.layer[self.split :]))
        for p in self.top.parameters():
            p.requires_grad_(True)
        dim = int(self.bert.config.hidden_size)
        self.heads = torch.nn.ModuleDict({USER: _identity_linear(dim), ITEM: _identity_linear(dim)})
        self.data_fingerprint: str | None = None
        self.history: dict[str, Any] = {}
        self.item_texts_: list[str] | None = None
        self.history_texts_: list[str] | None = None
        self.item_vectors_: np.ndarray | None = None

    # ------------------------------------------------------------------ parameters
    def trainable_parameters(self) -> tuple[list[Any], list[Any]]:
        """(top-layer parameters, head parameters): the only ones that train."""
        return list(self.top.parameters()), list(self.heads.parameters())

    # ------------------------------------------------------------------ text
    def render_items(self, items: pl.DataFrame) -> list[str]:
        return render_items(items, self.args.templates())

    def history_texts(self, items: pl.DataFrame) -> list[str]:
        return history_item_texts(items, self.args.templates())

    def user_texts(self, histories: Sequence[Sequence[int] | np.ndarray], history_texts: Sequence[str] | None = None) -> list[str]:
        """The newest ``history_items`` titles of each history (the catalogue's, unless ``history_texts`` is given)."""
        texts = history_texts if history_texts is not None else self._catalogue()[1]
        return render_users(histories, list(texts), templates=self.args.templates())

    # ------------------------------------------------------------------ encoding
    def frozen_states(self, texts: Sequence[str], *, batch_size: int = 64, half: bool = False) -> list[Any]:
        """Per text, the (tokens, hidden) output of the frozen layers (embeddings + the lower layers), unpadded.
        ``half``: stored as float16 (the training cache), else float32."""
        import torch

        order = np.argsort([len(t) for t in texts], kind="stable")
        out: list[Any] = [None] * len(texts)
        with torch.no_grad():  # not inference_mode: the cached states feed the training graph
            for lo in range(0, len(texts), batch_size):
                rows = order[lo : lo + batch_size]
                enc = self.tokenizer([texts[r] for r in rows], padding=True, truncation=True, max_length=self.args.max_length, return_tensors="pt")
                h = self.bert.embeddings(input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids"))
                mask = enc["attention_mask"]
                h = _run_layers(self.bert.encoder.layer[: self.split], h, mask)
                lengths = mask.sum(1).tolist()
                for j, r in enumerate(rows):
                    s = h[j, : lengths[j]].clone()
                    out[r] = s.half() if half else s
        return out

    def pooled(self, states: Sequence[Any], side: str) -> Any:
        """L2-normalised head output of frozen states (differentiable through the top layer(s) and the head)."""
        import torch

        lengths = [int(s.shape[0]) for s in states]
        hidden = torch.nn.utils.rnn.pad_sequence([s.float() for s in states], batch_first=True)
        mask = (torch.arange(hidden.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
        h = _run_layers(self.top, hidden, mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(self.heads[side](mean), dim=-1)

    def encode(self, texts: Sequence[str], side: str, *, batch_size: int = 64) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors of one side (``"user"`` or ``"item"``)."""
        import torch

        texts = list(texts)
        dim = int(self.bert.config.hidden_size)
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        out = np.zeros((len(texts), dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for lo in range(0, len(texts), batch_size):
                rows = order[lo : lo + batch_size]
                states = self.frozen_states([texts[r] for r in rows], batch_size=batch_size)
                out[rows] = self.pooled(states, side).numpy()
        return out

    # ------------------------------------------------------------------ scoring
    def index_catalogue(self, items: pl.DataFrame) -> "CrossEncoder":
        """Render and encode the catalogue once (item vectors and the titles user texts are built from)."""
        self.item_texts_ = self.render_items(items)
        self.history_texts_ = self.history_texts(items)
        self.item_vectors_ = self.encode(self.item_texts_, ITEM)
        return self

    def _catalogue(self) -> tuple[np.ndarray, list[str]]:
        if self.item_vectors_ is None or self.history_texts_ is None:
            raise RecsysError("the cross-encoder has no catalogue: call index_catalogue(items) first")
        return self.item_vectors_, self.history_texts_

    def encode_users(self, histories: Sequence[Sequence[int] | np.ndarray]) -> np.ndarray:
        return self.encode(self.user_texts(histories), USER)

    def score(self, histories: Sequence[Sequence[int] | np.ndarray], case: np.ndarray, item: np.ndarray) -> np.ndarray:
        """float32 score of each (case, item) row: ``histories[case]`` against catalogue item ``item``."""
        vectors, _ = self._catalogue()
        item = np.asarray(item, dtype=np.int64)
        if len(item) and (item.min() < 0 or item.max() >= len(vectors)):
            raise RecsysError(f"item index {int(item.max())} is outside the cross-encoder's catalogue of {len(vectors)} items")
        users = self.encode_users(histories)
        case = np.asarray(case, dtype=np.int64)
        return np.einsum("ij,ij->i", users[case], vectors[item]).astype(np.float32)

    def score_lists(self, histories: Sequence[Sequence[int] | np.ndarray], lists: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Scores of each case's candidate list (catalogue indices)."""
        case = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
        flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0, dtype=np.int64)
        s = self.score(histories, case, flat)
        return np.split(s, np.cumsum([len(x) for x in lists])[:-1])

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path | str) -> Path:
        import torch

        directory = Path(directory)
        vectors, _ = self._catalogue()
        with atomic_directory(directory, MANIFEST_KIND) as tmp:
            state = {f"top.{k}": v for k, v in self.top.state_dict().items()}
            state.update({f"heads.{k}": v for k, v in self.heads.state_dict().items()})
            torch.save(state, tmp / WEIGHTS_FILE)
            np.savez(tmp / CATALOGUE_FILE, item_vectors=vectors)
            meta = {"args": self.args.to_dict(), "data_fingerprint": self.data_fingerprint, "history": self.history,
                    "item_texts": self.item_texts_, "history_texts": self.history_texts_}  # fmt: skip
            (tmp / SETTINGS_FILE).write_text(json.dumps(meta, default=str))
            files = {f: fingerprint_file(tmp / f) for f in (WEIGHTS_FILE, CATALOGUE_FILE, SETTINGS_FILE)}
            write_manifest(tmp, {"kind": MANIFEST_KIND, "data_fingerprint": self.data_fingerprint, "files": files})
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> "CrossEncoder":
        """Open a saved cross-encoder; refuse one whose files do not match their fingerprints."""
        import torch

        directory = Path(directory)
        if not directory.is_dir():
            raise RecsysError(f"cross-encoder run {directory} does not exist")
        manifest = read_manifest(directory, MANIFEST_KIND)
        for f, fp in manifest.get("files", {}).items():
            if not (directory / f).is_file() or fingerprint_file(directory / f) != fp:
                raise ManifestMismatchError(f"{directory / f} is missing or does not match the fingerprint in {directory}/manifest.json")
        meta = json.loads((directory / SETTINGS_FILE).read_text())
        self = cls(CrossEncoderArguments.from_dict(meta["args"]))
        state = torch.load(directory / WEIGHTS_FILE, weights_only=True)
        self.top.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("top.")})
        self.heads.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("heads.")})
        with np.load(directory / CATALOGUE_FILE) as z:
            self.item_vectors_ = z["item_vectors"]
        self.item_texts_, self.history_texts_ = meta["item_texts"], meta["history_texts"]
        self.data_fingerprint, self.history = meta["data_fingerprint"], meta["history"]
        return self


def _identity_linear(dim: int) -> Any:
    import torch

    layer = torch.nn.Linear(dim, dim, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(dim))
    return layer


def _run_layers(layers: Sequence[Any], hidden: Any, mask: Any) -> Any:
    """BERT layers over padded ``hidden`` with the additive attention mask of ``mask`` (1 = token, 0 = pad)."""
    import torch

    if not len(layers):
        return hidden
    additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
    for layer in layers:
        out = layer(hidden, attention_mask=additive)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


__all__ = ["ITEM", "MANIFEST_KIND", "USER", "CrossEncoder"]
