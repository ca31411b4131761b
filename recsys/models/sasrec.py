"""SASRec (Kang & McAuley 2018): a causal self-attention encoder over the user's recent item sequence.

The original architecture (learned item + positional embeddings, pre-LN self-attention blocks with a
point-wise feed-forward network, dropout), trained as the protocol specifies (../shared/EVALUATION.md):
every position predicts the next item with full-softmax cross-entropy over the catalogue, the output layer
tied to the item embeddings, Adam 1e-3, batch 64. By default (``windows="all"``) every row is cut into
``max_len + 1``-item windows (inputs = seq[:-1], labels = seq[1:], left-padded), so every (item, next item)
pair of the history is trained on: the strongest setting, the one every comparison in this project is made
against. ``windows="last"`` trains on each user's last ``max_len + 1`` items only, as the original code does.

With ``validation`` cases, training stops early on validation NDCG@10 (full ranking, each case's
``exclude`` items removed; ``patience`` 10 evaluations, because the validation curve is noisy enough that 5
stops far before the best epoch) and the best state is kept; the model is not refit for test
(``refit_for_test = False``). Scoring encodes the last ``max_len`` history items of each case and dots the
final hidden state with every item embedding; items never seen in training get ``-inf``.

Item index ``i`` is embedding row ``i + 1``; row 0 is padding and is never scored.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.types import Cases, Sequences, TrainData
from recsys.models.base import Recommender


class _Block(nn.Module):
    """One SASRec block: x = LN(x); x = x + MHA(x); x = LN(x); x = x + FFN(x) (FFN has its own dropout)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln_attn = nn.LayerNorm(d, eps=1e-8)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ln_ffn = nn.LayerNorm(d, eps=1e-8)
        self.ffn1 = nn.Linear(d, d)
        self.ffn2 = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q_in = self.ln_attn(x)
        # the original uses the normalised input as the query and the raw input as keys/values
        wq, wk, wv = self.qkv.weight.chunk(3, dim=0)
        bq, bk, bv = self.qkv.bias.chunk(3, dim=0)
        q = F.linear(q_in, wq, bq).view(b, n, self.heads, -1).transpose(1, 2)
        k = F.linear(x, wk, bk).view(b, n, self.heads, -1).transpose(1, 2)
        v = F.linear(x, wv, bv).view(b, n, self.heads, -1).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = q_in + self.out(a.transpose(1, 2).reshape(b, n, d))
        x = self.ln_ffn(x)
        return x + self.drop(self.ffn2(F.relu(self.drop(self.ffn1(x)))))


class _SASRecNet(nn.Module):
    def __init__(self, n_items: int, d: int, layers: int, heads: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.d = d
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, d)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(d, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(d, eps=1e-8)
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        causal = torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))
        self.register_buffer("causal", causal, persistent=False)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """seq: (B, L) embedding rows, left-padded with 0 -> hidden states (B, L, d)."""
        b, n = seq.shape
        keep = seq > 0
        x = self.item_emb(seq) * math.sqrt(self.d) + self.pos_emb.weight[-n:]
        x = self.drop(x) * keep.unsqueeze(-1)
        # causal, padding keys hidden; every position may always see itself (no all-masked rows)
        eye = torch.eye(n, dtype=torch.bool, device=seq.device)
        mask = (self.causal[-n:, -n:] & keep[:, None, :]) | eye
        mask = mask.unsqueeze(1)  # (B, 1, L, L), broadcast over heads
        for block in self.blocks:
            x = block(x, mask) * keep.unsqueeze(-1)
        return self.ln(x)

    def item_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every catalogue item (embedding rows 1..n) for hidden states h (..., d)."""
        return h @ self.item_emb.weight[1:].T


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (None: leave torch's setting), restoring the previous value."""
    prev = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(prev)


