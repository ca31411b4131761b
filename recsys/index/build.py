"""Glue between a retriever run, a dataset and an ``ItemIndex``: what ``recsys build-index`` and
``recsys index add-items`` do.

Catalogue items reuse the run's stored text embeddings (plus their learned ID embedding); new items and items
whose text changed are embedded from their text alone, which is what makes a new item retrievable at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.errors import DataValidationError, RecsysError
from recsys.index import INDEX_KIND, ItemIndex
from recsys.manifest import check_replaceable
from recsys.retriever.model import TwoTowerRetriever
from recsys.text import item_text_fields, with_item_fields


def encode_catalogue(model: TwoTowerRetriever, catalogue_ids: pl.Series, items: pl.DataFrame) -> np.ndarray:
    """Vectors for ``items`` rows: stored catalogue vectors where id and text are unchanged, text otherwise
    (embedded the way ``model.use`` chose)."""
    return _encode(model, catalogue_ids, items)[0]


def _encode(model: TwoTowerRetriever, catalogue_ids: pl.Series, items: pl.DataFrame) -> tuple[np.ndarray, int]:
    """(vectors, how many rows were embedded from text)."""
    if items.height == 0:
        return np.zeros((0, model.encode_items().shape[1]), dtype=np.float32), 0
    lookup = pl.DataFrame({S.ITEM_ID: catalogue_ids.cast(items.schema[S.ITEM_ID], strict=False), "__cat": np.arange(len(catalogue_ids))})
    idx = items.select(S.ITEM_ID).join(lookup, on=S.ITEM_ID, how="left", maintain_order="left")["__cat"].fill_null(-1).to_numpy()
    texts = model.render_items(items)
    stored = np.asarray(model.item_texts, dtype=object)
    unchanged = (idx >= 0) & (stored[np.maximum(idx, 0)] == np.asarray(texts, dtype=object))
    catalogue_vectors = model.encode_items()
    out = np.zeros((items.height, catalogue_vectors.shape[1]), dtype=np.float32)
    out[unchanged] = catalogue_vectors[idx[unchanged]]
    todo = np.flatnonzero(~unchanged)
    if len(todo):
        out[todo] = model.encode_items([texts[i] for i in todo], ids=idx[todo])
    return out, len(todo)


def build_index(
    run_dir: Path | str,
    dataset: Dataset,
    out: Path | str,
    *,
    index_type: str = "auto",
    device: str = "auto",
    progress: bool = True,
    inference: str = "fp32",
    overwrite: bool = False,
    item_fields: list[str] | None = None,
) -> ItemIndex:
    """Encode every item of ``dataset`` with the run's item tower and save a FAISS index to ``out``.

    ``inference`` (``fp32``, ``onnx``, ``onnx-int8``) is how the text of items the run does not store (new items,
    changed text) is embedded; it is recorded in the index manifest's metadata with how many items took that path.
    ``out`` is checked before any encoding (``check_replaceable``; ``overwrite`` replaces another kind of artefact).
    """
    from recsys.retriever.run import load_run

    check_replaceable(out, INDEX_KIND, overwrite=overwrite)

    model, catalogue_ids, manifest = load_run(run_dir)
    model.use(inference)
    model.args.templates = with_item_fields(model.args.templates, item_fields, dataset.items)
    vectors, n_text = _encode(model, catalogue_ids, dataset.items)
    meta = {
        "run": str(Path(run_dir).resolve()),
        "dataset": str(dataset.path.resolve()) if dataset.path else None,
        "dataset_fingerprint": dataset.fingerprint,
        "base_model": manifest.get("base_model"),
        "inference": inference,
        "text_encoded_items": n_text,
        # the columns this index's item text came from, beside the run's: a difference shows in text_encoded_items
        "item_text_fields": item_text_fields(dataset.items, model.args.templates),
        "run_item_text_fields": (manifest.get("item_text") or {}).get("fields"),
    }
    index = ItemIndex.build(
        vectors, dataset.items[S.ITEM_ID], index_type=index_type, model_fingerprint=manifest["fingerprint"],
        metadata=meta, device=device, progress=progress,
    )
    index.save(out, overwrite=overwrite)
    return index


def read_items_file(path: Path | str) -> pl.DataFrame:
    """An items table (CSV or parquet) with ``item_id`` and text fields, checked like a dataset's items."""
    from recsys.data.validate import check_columns, check_ids

    path = Path(path)
    if not path.exists():
        raise RecsysError(f"items file {path} does not exist")
    try:
        frame = pl.read_parquet(path) if path.suffix.lower() == ".parquet" else pl.read_csv(path, infer_schema_length=10_000)
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise DataValidationError(f"cannot read: {str(exc).splitlines()[0]}", file=str(path)) from None
    check_columns(frame, "items", str(path))
    check_ids(frame, S.ITEM_ID, str(path), unique=True)
    return frame


def add_items(index_dir: Path | str, items: pl.DataFrame, *, run_dir: Path | str | None = None, inference: str = "fp32") -> dict[str, Any]:
    """Add new items and re-encode changed ones (replaced in place) without a rebuild; save atomically.
    ``inference`` embeds their text (``fp32``, ``onnx``, ``onnx-int8``); recorded as ``add_items_inference``."""
    from recsys.retriever.run import load_run

    current = ItemIndex.load(index_dir, device="cpu")
    run_dir = run_dir or current.metadata.get("run")
    if not run_dir:
        raise RecsysError(f"index {index_dir} does not record its retriever run; pass --run")
    model, catalogue_ids, manifest = load_run(run_dir)
    if manifest["fingerprint"] != current.model_fingerprint:
        from recsys.errors import ManifestMismatchError

        raise ManifestMismatchError(
            f"index {index_dir} was built by model {current.model_fingerprint}, but run {run_dir} is model {manifest['fingerprint']}"
        )
    id_dtype = pl.Int64 if str(current.id_dtype).startswith("Int") else pl.String
    try:
        items = items.with_columns(pl.col(S.ITEM_ID).cast(id_dtype))
    except pl.exceptions.InvalidOperationError:
        raise DataValidationError(f"item ids must be {id_dtype} like the index's", column=S.ITEM_ID) from None
    model.use(inference)
    vectors = encode_catalogue(model, catalogue_ids, items)
    counts = current.add_items(vectors, items[S.ITEM_ID])
    current.metadata["add_items_inference"] = inference
    # titles of items the dataset does not know, so retrieve can print them (kept in the index manifest)
    titles = items[S.ITEM_ID if "title" not in items.columns else "title"].cast(pl.String).to_list()
    added = dict(current.metadata.get("added_titles", {}))
    added.update({str(i): t for i, t in zip(items[S.ITEM_ID].to_list(), titles)})
    current.metadata["added_titles"] = added
    # and their text fields, so the reranker can read items the dataset does not know
    fields = dict(current.metadata.get("added_items", {}))
    for row in json.loads(items.write_json()):
        fields[str(row.pop(S.ITEM_ID))] = {k: v for k, v in row.items() if v is not None}
    current.metadata["added_items"] = fields
    current.save(index_dir)
    return {"index": str(index_dir), **counts, "count": len(current), "inference": inference}
