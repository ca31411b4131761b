"""The on-disk form of an ``ItemIndex``: a directory of ``index.faiss`` (``faiss.write_index`` of the CPU index),
``item_ids.parquet`` (``item_id``, ``faiss_id`` of the live items) and ``manifest.json`` (kind ``"index"``),
written atomically and read back with every check; plus what the CLI reads from a saved index without loading it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

from recsys.errors import ManifestMismatchError, RecsysError
from recsys.manifest import atomic_directory, fingerprint_file, fingerprint_json, read_manifest, utc_now, write_manifest

INDEX_KIND = "index"
INDEX_FILE = "index.faiss"
IDS_FILE = "item_ids.parquet"
ID_COLUMN = "item_id"
FAISS_ID_COLUMN = "faiss_id"
METRIC = "inner_product"


@dataclass
class SavedIndex:
    """What an index directory holds: the CPU FAISS index, its id map (faiss id -> external id, and which faiss ids
    are live) and the manifest."""

    index: Any
    index_type: str
    dim: int
    id_dtype: pl.DataType
    fid_to_ext: np.ndarray
    live: np.ndarray
    manifest: dict[str, Any]


def write_index_files(
    directory: Path,
    index: Any,
    item_ids: pl.Series,
    faiss_ids: np.ndarray,
    manifest: dict[str, Any],
    *,
    overwrite: bool = False,
) -> None:
    """Write the index directory atomically: a failed write leaves any existing index there untouched.

    ``manifest`` holds the index's own fields; the kind, save time, files and fingerprint are added here."""
    table = pl.DataFrame({ID_COLUMN: item_ids, FAISS_ID_COLUMN: pl.Series(FAISS_ID_COLUMN, faiss_ids, dtype=pl.Int64)})
    with atomic_directory(directory, INDEX_KIND, overwrite=overwrite) as tmp:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        table.write_parquet(tmp / IDS_FILE)
        files = {name: {"fingerprint": fingerprint_file(tmp / name), "bytes": (tmp / name).stat().st_size} for name in (INDEX_FILE, IDS_FILE)}
        write_manifest(
            tmp,
            {
                **manifest,
                "kind": INDEX_KIND,
                "saved": utc_now(),
                "fingerprint": fingerprint_json({"model": manifest["model_fingerprint"], "files": files}),
                "metric": METRIC,
                "normalized": True,
                "files": files,
            },
        )


