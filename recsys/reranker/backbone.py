"""The sentence-transformers ``CrossEncoder`` the reranker wraps: loaded on CPU with one output, a fresh head
seeded without touching the global torch RNG. Shared by the model (loading a run) and training (a new head).
"""

from __future__ import annotations

import os
import threading

_LOCK = threading.Lock()


def load_cross_encoder(name_or_path: str, *, max_length: int = 256, num_labels: int = 1, seed: int | None = 0):
    """A CPU ``CrossEncoder`` with one output. A SentenceTransformer checkpoint (the bundled MiniLM) gets a new
    classification head, initialised from ``seed`` (without touching the global torch RNG); a local path never
    touches the hub."""
    import torch
    from sentence_transformers import CrossEncoder

    local = os.path.isdir(name_or_path)
    with _LOCK, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return CrossEncoder(name_or_path, num_labels=num_labels, max_length=max_length, device="cpu", local_files_only=local)


__all__ = ["load_cross_encoder"]
