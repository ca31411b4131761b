"""The raw FAISS index behind an ``ItemIndex`` for each index type (flat, IVF, HNSW), made and filled with the
item vectors under faiss ids ``0..n-1``; the id map, exclusions and saving stay with ``ItemIndex``."""

from __future__ import annotations

import math
import sys
from typing import Any

import faiss
import numpy as np

from recsys.errors import RecsysError

_ADD_CHUNK = 65_536


def new_faiss_index(
    index_type: str,
    x: np.ndarray,
    *,
    nlist: int | None = None,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """``(index, params)``: a ``flat``, ``ivf`` or ``hnsw`` inner-product index holding the rows of ``x`` (normalised
    float32) under faiss ids ``0..n-1``. IVF uses its own id storage and a hash-table direct map, because
    ``IndexIDMap2`` around an IVF index renumbers ids wrongly on removal; ``nlist`` defaults to about 4·sqrt(n)."""
    n, dim = x.shape
    params: dict[str, Any] = {}
    if index_type == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    elif index_type == "ivf":
        if nlist is None:
            nlist = max(1, min(int(round(4 * math.sqrt(n))), n // 39))
        if not 1 <= nlist <= n:
            raise RecsysError(f"nlist must be between 1 and the number of items ({n}), got {nlist}")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, int(nlist), faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()
        index.cp.seed = seed
        log_progress(progress, f"training IVF with {nlist} lists on {n:,} vectors")
        index.train(x)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        params["nlist"] = int(nlist)
    else:  # hnsw
        if hnsw_m < 2:
            raise RecsysError(f"hnsw_m must be at least 2, got {hnsw_m}")
        inner = faiss.IndexHNSWFlat(dim, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = int(ef_construction)
        index = faiss.IndexIDMap2(inner)
        params.update(hnsw_m=int(hnsw_m), ef_construction=int(ef_construction))
    add_chunked(index, x, np.arange(n, dtype=np.int64), progress=progress)
    return index, params


def add_chunked(index: Any, x: np.ndarray, fids: np.ndarray, *, progress: bool) -> None:
    """``index.add_with_ids`` in chunks of 65,536 rows (with a progress bar when there are several)."""
    chunks = range(0, x.shape[0], _ADD_CHUNK)
    if progress and len(chunks) > 1:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="adding vectors", unit="chunk")
    for start in chunks:
        stop = start + _ADD_CHUNK
        index.add_with_ids(x[start:stop], fids[start:stop])


def log_progress(progress: bool, message: str) -> None:
    if progress:
        print(f"[index] {message}", file=sys.stderr)