def _left_padded(seqs: Sequences, length: int) -> np.ndarray:
    """The last ``length`` items of each row as embedding rows (item + 1), left-padded with 0."""
    last = seqs.last(length)
    out = np.zeros((last.n_rows, length), dtype=np.int64)
    lens = last.lengths
    rows = np.repeat(np.arange(last.n_rows), lens)
    cols = length - np.repeat(lens, lens) + (np.arange(len(last.items)) - np.repeat(last.indptr[:-1], lens))
    out[rows, cols] = last.items.astype(np.int64) + 1
    return out


def _training_windows(seqs: Sequences, width: int, mode: str) -> Sequences:
    """The training rows: each user's last ``width`` items ("last"), or ("all") the whole row cut from its end
    into windows of ``width`` items that overlap by one, so every (item, next item) pair is a label once."""
    if mode == "last":
        return seqs
    if mode != "all":
        raise ValueError(f"windows must be 'last' or 'all', not {mode!r}")
    step = width - 1
    lengths = seqs.lengths
    n_win = np.maximum(1, -(-(lengths - 1) // step))  # ceil((len - 1) / step), at least one
    row = np.repeat(np.arange(seqs.n_rows), n_win)
    k = np.arange(n_win.sum()) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # 0 = the most recent window
    ends = seqs.indptr[row + 1] - k * step
    starts = np.maximum(seqs.indptr[row], ends - width)
    win_len = ends - starts
    indptr = np.zeros(len(row) + 1, dtype=np.int64)
    np.cumsum(win_len, out=indptr[1:])
    idx = np.repeat(starts - indptr[:-1], win_len) + np.arange(indptr[-1])
    return Sequences(indptr, seqs.items[idx])


def _ndcg_at(scores: np.ndarray, cases: Cases, k: int = 10) -> float:
    """Mean NDCG@k of the targets under full ranking, each case's ``exclude`` items removed (target kept).

    Ties count against the target (pessimistic), which is enough for early stopping.
    """
    s = scores.copy()
    ex = cases.exclude
    rows = np.repeat(np.arange(ex.n_rows), ex.lengths)
    s[rows, ex.items] = -np.inf
    idx = np.arange(len(cases))
    t = scores[idx, cases.targets]
    s[idx, cases.targets] = t  # the target is never excluded
    ahead = (s >= t[:, None]).sum(axis=1) - 1  # items scored at least as high, minus the target itself
    gain = np.where(np.isfinite(t) & (ahead < k), 1.0 / np.log2(ahead + 2.0), 0.0)
    return float(gain.mean()) if len(gain) else 0.0


class SASRec(Recommender):
    name = "sasrec"
    grid = [{}]  # training is expensive: one setting, the protocol's
    refit_for_test = False

    def __init__(
        self,
        d: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.2,
        lr: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 200,
        time_budget_s: float = 600.0,
        patience: int = 10,
        eval_every: int = 1,
        seed: int = 0,
        device: str = "cpu",
        threads: int | None = 1,
        windows: str = "all",
    ) -> None:
        super().__init__(
            d=d, layers=layers, heads=heads, max_len=max_len, dropout=dropout, lr=lr, batch_size=batch_size,
            epochs=epochs, time_budget_s=time_budget_s, patience=patience, eval_every=eval_every, seed=seed,
            device=device, threads=threads, windows=windows,
        )  # fmt: skip
        self.d, self.layers, self.heads, self.max_len, self.dropout = d, layers, heads, max_len, dropout
        self.lr, self.batch_size, self.epochs, self.time_budget_s = lr, batch_size, epochs, time_budget_s
        self.patience, self.eval_every, self.seed, self.device = patience, eval_every, seed, device
        # one intra-op thread by default: these matrices are small, and on a shared machine torch's spin-waiting
        # OpenMP pool is slower per batch than a single thread (docs/performance.md)
        self.threads = threads
        self.windows = windows

    # ------------------------------------------------------------------ training
    def params_without_validation(self) -> dict[str, Any]:
        best = getattr(self, "best_epoch_", None)
        return {"epochs": int(best)} if best else {}

    def fit(self, data: TrainData, validation: Cases | None = None) -> "SASRec":
        with _torch_threads(self.threads):
            return self._fit(data, validation)

    def _fit(self, data: TrainData, validation: Cases | None) -> "SASRec":
        start = time.perf_counter()
        dev = torch.device(self.device)
        n_items = data.n_items
        seqs = _left_padded(_training_windows(data.sequences, self.max_len + 1, self.windows), self.max_len + 1)
        seqs = seqs[(seqs > 0).sum(axis=1) >= 2]  # a user needs one (input, next item) pair
        inputs = torch.from_numpy(seqs[:, :-1].copy())
        labels = torch.from_numpy(seqs[:, 1:] - 1)  # item index; -1 = padding (ignored)
        self.seen_ = data.item_counts > 0
        rng = np.random.default_rng(self.seed)

        devices = [dev] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            net = _SASRecNet(n_items, self.d, self.layers, self.heads, self.max_len, self.dropout).to(dev)
            self.net_ = net
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, betas=(0.9, 0.98))
            best_state: dict[str, torch.Tensor] | None = None
            best, best_epoch, bad = -1.0, 0, 0
            self.val_history_: list[tuple[int, float]] = []
            self.stopped_by_ = "epochs"
            epoch = 0
            for epoch in range(1, self.epochs + 1):
                net.train()
                order = rng.permutation(len(inputs))
                out_of_time = False
                for lo in range(0, len(order), self.batch_size):
                    batch = torch.from_numpy(order[lo : lo + self.batch_size])
                    x, y = inputs[batch].to(dev), labels[batch].to(dev)
                    h = net(x)
                    keep = y >= 0
                    loss = F.cross_entropy(net.item_logits(h[keep]), y[keep])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if time.perf_counter() - start > self.time_budget_s:
                        out_of_time = True
                        break
                if validation is not None and len(validation) and (epoch % self.eval_every == 0 or out_of_time):
                    ndcg = _ndcg_at(self._score(validation.history), validation)
                    self.val_history_.append((epoch, ndcg))
                    if ndcg > best:
                        best, best_epoch, bad = ndcg, epoch, 0
                        best_state = copy.deepcopy(net.state_dict())
                    else:
                        bad += 1
                        if bad >= self.patience:
                            self.stopped_by_ = "patience"
                            break
                if out_of_time:
                    self.stopped_by_ = "time_budget"
                    break
            if best_state is not None:
                net.load_state_dict(best_state)
            self.epochs_ = epoch
            self.best_epoch_ = best_epoch if best_state is not None else epoch
            self.best_val_ndcg10_ = best if best_state is not None else None
        net.eval()
        self.fit_seconds_ = time.perf_counter() - start
        return self

    # ------------------------------------------------------------------ scoring
    def _score(self, history: Sequences, batch: int = 512) -> np.ndarray:
        net = self.net_
        was_training = net.training
        net.eval()
        dev = next(net.parameters()).device
        seq = torch.from_numpy(_left_padded(history, self.max_len))
        out = np.empty((history.n_rows, len(self.seen_)), dtype=np.float32)
        with torch.inference_mode():
            for lo in range(0, history.n_rows, batch):
                h = net(seq[lo : lo + batch].to(dev))[:, -1]
                out[lo : lo + batch] = net.item_logits(h).float().cpu().numpy()
        net.train(was_training)
        out[:, ~self.seen_] = -np.inf
        return out

    def score(self, cases: Cases) -> np.ndarray:
        with _torch_threads(self.threads):
            return self._score(cases.history)

    def __getstate__(self) -> dict[str, Any]:  # pickle-friendly: keep the module on CPU
        state = self.__dict__.copy()
        if "net_" in state:
            state["net_"] = copy.deepcopy(state["net_"]).cpu()
        return state
