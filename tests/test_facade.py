"""The public façade: ``from recsys import ...`` gives the library's entry points, and importing ``recsys`` (what
``recsys --help`` does) loads neither torch nor FAISS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import recsys

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env, cwd=ROOT).stdout


def test_import_recsys_and_the_cli_do_not_load_torch():
    code = (
        "import sys, json, recsys, recsys.cli\n"
        "print(json.dumps(sorted(m for m in ('torch', 'faiss', 'sentence_transformers', 'transformers') if m in sys.modules)))"
    )
    assert json.loads(_run(code)) == []


def test_every_facade_name_resolves_to_its_defining_object():
    from recsys.batch import run_batch
    from recsys.data.dataset import Dataset
    from recsys.data.demo import generate_demo
    from recsys.evaluation.protocol import evaluate
    from recsys.index import ItemIndex
    from recsys.ltr.ranker import LearnedRanker
    from recsys.retriever import TwoTowerRetriever
    from recsys.service import RetrievalService

    expected = {
        "Dataset": Dataset, "TwoTowerRetriever": TwoTowerRetriever, "LearnedRanker": LearnedRanker, "ItemIndex": ItemIndex,
        "RetrievalService": RetrievalService, "evaluate": evaluate, "run_batch": run_batch, "generate_demo": generate_demo,
    }
    assert set(expected) | {"__version__"} == set(recsys.__all__)
    for name, obj in expected.items():
        assert getattr(recsys, name) is obj, name
    assert "RetrievalService" in dir(recsys)


def test_an_unknown_name_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        recsys.Nope  # noqa: B018
    with pytest.raises(ImportError):
        exec("from recsys import Nope")
