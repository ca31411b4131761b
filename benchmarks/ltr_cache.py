"""Fitted-source cache for the learned-ranker benchmarks: a ``source_factory`` for ``LearnedRanker`` that pickles
every fitted candidate source under a directory, keyed by its spec and the fingerprint of the data it was fitted on,
so repeated experiments (feature or LightGBM changes) do not refit SASRec or the retriever.

Used by benchmarks/ltr_quality.py and benchmarks/candidate_sources.py; not part of the library (a cache keyed by
content must never be shared by a served model)."""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys.data.types import Cases, TrainData
from recsys.ltr.sources import SourceSpec, make_source
from recsys.manifest import fingerprint_bytes, fingerprint_json


def data_key(data: TrainData) -> str:
    return fingerprint_bytes(data.sequences.indptr.astype(np.int64).tobytes(), data.sequences.items.astype(np.int64).tobytes())


class CachedSource:
    """Delegates to a source; ``fit`` loads a pickled fitted copy when one exists for (spec, overrides, data)."""

    def __init__(self, cache: Path, spec: SourceSpec, overrides: dict[str, Any]) -> None:
        self.cache, self.spec, self.overrides = Path(cache), spec, dict(overrides)
        self.inner = make_source(spec, overrides)
        self.name = self.inner.name
        self.fit_seconds = 0.0
        self.cpu_seconds: float | None = None  # process CPU seconds of the fit (all threads); None in older cache files
        self.loaded = False  # fitted in an earlier run, loaded from the cache

    def fit(self, data: TrainData, validation: Cases | None = None) -> "CachedSource":
        vkey = data_key(TrainData(validation.history, data.n_items, data.items, data.events)) if validation is not None else "none"
        key = fingerprint_json([self.spec.to_dict(), self.overrides, data_key(data), vkey])
        path = self.cache / f"{self.spec.key}-{key}.pkl"
        if path.is_file():
            with open(path, "rb") as f:
                self.inner, self.fit_seconds, *cpu = pickle.load(f)
            self.cpu_seconds, self.loaded = (cpu[0] if cpu else None), True
            return self
        t, c = time.perf_counter(), time.process_time()
        self.inner.fit(data, validation)
        self.fit_seconds, self.cpu_seconds = time.perf_counter() - t, time.process_time() - c
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                pickle.dump((self.inner, self.fit_seconds, self.cpu_seconds), f, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as e:  # a fitted model that does not pickle: not cached
            tmp.unlink(missing_ok=True)
            print(f"ltr_cache: {self.spec.key} not cached ({e})", file=sys.stderr)
            return self
        tmp.replace(path)
        return self

    def score(self, cases: Cases) -> np.ndarray:
        return self.inner.score(cases)

    def params_without_validation(self) -> dict[str, Any]:
        return self.inner.params_without_validation()

    def save(self, directory: Path) -> None:
        self.inner.save(directory)


def movielens_dataset(path: Path | None) -> Path:
    """``path``, else MovieLens 100K imported from ../shared/data into a temporary directory."""
    if path is not None:
        return path
    import tempfile

    from recsys.data.importers.movielens import import_movielens

    ds, source = import_movielens(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "movielens-100k")
    return ds.save(Path(tempfile.mkdtemp()) / "ml100k", source=source).path


def caching_factory(cache: Path):
    return lambda spec, overrides: CachedSource(cache, spec, overrides)
