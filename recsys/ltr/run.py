"""A ranking run that serves: ``recsys train ranker DATASET --retriever RUN --out DIR``.

The learned ranker's sources are the served two-tower run (its serving fold *is* that run; the label fold retrains a
copy on the label fold's data with the run's settings and best epoch count, so the no-leak scheme of
``recsys.ltr.ranker`` holds) plus the cheap default sources (EASE, co-occurrence, popularity). The data are what the retriever run was
trained on: the dataset's interactions minus each user's last one, which early-stopped the run and early-stops the
ranker here. The run directory's manifest (kind ``ltr``) records the fingerprints of the dataset, the retriever run
and every source; ``recsys.service.ranking.RankingStage.open`` refuses it next to another retriever or dataset.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from recsys.data.dataset import Dataset
from recsys.errors import ManifestMismatchError
from recsys.ltr.ranker import DEFAULT_SOURCES, KIND, LearnedRanker, LTRSettings
from recsys.ltr.sources import CandidateSource, ServedRetrieverSource, SourceSpec, make_source
from recsys.manifest import check_replaceable

#: the served retriever's candidates per request (the index's top ``depth``)
RETRIEVER_DEPTH = 100


def ranking_settings(settings: LTRSettings | dict[str, Any] | None = None, *, depth: int = RETRIEVER_DEPTH) -> LTRSettings:
    """``settings`` with the served retriever as the first source (added at ``depth`` unless one is configured)."""
    st = settings if isinstance(settings, LTRSettings) else LTRSettings.from_dict(settings)
    if not any(s.get("kind") == "retriever" for s in st.sources):
        st = LTRSettings.from_dict({**_fields(st), "sources": [{"kind": "retriever", "depth": depth}, *st.sources]})
    return st


def _fields(st: LTRSettings) -> dict[str, Any]:
    return {k: getattr(st, k) for k in st.__dataclass_fields__}


def served_retriever_factory(run_dir: Path | str | None = None, *, model: Any = None) -> Callable[[SourceSpec, dict[str, Any]], CandidateSource]:
    """Source factory: the first retriever source asked for (the serving fold) is the saved run (or the fitted
    ``model``); later ones (the label fold) are fresh retrievers trained with its settings; other kinds as usual."""
    served: set[str] = set()

    def factory(spec: SourceSpec, overrides: dict[str, Any]) -> CandidateSource:
        if spec.kind == "retriever" and spec.key not in served:
            served.add(spec.key)
            return ServedRetrieverSource(run_dir, spec.key, model=model)
        return make_source(spec, overrides)

    return factory


def train_ranking_run(
    dataset: Dataset,
    retriever_run: Path | str,
    out: Path | str,
    settings: LTRSettings | dict[str, Any] | None = None,
    *,
    depth: int = RETRIEVER_DEPTH,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit a ``LearnedRanker`` over ``retriever_run`` + the default sources on ``dataset`` and save it to ``out``."""
    from recsys.evaluation.split import encode, leave_one_out
    from recsys.retriever.run import load_run

    check_replaceable(out, KIND, overwrite=overwrite)  # before training, not after it
    _, _, run_manifest = load_run(retriever_run)
    trained_on = (run_manifest.get("dataset") or {}).get("fingerprint")
    if trained_on not in (None, dataset.fingerprint):
        raise ManifestMismatchError(
            f"retriever run {retriever_run} was trained on dataset {trained_on}, but {dataset.path} is {dataset.fingerprint}: "
            f"train the ranker on the retriever's dataset (or retrain the retriever with `recsys train retriever {dataset.path}`)"
        )
    st = ranking_settings(settings, depth=depth)
    start = time.perf_counter()
    enc = encode(dataset)
    split = leave_one_out(enc)
    ranker = LearnedRanker(st, source_factory=served_retriever_factory(retriever_run)).fit(split.train_full, split.test, progress=progress)
    ranker.tables_.extra["user_ids"] = list(enc.user_ids)
    ranker.built_on_ = {
        "retriever": {"run": str(retriever_run), "fingerprint": run_manifest["fingerprint"]},
        "dataset": {"path": str(dataset.path) if dataset.path else None, "fingerprint": dataset.fingerprint},
    }
    ranker.save(out, overwrite=overwrite)
    manifest = LearnedRanker.load(out).manifest
    return {
        "out": str(out), "fingerprint": manifest["fingerprint"], "retriever_fingerprint": run_manifest["fingerprint"],
        "dataset_fingerprint": dataset.fingerprint, "sources": [s.to_dict() for s in ranker.specs],
        "validation_ndcg_at_10_candidates": ranker.validation_ndcg_, "best_iteration": ranker.best_iteration_,
        "fit_seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip


__all__ = ["DEFAULT_SOURCES", "RETRIEVER_DEPTH", "ranking_settings", "served_retriever_factory", "train_ranking_run"]
