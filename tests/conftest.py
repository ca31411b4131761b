"""Shared fixtures.

``movielens_100k_dir`` is the one place that resolves the real MovieLens 100K data: ``../shared/data/movielens-100k``
beside the project root, or ``$RECSYS_SHARED_DATA/movielens-100k`` when that variable (pointing at the shared
``data/`` folder) is set. Tests that use it are skipped with a clear reason when the data is absent. The data's
licence forbids redistribution: never copy it into the project or into test artefacts that are kept.

``synthetic_ml100k_dir`` writes a tiny made-up directory in the ML-100K format for tests that must not depend on
(or copy) the real data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_ENV = "RECSYS_SHARED_DATA"


def shared_data_dir() -> Path:
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def movielens_100k_dir() -> Path:
    path = shared_data_dir() / "movielens-100k"
    if not (path / "u.data").is_file():
        pytest.skip(
            f"MovieLens 100K not found at {path} (expected ../shared/data/movielens-100k beside the project root, "
            f"or set {SHARED_DATA_ENV} to the shared data/ folder)"
        )
    return path


@pytest.fixture(scope="session")
def movielens_100k_dataset(movielens_100k_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real MovieLens 100K imported once per session into a temporary dataset directory."""
    from recsys.data.dataset import Dataset
    from recsys.data.importers.movielens import import_movielens

    ds, source = import_movielens(movielens_100k_dir)
    saved = ds.save(tmp_path_factory.mktemp("ml100k") / "movielens-100k", source=source)
    return Dataset.load(saved.path)


SYNTHETIC_GENRES = ["unknown", "Action", "Comedy", "Drama"]


def write_synthetic_ml100k(directory: Path) -> Path:
    """A 5-user, 4-item, 10-rating directory in the ML-100K format (made-up content)."""
    directory.mkdir(parents=True, exist_ok=True)
    ratings = [
        (3, 2, 4, 880000005), (1, 1, 5, 880000000), (1, 2, 3, 880000001), (2, 3, 2, 880000002), (4, 4, 1, 880000003),
        (5, 1, 4, 880000004), (2, 1, 5, 880000006), (3, 3, 3, 880000007), (4, 2, 2, 880000008), (5, 4, 5, 880000009),
    ]
    (directory / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    items = [
        (1, "Invented Film, The (1999)", "01-Jan-1999", [0, 1, 0, 0]),
        (2, "Another Story (2001)", "01-Jan-2001", [0, 0, 1, 1]),
        (3, "Caf\xe9 Days, A (1987)", "01-Jan-1987", [0, 0, 0, 1]),
        (4, "Untitled", "", [1, 0, 0, 0]),
    ]
    (directory / "u.item").write_bytes(
        "".join(
            f"{i}|{title}|{date}||http://example.invalid/{i}|{'|'.join(map(str, flags))}\n" for i, title, date, flags in items
        ).encode("latin-1")
    )
    users = [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"), (3, 23, "M", "writer", "32067"),
             (4, 24, "M", "technician", "43537"), (5, 33, "F", "other", "15213")]
    (directory / "u.user").write_text("".join("|".join(map(str, u)) + "\n" for u in users))
    (directory / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(SYNTHETIC_GENRES)) + "\n")
    return directory


@pytest.fixture
def synthetic_ml100k_dir(tmp_path: Path) -> Path:
    return write_synthetic_ml100k(tmp_path / "ml-100k")


@pytest.fixture(scope="session")
def retrieval_stack(tmp_path_factory: pytest.TempPathFactory):
    """A small demo dataset, a briefly trained retriever run and its FAISS index (real MiniLM, real FAISS).

    Returns (root, dataset) with ``root/ds``, ``root/run`` and ``root/index``. Tests must not modify them (copy first).
    """
    from recsys.data.demo import generate_demo
    from recsys.index.build import build_index
    from recsys.retriever.config import RetrieverTrainingArguments
    from recsys.retriever.run import train_run

    root = tmp_path_factory.mktemp("retrieval-stack")
    ds, src = generate_demo(users=150, items=120, seed=3, interactions_per_user=12)
    ds = ds.save(root / "ds", source=src)
    train_run(ds, root / "run", RetrieverTrainingArguments(epochs=2, max_steps=15, time_budget_s=60, seed=0))
    build_index(root / "run", ds, root / "index", progress=False)
    return root, ds


@pytest.fixture(scope="session")
def ranking_stack(retrieval_stack):
    """``retrieval_stack`` plus ``root/rank``: a ranking run (``recsys train ranker``) over its retriever (depth 30)
    and EASE, co-occurrence and popularity. Returns (root, dataset). Tests must not modify it (copy first)."""
    from recsys.ltr.run import train_ranking_run

    root, ds = retrieval_stack
    if not (root / "rank").exists():
        sources = [{"kind": "retriever", "depth": 30}, {"kind": "ease", "depth": 30}, {"kind": "cooccurrence", "depth": 30}, {"kind": "popularity", "depth": 20}]
        train_ranking_run(ds, root / "run", root / "rank", {"sources": sources})
    return root, ds


@pytest.fixture(scope="session", autouse=True)
def _isolated_onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    """Exported ONNX models go to a per-session temporary cache, never the user's ``~/.cache/recsys``."""
    old = os.environ.get("RECSYS_CACHE")
    os.environ["RECSYS_CACHE"] = str(tmp_path_factory.mktemp("recsys-cache"))
    yield
    if old is None:
        os.environ.pop("RECSYS_CACHE", None)
    else:
        os.environ["RECSYS_CACHE"] = old
