"""Reranker runs: ``recsys train reranker`` (fit, evaluate, pick the fusion weight, save atomically) and loading a
saved run with its manifest and fingerprint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import RecsysError
from recsys.manifest import check_replaceable, fingerprint_bytes, fingerprint_file, read_manifest
from recsys.reranker.config import RerankerTrainingArguments
from recsys.reranker.evaluation import choose_retrieval_weight, evaluate_reranker, rating_metrics
from recsys.reranker.model import MANIFEST_KIND, RANKER_DIR, RATING_DIR, Reranker
from recsys.reranker.training import Progress, fit_reranker
from recsys.text import item_text_summary


def run_fingerprint(run_dir: Path | str) -> str:
    """Fingerprint of what determines the run's scores: the settings and every weight/tokenizer file."""
    run_dir = Path(run_dir)
    files = [run_dir / "config.json", *sorted(p for d in (RANKER_DIR, RATING_DIR) for p in (run_dir / d).rglob("*") if p.is_file())]
    return fingerprint_bytes(*(f"{p.relative_to(run_dir)}:{fingerprint_file(p)}".encode() for p in files if p.exists()))


def load_run(run_dir: Path | str) -> tuple[Reranker, dict[str, Any]]:
    """(reranker, manifest) of a run written by ``recsys train reranker``; ``manifest["fingerprint"]`` is the run's."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecsysError(f"reranker run {run_dir} does not exist (train one with `recsys train reranker`)")
    manifest = read_manifest(run_dir, MANIFEST_KIND)
    manifest["fingerprint"] = run_fingerprint(run_dir)
    return Reranker.load(run_dir), manifest


def train_run(
    dataset: Any,
    retriever_run: Path | str,
    out: Path | str,
    args: Any = None,
    *,
    progress: Progress | None = None,
    eval_cases: int | None = 300,
) -> dict[str, Any]:
    """``recsys train reranker``: fit on the protocol's training positions (every user's last two interactions
    held out), hard negatives from the retriever run; report on validation and test; save to ``out``.

    Under a distributed launch every rank trains, rank 0 alone evaluates and writes ``out`` while the others wait,
    and every rank returns rank 0's summary."""
    from recsys import distributed as D  # torch: only when training
    from recsys.evaluation.split import encode, leave_one_out
    from recsys.retriever.run import load_run

    args = args or RerankerTrainingArguments()
    check_replaceable(out, MANIFEST_KIND)  # before training, not after it
    D.init_if_launched()  # before any model loads: "cuda" must mean this rank's GPU
    retriever, catalogue_ids, rmanifest = load_run(retriever_run)
    enc = encode(dataset)
    split = leave_one_out(enc)
    if len(catalogue_ids) != enc.n_items or not np.array_equal(catalogue_ids.to_numpy(), enc.item_ids):
        raise RecsysError(f"retriever run {retriever_run} was trained on another catalogue than {dataset.path or dataset.name}")
    reranker = Reranker(args)
    fit_reranker(reranker, split.train, retriever, None, progress=progress)
    summary = None
    if D.is_main():
        summary = _evaluate_and_save(reranker, dataset, split, retriever, rmanifest, retriever_run, out, eval_cases, progress)
    D.barrier()
    return D.broadcast_object(summary)


def _evaluate_and_save(
    reranker: Reranker, dataset: Any, split: Any, retriever: Any, rmanifest: dict[str, Any], retriever_run: Path | str, out: Path | str,
    eval_cases: int | None, progress: Progress | None = None,
) -> dict[str, Any]:
    """The post-training report, the fusion weight and the atomic save of ``train_run`` (rank 0's job under a
    distributed launch)."""
    if reranker.args.retrieval_weight is None:
        fusion = choose_retrieval_weight(reranker, split.train, split.validation, retriever, seed=reranker.args.seed)
        reranker.metrics["fusion"] = fusion
        if progress:
            progress(f"reranker: retrieval weight {fusion['retrieval_weight']:g} (validation NDCG@10 in the top {fusion['fusion_depth']}: {fusion['fusion_NDCG@10']})")
    val = evaluate_reranker(reranker, split.train, split.validation, retriever, max_cases=eval_cases)
    test = evaluate_reranker(reranker, split.train_full, split.test, retriever, max_cases=eval_cases)
    reranker.metrics.update({f"val_{k}": v for k, v in val.items()})
    reranker.metrics.update({f"test_{k}": v for k, v in test.items()})
    if reranker.rating_model is not None:
        reranker.metrics.update(rating_metrics(reranker, split.train_full, split.test, max_cases=eval_cases))
    reranker.retriever_fingerprint = rmanifest["fingerprint"]
    extra = {
        "dataset": {"path": str(dataset.path) if dataset.path else None, "fingerprint": dataset.fingerprint, "name": dataset.name},
        "retriever_run": str(Path(retriever_run).resolve()),
        "item_text": item_text_summary(dataset.items, reranker.args.templates),
    }
    reranker.save(out, extra_manifest=extra)
    return {"run": str(out), "metrics": reranker.metrics, "retrieval_weight": reranker.retrieval_weight, "dataset": extra["dataset"], "retriever_run": extra["retriever_run"], "retriever_fingerprint": reranker.retriever_fingerprint}


__all__ = ["load_run", "run_fingerprint", "train_run"]