def read_index_files(directory: Path, *, expected_model_fingerprint: str | None = None, verify: bool = True) -> SavedIndex:
    """Read an index directory; refuse it (ManifestMismatchError) when built from another model, and name the file
    that is missing, corrupted (``verify`` checks the fingerprints) or inconsistent with the manifest."""
    if not directory.is_dir():
        raise RecsysError(f"index directory {directory} does not exist")
    manifest = read_manifest(directory, kind=INDEX_KIND)
    check_model_fingerprint(manifest, expected_model_fingerprint, directory)
    for name in (INDEX_FILE, IDS_FILE):
        if not (directory / name).is_file():
            raise RecsysError(f"index {directory} is incomplete: {directory / name} is missing")
    for name in (INDEX_FILE, IDS_FILE):
        path = directory / name
        recorded = manifest.get("files", {}).get(name, {})
        if verify and recorded and fingerprint_file(path) != recorded.get("fingerprint"):
            raise RecsysError(f"{path} is corrupted: its content does not match the fingerprint in {directory / 'manifest.json'}")
    try:
        index = faiss.read_index(str(directory / INDEX_FILE))
    except Exception as exc:
        raise RecsysError(f"{directory / INDEX_FILE} is not a readable FAISS index: {exc}") from exc
    try:
        table = pl.read_parquet(directory / IDS_FILE)
    except Exception as exc:
        raise RecsysError(f"{directory / IDS_FILE} is not a readable parquet file: {exc}") from exc
    if list(table.columns) != [ID_COLUMN, FAISS_ID_COLUMN] or table.schema[ID_COLUMN] not in (pl.Int64, pl.String):
        raise RecsysError(f"{directory / IDS_FILE} has columns {table.schema}, expected {ID_COLUMN} (Int64 or String) and {FAISS_ID_COLUMN}")
    index_type = manifest.get("index_type")
    dim = int(manifest.get("dimension", -1))
    if index_type not in ("flat", "ivf", "hnsw") or index.d != dim:
        raise RecsysError(f"{directory / INDEX_FILE} (dimension {index.d}) does not match its manifest (type {index_type!r}, dimension {dim})")
    fids = table[FAISS_ID_COLUMN].to_numpy().astype(np.int64, copy=False)
    size = max(int(manifest.get("next_faiss_id", 0)), int(fids.max()) + 1 if fids.size else 0)
    id_dtype = table.schema[ID_COLUMN]
    fid_to_ext = np.zeros(size, dtype=np.int64) if id_dtype == pl.Int64 else np.full(size, None, dtype=object)
    fid_to_ext[fids] = table[ID_COLUMN].to_numpy() if id_dtype == pl.Int64 else np.asarray(table[ID_COLUMN].to_list(), dtype=object)
    live = np.zeros(size, dtype=bool)
    live[fids] = True
    expected_physical = int(manifest.get("physical_count", len(fids)))
    if index.ntotal != expected_physical or len(fids) != int(manifest.get("count", len(fids))):
        raise RecsysError(
            f"index {directory} is inconsistent: {INDEX_FILE} holds {index.ntotal:,} vectors and {IDS_FILE} "
            f"{len(fids):,} ids, the manifest says {expected_physical:,} and {manifest.get('count')}"
        )
    return SavedIndex(index, index_type, dim, id_dtype, fid_to_ext, live, manifest)


def check_model_fingerprint(manifest: dict[str, Any], expected: str | None, directory: Path | str) -> None:
    if expected is None:
        return
    actual = manifest.get("model_fingerprint")
    if actual != expected:
        raise ManifestMismatchError(
            f"index {directory} was built from model fingerprint {actual}, but the model in use has fingerprint "
            f"{expected}: its vectors are not comparable; rebuild the index from this model"
        )


def read_index_info(directory: Path | str) -> dict[str, Any]:
    """``info()`` of a saved index from its manifest alone (does not read the FAISS file)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RecsysError(f"index directory {directory} does not exist")
    m = read_manifest(directory, kind=INDEX_KIND)
    out = {
        "count": m.get("count"),
        "dim": m.get("dimension"),
        "type": m.get("index_type"),
        "metric": m.get("metric"),
        "model_fingerprint": m.get("model_fingerprint"),
        "created": m.get("created"),
        "saved": m.get("saved"),
        "updated": m.get("updated"),
        "build_seconds": m.get("build_seconds"),
        "id_dtype": m.get("id_dtype"),
        "params": m.get("params"),
        "fingerprint": m.get("fingerprint"),
    }
    if m.get("index_type") != "flat":
        out["recall_at_100"] = m.get("recall_at_100")
    if m.get("index_type") == "hnsw":
        out["tombstones"] = int(m.get("physical_count", 0)) - int(m.get("count", 0))
    meta = m.get("metadata") or {}
    if meta:
        out["metadata"] = meta
    out["path"] = str(directory)
    return out


def parse_item_ids(texts: Iterable[str], id_dtype: pl.DataType | str) -> list[int] | list[str]:
    """Turn command-line id strings into the index's id type (Int64 ids must be integers)."""
    values = [t.strip() for t in texts if t.strip()]
    if str(id_dtype) == str(pl.Int64):
        out = []
        for v in values:
            try:
                out.append(int(v))
            except ValueError:
                raise RecsysError(f"item id {v!r} is not an integer, but this index's item ids are integers") from None
        return out
    return values
