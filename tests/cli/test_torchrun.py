"""``torchrun --nproc_per_node 2 -m recsys train ...``: the real launcher, two CPU ranks over gloo.

What must hold under a launch: the command succeeds, the run is written once (by rank 0) with a valid manifest,
the output is printed once, the model loads and retrieves, and both ranks ended with bit-identical weights
(each rank prints its checksum with ``RECSYS_DEBUG_RANKS=1``; the saved weights must match them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys import distributed as D

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "RECSYS_DEBUG_RANKS": "1",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    # --standalone: a free local rendezvous port, so parallel test sessions never collide on 29500
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--nnodes", "1", "-m", "recsys", *args]
    return subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def rank_checksums(stderr: str, what: str) -> dict[int, str]:
    return {int(r): c for r, c in re.findall(rf"recsys rank (\d)/2: {what} weights ([0-9a-f]{{16}})", stderr)}


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """A tiny demo dataset and a retriever run trained by two torchrun ranks."""
    from recsys.data.demo import generate_demo

    root = tmp_path_factory.mktemp("torchrun")
    ds, src = generate_demo(users=60, items=40, seed=3, interactions_per_user=8)
    ds = ds.save(root / "ds", source=src)
    runs = root / "runs"
    runs.mkdir()
    proc = torchrun("train", "retriever", str(root / "ds"), "--out", str(runs / "run"), "--epochs", "3", "--max-steps", "4", "--batch-size", "16", "--json")
    return root, ds, proc


def test_two_ranks_train_the_retriever_and_rank_zero_writes_it_once(launched):
    root, ds, proc = launched
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout)  # one JSON document: rank 1 printed nothing
    run = root / "runs" / "run"
    assert summary["run"] == str(run)
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["run"]  # no temporary or second copy left behind
    assert proc.stderr.count("retriever epoch {'epoch': 1,") == 1  # progress printed by rank 0 only

    from recsys.retriever.run import load_run

    model, ids, manifest = load_run(run)
    metrics = manifest["metrics"]
    assert metrics["world_size"] == 2
    assert metrics["stop"] == "max_steps" and metrics["steps"] == 4  # 60 windows / 2 ranks / batch 16 = 2 steps an epoch
    assert metrics["epochs_run"] == 2
    assert manifest["fingerprint"] == summary["fingerprint"]

    # both ranks ended with the same weights, and those are what rank 0 saved
    ranks = rank_checksums(proc.stderr, "retriever")
    assert set(ranks) == {0, 1} and ranks[0] == ranks[1], ranks
    saved = torch.load(run / "weights.pt", map_location="cpu", weights_only=True)
    assert D.state_checksum(saved) == ranks[0] == metrics["replica_checksum"]

    # the run retrieves: a user's vector ranks the catalogue, history excluded, ids map back to the dataset
    assert len(ids) == model.n_items == 40
    items = model.encode_items()
    users = model.encode_users([np.array([0, 1, 2]), np.array([5])])
    assert np.allclose(np.linalg.norm(users, axis=1), 1, atol=1e-5)
    scores = users @ items.T
    scores[0, [0, 1, 2]] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :10]
    assert not set(top[0]) & {0, 1, 2}
    assert set(ids.to_numpy()[top[1]]) <= set(ds.items["item_id"].to_list())
