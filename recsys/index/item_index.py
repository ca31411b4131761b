"""``ItemIndex``: the item-vector FAISS index the two-tower retriever searches, with its id map and manifest.

Over 450 lines because the index class's add/remove/search keep its id map, live mask and FAISS ids consistent; storage, exclusions and tuning live beside it.

Vectors are L2-normalised float32 and compared by inner product (= cosine). External item ids (Int64 or
String, as in the dataset) are mapped to int64 FAISS ids that are never reused, so items can be removed and
replaced without a rebuild:

* ``flat`` (exact): ``IndexIDMap2(IndexFlatIP)``;
* ``ivf``: ``IndexIVFFlat`` (inner product) using its own id storage and a hash-table direct map, because
  ``IndexIDMap2`` around an IVF index renumbers ids wrongly on removal;
* ``hnsw``: ``IndexIDMap2(IndexHNSWFlat)``; HNSW cannot delete, so removed/replaced vectors become
  tombstones that every search filters out with an ``IDSelector`` (``info()["tombstones"]``). A rebuild
  (``ItemIndex.build`` on the live vectors) drops them.

Exclusions live in ``exclusions``, recall tuning in ``tuning``, the directory format in ``storage``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

from recsys.errors import RecsysError
from recsys.index import backend
from recsys.index.exclusions import Exclusions, IntIdLookup, collect_eligible
from recsys.index.factory import add_chunked, log_progress, new_faiss_index
from recsys.index.storage import ID_COLUMN, METRIC, read_index_files, write_index_files
from recsys.index.tuning import RECALL_K, TARGET_RECALL, tune_search_params
from recsys.index.vectors import as_id_series, check_unique, check_vectors, ids_to_numpy
from recsys.manifest import utc_now

INDEX_TYPES = ("flat", "ivf", "hnsw", "auto")

#: ``index_type="auto"`` uses exact search up to this many items, IVF above.
EXACT_MAX_ITEMS = 1_000_000
#: Padding of integer item ids in search results (scores are ``-inf`` there); string ids pad with ``None``.
MISSING_INT_ID = np.iinfo(np.int64).min

_NO_GPU_HNSW = "HNSW indexes have no FAISS GPU implementation: use device 'cpu' (or 'auto'), or an 'ivf'/'flat' index"


class ItemIndex:
    """A searchable, updatable FAISS index of item vectors. Build with :meth:`build`, open with :meth:`load`."""

    def __init__(
        self,
        index: Any,
        *,
        index_type: str,
        dim: int,
        id_dtype: pl.DataType,
        fid_to_ext: np.ndarray,
        live: np.ndarray,
        model_fingerprint: str,
        metadata: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        created: str | None = None,
        updated: str | None = None,
        build_seconds: float | None = None,
        recall_at_100: float | None = None,
        device: str = "auto",
        path: Path | None = None,
    ) -> None:
        self._index = index  # authoritative CPU index
        self.index_type = index_type
        self.dim = int(dim)
        self.id_dtype = id_dtype
        self._fid_to_ext = fid_to_ext  # faiss id -> external id (int64 or object array); stale where not live
        self._live = live  # faiss id -> still in the catalogue
        self._ext_to_fid: dict[Any, int] = {
            ext: int(fid) for fid, ext in zip(np.flatnonzero(live).tolist(), fid_to_ext[live].tolist())
        }
        self.model_fingerprint = model_fingerprint
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.params: dict[str, Any] = dict(params or {})
        self.created = created or utc_now()
        self.updated = updated
        self.build_seconds = build_seconds
        self.recall_at_100 = recall_at_100
        self.path = path
        self.device: backend.Device = backend.resolve_device(device)
        if self.device == "gpu" and not backend.supports_gpu(index):
            if str(device).lower() != "auto":
                raise RecsysError(_NO_GPU_HNSW)
            self.device = "cpu"  # HNSW has no FAISS GPU implementation: "auto" searches it on the CPU
        self._search_index: Any | None = None  # GPU replica, made lazily
        self._tombstone_selector: Any | None = None
        self._int_lookup: IntIdLookup | None = None  # integer ids -> faiss ids for exclusions, made lazily
        self._apply_search_params(self._index)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        item_ids: Sequence[Any] | np.ndarray | pl.Series,
        *,
        index_type: str = "auto",
        model_fingerprint: str,
        metadata: dict[str, Any] | None = None,
        device: str = "auto",
        nlist: int | None = None,
        hnsw_m: int = 32,
        nprobe: int | None = None,
        ef_search: int | None = None,
        ef_construction: int = 80,
        target_recall: float = TARGET_RECALL,
        progress: bool = True,
        seed: int = 0,
    ) -> "ItemIndex":
        """Build an index over ``vectors`` (rows aligned with ``item_ids``).

        ``index_type``: ``"flat"`` (exact), ``"ivf"``, ``"hnsw"`` or ``"auto"`` (flat up to 1,000,000 items,
        IVF above). For IVF ``nlist`` defaults to about 4·sqrt(n); ``nprobe`` (IVF) and ``ef_search`` (HNSW)
        default to the smallest power-of-two setting whose recall@100 reaches ``target_recall``. Approximate
        indexes record recall@100 against exact search on up to 1,000 item vectors used as queries.
        """
        started = time.perf_counter()
        backend.resolve_device(device)  # fail before the work when the device cannot be had
        if index_type not in INDEX_TYPES:
            raise RecsysError(f"unknown index type {index_type!r}: expected one of {', '.join(INDEX_TYPES)}")
        ids = as_id_series(item_ids)
        x = check_vectors(vectors, ids=ids, what="item vectors")
        check_unique(ids)
        n, dim = x.shape
        if n == 0:
            raise RecsysError("cannot build an index from zero items")
        if index_type == "auto":
            index_type = "flat" if n <= EXACT_MAX_ITEMS else "ivf"
        if index_type == "hnsw" and str(device).lower() in ("gpu", "cuda"):
            raise RecsysError(_NO_GPU_HNSW)
        index, params = new_faiss_index(
            index_type, x, nlist=nlist, hnsw_m=hnsw_m, ef_construction=ef_construction, seed=seed, progress=progress
        )
        recall = None
        if index_type != "flat":
            tuned, recall = tune_search_params(
                index, index_type, x, nlist=params.get("nlist"), nprobe=nprobe, ef_search=ef_search, target=target_recall, seed=seed
            )
            params.update(tuned)
            log_progress(progress, f"{index_type} recall@{RECALL_K} = {recall:.4f} ({params})")

        return cls(
            index,
            index_type=index_type,
            dim=dim,
            id_dtype=ids.dtype,
            fid_to_ext=ids_to_numpy(ids),
            live=np.ones(n, dtype=bool),
            model_fingerprint=model_fingerprint,
            metadata=metadata,
            params=params,
            build_seconds=round(time.perf_counter() - started, 3),
            recall_at_100=recall,
            device=device,
        )

    # ------------------------------------------------------------------ searching

    def __len__(self) -> int:
        return len(self._ext_to_fid)

    def __contains__(self, item_id: Any) -> bool:
        return item_id in self._ext_to_fid

    @property
    def tombstones(self) -> int:
        """Removed vectors still physically in an HNSW graph (always 0 for flat and IVF)."""
        return int(self._index.ntotal) - len(self)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: Sequence[np.ndarray | Sequence[Any] | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per query by cosine similarity.

        ``exclude[i]`` lists external item ids never to return for query ``i`` (ids not in the index are
        ignored); the search over-fetches (growing the fetch as needed) so that ``k`` results remain. Results
        are padded (score ``-inf``, id ``MISSING_INT_ID`` or ``None``) only when fewer than ``k`` eligible items
        exist. Returns ``(scores (n, k) float32, item_ids (n, k))`` with int64 or object ids.
        """
        q = check_vectors(queries, what="queries", dim=self.dim, allow_zero=True)
        k = int(k)
        if k < 1:
            raise RecsysError(f"k must be at least 1, got {k}")
        nq = q.shape[0]
        excl = self._exclusions(exclude, nq)
        n_live = len(self)
        physical = int(self._index.ntotal)

        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        fids = np.full((nq, k), -1, dtype=np.int64)
        if not (nq and n_live):
            return scores, self._external(fids)
        max_excl = excl.longest if excl is not None else 0
        fetch = min(k + max_excl, physical)
        d, i = self._raw_search(q, fetch)
        if excl is None and fetch == k and (i >= 0).all():  # the common case: nothing to filter or pad
            return d, self._external(i)
        rows = np.arange(nq)
        exhaustive = False
        while True:
            short = collect_eligible(d, i, rows, excl, k, scores, fids, id_space=len(self._live))
            if not short.size:
                break
            probe_ran_dry = bool((i[short] < 0).any())  # IVF/HNSW returned fewer than `fetch` hits
            rows = rows[short]
            if self.index_type != "flat" and not exhaustive and (probe_ran_dry or fetch >= physical):
                exhaustive = True  # approximate probing found too few: scan everything for these rows
            elif fetch < physical:
                fetch = min(physical, fetch * 2)
            else:
                break  # the catalogue is too small: keep the padding
            d, i = self._raw_search(q[rows], fetch, exhaustive=exhaustive)
        return scores, self._external(fids)

    def _exclusions(self, exclude: Sequence[Any] | None, nq: int) -> Exclusions | None:
        if exclude is None:
            return None
        if len(exclude) != nq:
            raise RecsysError(f"exclude has {len(exclude)} entries but there are {nq} queries")
        return Exclusions.of(exclude, self._ext_to_fid, self._int_ids if self.id_dtype.is_integer() else None)

    def _int_ids(self) -> IntIdLookup:
        if self._int_lookup is None:
            self._int_lookup = IntIdLookup(self._ext_to_fid)
        return self._int_lookup

    def _raw_search(self, q: np.ndarray, fetch: int, *, exhaustive: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if self.device == "gpu" and not exhaustive and fetch <= backend.GPU_MAX_K and backend.supports_gpu(self._index):
            if self._search_index is None:
                self._search_index = backend.to_gpu(self._index)
            return self._search_index.search(q, fetch)
        return self._index.search(q, fetch, params=self._search_params(exhaustive))

    def _search_params(self, exhaustive: bool = False) -> Any | None:
        if self.index_type == "ivf":
            nlist = self.params["nlist"]
            return faiss.SearchParametersIVF(nprobe=nlist if exhaustive else self.params.get("nprobe", 1))
        if self.index_type == "hnsw":
            ef = max(int(self._index.ntotal), 1) if exhaustive else self.params.get("ef_search", 64)
            if self.tombstones:
                if self._tombstone_selector is None:
                    idmap = faiss.vector_to_array(self._index.id_map)
                    batch = faiss.IDSelectorBatch(idmap[~self._live[idmap]])
                    self._tombstone_selector = (batch, faiss.IDSelectorNot(batch))  # keep `batch` alive
                return faiss.SearchParametersHNSW(efSearch=int(ef), sel=self._tombstone_selector[1])
            return faiss.SearchParametersHNSW(efSearch=int(ef))
        return None

    def _apply_search_params(self, index: Any) -> None:
        """Set nprobe/efSearch on the index itself, so GPU clones and bare FAISS users see them too."""
        if self.index_type == "ivf" and "nprobe" in self.params:
            faiss.extract_index_ivf(index).nprobe = int(self.params["nprobe"])
        elif self.index_type == "hnsw" and "ef_search" in self.params:
            faiss.downcast_index(index.index).hnsw.efSearch = int(self.params["ef_search"])

    def _external(self, fids: np.ndarray) -> np.ndarray:
        missing = fids < 0
        out = self._fid_to_ext[np.where(missing, 0, fids)] if self._fid_to_ext.size else np.empty(fids.shape, self._fid_to_ext.dtype)
        if missing.any():
            out = out.copy()
            out[missing] = MISSING_INT_ID if out.dtype == np.int64 else None
        return out

    def get_vectors(self, item_ids: Sequence[Any] | np.ndarray | pl.Series) -> np.ndarray:
        """The stored (normalised) vectors of ``item_ids``; an unknown id is a RecsysError."""
        fids = self._fids_of(as_id_series(item_ids, expected=self.id_dtype))
        return np.vstack([self._index.reconstruct(int(f)) for f in fids]) if len(fids) else np.empty((0, self.dim), np.float32)

    # ------------------------------------------------------------------ updating

    def add_items(self, vectors: np.ndarray, item_ids: Sequence[Any] | np.ndarray | pl.Series) -> dict[str, int]:
        """Append new items and replace the vectors of existing ones, without a rebuild.

        Returns ``{"added": ..., "replaced": ...}``. Everything is validated before the index changes.
        """
        ids = as_id_series(item_ids, expected=self.id_dtype)
        x = check_vectors(vectors, ids=ids, what="item vectors", dim=self.dim)
        check_unique(ids)
        values = ids.to_list()
        old = np.asarray([self._ext_to_fid[v] for v in values if v in self._ext_to_fid], dtype=np.int64)
        if old.size:
            self._drop(old)
        start = len(self._live)
        new = np.arange(start, start + len(values), dtype=np.int64)
        add_chunked(self._index, x, new, progress=False)
        self._fid_to_ext = np.concatenate([self._fid_to_ext, ids_to_numpy(ids)])
        self._live = np.concatenate([self._live, np.ones(len(values), dtype=bool)])
        self._ext_to_fid.update(zip(values, new.tolist()))
        self._changed()
        return {"added": len(values) - int(old.size), "replaced": int(old.size)}

    def remove_items(self, item_ids: Sequence[Any] | np.ndarray | pl.Series) -> int:
        """Remove items by external id; an id not in the index is a RecsysError (nothing is removed then)."""
        ids = as_id_series(item_ids, expected=self.id_dtype)
        fids = np.unique(self._fids_of(ids))
        if fids.size:
            self._drop(fids)
            for v in set(ids.to_list()):
                del self._ext_to_fid[v]
            self._changed()
        return int(fids.size)

    def _fids_of(self, ids: pl.Series) -> np.ndarray:
        values = ids.to_list()
        unknown = [v for v in values if v not in self._ext_to_fid]
        if unknown:
            shown = ", ".join(repr(v) for v in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise RecsysError(f"item id {shown} not in the index ({len(self):,} items)")
        return np.asarray([self._ext_to_fid[v] for v in values], dtype=np.int64)

    def _drop(self, fids: np.ndarray) -> None:
        if self.index_type != "hnsw":  # HNSW cannot delete: the vectors stay as tombstones
            fids = np.ascontiguousarray(fids, dtype=np.int64)
            # IVF's hash-table direct map only accepts an IDSelectorArray; IDSelectorBatch is O(1) per lookup
            selector = faiss.IDSelectorArray(fids) if self.index_type == "ivf" else faiss.IDSelectorBatch(fids)
            removed = self._index.remove_ids(selector)
            if removed != fids.size:
                raise RecsysError(f"FAISS removed {removed} vectors, expected {fids.size}: the index is inconsistent")
        self._live[fids] = False

    def _changed(self) -> None:
        self._search_index = None
        self._tombstone_selector = None
        self._int_lookup = None
        self.updated = utc_now()

    # ------------------------------------------------------------------ describing and persisting

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": len(self),
            "dim": self.dim,
            "type": self.index_type,
            "metric": METRIC,
            "device": self.device,
            "model_fingerprint": self.model_fingerprint,
            "created": self.created,
            "build_seconds": self.build_seconds,
            "id_dtype": str(self.id_dtype),
            "params": dict(self.params),
        }
        if self.index_type != "flat":
            out["recall_at_100"] = self.recall_at_100
        if self.index_type == "hnsw":
            out["tombstones"] = self.tombstones
        if self.path is not None:
            out["path"] = str(self.path)
        if self.updated is not None:
            out["updated"] = self.updated
        return out

    def save(self, directory: Path | str, *, overwrite: bool = False) -> Path:
        """Write the index directory atomically: a failed save leaves any existing index there untouched.
        ``directory`` may hold an index (replaced); another kind of artefact only with ``overwrite``."""
        directory = Path(directory)
        live = np.flatnonzero(self._live)
        ids = pl.Series(
            ID_COLUMN, self._fid_to_ext[live] if self.id_dtype == pl.Int64 else self._fid_to_ext[live].tolist(), dtype=self.id_dtype
        )
        manifest = {
            "created": self.created,
            "updated": self.updated,
            "model_fingerprint": self.model_fingerprint,
            "dimension": self.dim,
            "count": len(self),
            "index_type": self.index_type,
            "physical_count": int(self._index.ntotal),
            "next_faiss_id": int(len(self._live)),
            "id_dtype": str(self.id_dtype),
            "params": self.params,
            "build_seconds": self.build_seconds,
            "recall_at_100": self.recall_at_100,
            "metadata": self.metadata,
        }
        write_index_files(directory, backend.to_cpu(self._index), ids, live, manifest, overwrite=overwrite)
        self.path = directory
        return directory

    @classmethod
    def load(
        cls,
        directory: Path | str,
        *,
        expected_model_fingerprint: str | None = None,
        device: str = "auto",
        verify: bool = True,
    ) -> "ItemIndex":
        """Open a saved index; refuse it (ManifestMismatchError) when built from another model.

        ``verify`` checks the files' fingerprints against the manifest (reads them once more).
        """
        directory = Path(directory)
        saved = read_index_files(directory, expected_model_fingerprint=expected_model_fingerprint, verify=verify)
        manifest = saved.manifest
        return cls(
            saved.index,
            index_type=saved.index_type,
            dim=saved.dim,
            id_dtype=saved.id_dtype,
            fid_to_ext=saved.fid_to_ext,
            live=saved.live,
            model_fingerprint=str(manifest.get("model_fingerprint")),
            metadata=dict(manifest.get("metadata") or {}),
            params=manifest.get("params") or {},
            created=manifest.get("created"),
            updated=manifest.get("updated"),
            build_seconds=manifest.get("build_seconds"),
            recall_at_100=manifest.get("recall_at_100"),
            device=device,
            path=directory,
        )

    def __repr__(self) -> str:
        return f"ItemIndex(type={self.index_type!r}, count={len(self):,}, dim={self.dim}, device={self.device!r})"


# ---------------------------------------------------------------------- saved-index editing (CLI and library)


def remove_items_from_saved_index(directory: Path | str, item_ids: Sequence[Any], *, out: Path | str | None = None) -> ItemIndex:
    """Load, remove ``item_ids`` (all must exist), save atomically to ``out`` (default: in place)."""
    index = ItemIndex.load(directory, device="cpu")
    index.remove_items(item_ids)
    index.save(out if out is not None else directory)
    return index


def add_items_to_saved_index(
    directory: Path | str,
    vectors: np.ndarray,
    item_ids: Sequence[Any] | np.ndarray | pl.Series,
    *,
    model_fingerprint: str,
    out: Path | str | None = None,
) -> tuple[ItemIndex, dict[str, int]]:
    """Add or replace items in a saved index with vectors from the model ``model_fingerprint``.

    For the ``recsys index add-items`` command: encode the items' text with the model the index was built
    from, then call this. Refuses (ManifestMismatchError) an index built from another model.
    """
    index = ItemIndex.load(directory, expected_model_fingerprint=model_fingerprint, device="cpu")
    counts = index.add_items(vectors, item_ids)
    index.save(out if out is not None else directory)
    return index, counts
