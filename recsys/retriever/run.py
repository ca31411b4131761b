"""A retriever *run*: a trained ``TwoTowerRetriever`` saved with the catalogue it was trained on.

``train_run`` is what ``recsys train retriever`` calls: production training on a dataset directory (every user's
last interaction held out for early stopping), saved with ``catalogue.parquet`` (the item ids behind the model's
catalogue indices) so an index, a service or a batch job can map ids to the model's items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import polars as pl

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.errors import RecsysError
from recsys.manifest import check_replaceable, fingerprint_bytes, fingerprint_file, read_manifest, write_parquet_atomic
from recsys.retriever.config import RetrieverTrainingArguments
from recsys.retriever.model import MANIFEST_KIND, TwoTowerRetriever
from recsys.text import item_text_summary

CATALOGUE_FILE = "catalogue.parquet"
FINGERPRINTED_FILES = ("weights.pt", "config.json", "state.json")


def run_fingerprint(run_dir: Path | str) -> str:
    """Fingerprint of what determines the run's vectors (weights, settings, catalogue text)."""
    run_dir = Path(run_dir)
    missing = [f for f in FINGERPRINTED_FILES if not (run_dir / f).exists()]
    if missing:
        raise RecsysError(f"{run_dir} is not a complete retriever run: missing {', '.join(missing)}")
    return fingerprint_bytes(*(fingerprint_file(run_dir / f).encode() for f in FINGERPRINTED_FILES))


def train_run(
    dataset: Dataset,
    out: Path | str,
    args: RetrieverTrainingArguments | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train on ``dataset`` (all but each user's last interaction; the last one drives early stopping); save to ``out``.

    Under a distributed launch every rank trains (see ``fit_retriever``), only rank 0 writes ``out`` while the others
    wait, and every rank returns rank 0's summary.
    """
    from recsys import distributed as D
    from recsys.evaluation.split import encode, leave_one_out

    args = args or RetrieverTrainingArguments()
    check_replaceable(out, MANIFEST_KIND)  # before training, not after it
    D.init_if_launched()
    enc = encode(dataset)
    split = leave_one_out(enc)
    model = TwoTowerRetriever(args).fit(split.train_full, split.test, progress=progress)
    extra = {
        "dataset": {"path": str(dataset.path) if dataset.path else None, "fingerprint": dataset.fingerprint, "name": dataset.name},
        "catalogue_items": enc.n_items,
        "item_text": item_text_summary(dataset.items, args.templates, model.item_texts),
    }
    out = Path(out)
    summary = None
    if D.is_main():
        model.save(out, extra_manifest=extra)
        # the catalogue ids travel with the weights (written after the atomic save: a missing file is caught on load)
        write_parquet_atomic(out / CATALOGUE_FILE, pl.DataFrame({S.ITEM_ID: enc.item_ids}))
        manifest = read_manifest(out, MANIFEST_KIND)
        summary = {"run": str(out), "fingerprint": run_fingerprint(out), "metrics": manifest.get("metrics", {}), "dataset": extra["dataset"]}
    D.barrier()
    return D.broadcast_object(summary)


def load_run(run_dir: Path | str) -> tuple[TwoTowerRetriever, pl.Series, dict[str, Any]]:
    """(model, catalogue item ids, manifest)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecsysError(f"retriever run {run_dir} does not exist (train one with `recsys train retriever`)")
    manifest = read_manifest(run_dir, MANIFEST_KIND)
    if not (run_dir / CATALOGUE_FILE).exists():
        raise RecsysError(f"{run_dir} has no {CATALOGUE_FILE}: it was not written by `recsys train retriever`")
    model = TwoTowerRetriever.load(run_dir)
    ids = pl.read_parquet(run_dir / CATALOGUE_FILE)[S.ITEM_ID]
    if len(ids) != model.n_items:
        raise RecsysError(f"{run_dir}: {CATALOGUE_FILE} lists {len(ids)} items but the model has {model.n_items}")
    manifest["fingerprint"] = run_fingerprint(run_dir)
    return model, ids, manifest
