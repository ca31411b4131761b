"""``recsys.distributed``: the launcher environment, window sharding, replica checks; real gloo process groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys import distributed as D


@pytest.fixture
def plain(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "RECSYS_DEBUG_RANKS"):
        monkeypatch.delenv(name, raising=False)


def test_plain_process_is_rank_zero_of_one_and_helpers_are_identities(plain):
    assert D.world() == (0, 1, 0)
    assert D.is_main() and not D.is_launched() and not D.is_distributed()
    assert D.init_if_launched() is False
    assert D.device() == torch.device("cpu")
    obj = {"ndcg": 0.25}
    assert D.broadcast_object(obj) is obj
    assert D.broadcast_flag(True) is True and D.broadcast_flag(False) is False
    assert D.all_reduce_mean(1.5) == 1.5
    assert D.all_gather_object(3) == [3]
    assert D.check_replicas({"w": torch.ones(2)}) is None
    D.barrier()


def test_world_reads_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert D.world() == (3, 4, 1)
    assert D.is_launched() and not D.is_main()


@pytest.mark.parametrize("n", [0, 1, 5, 64, 65, 67])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shard_order_gives_equal_disjoint_shares_covering_every_window(n, world_size):
    order = np.random.default_rng(0).permutation(n)
    shards = [D.shard_order(order, r, world_size) for r in range(world_size)]
    if world_size == 1:
        assert shards[0] is order
        return
    per_rank = -(-n // world_size)
    assert [len(s) for s in shards] == [per_rank] * world_size  # same batch count on every rank: no hang
    together = np.concatenate(shards)
    assert set(together.tolist()) == set(order.tolist())  # every window is trained on
    repeats = len(together) - n
    assert 0 <= repeats < world_size  # only the padding repeats, and fewer than one per rank
    if n % world_size == 0:
        assert len(np.unique(together)) == n  # disjoint


def test_state_checksum_sees_any_change_of_names_or_values():
    a = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "known": torch.tensor([True, False])}
    same = {k: v.clone() for k, v in reversed(list(a.items()))}
    assert D.state_checksum(a) == D.state_checksum(same)
    nudged = {k: v.clone() for k, v in a.items()}
    nudged["w"][1, 2] = torch.nextafter(nudged["w"][1, 2], torch.tensor(100.0))
    assert D.state_checksum(nudged) != D.state_checksum(a)
    assert D.state_checksum({"v": a["w"], "known": a["known"]}) != D.state_checksum(a)


def _worker(rank: int, world_size: int, port: int, queue) -> None:
    import os

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    try:
        assert D.init_if_launched() and D.is_distributed()
        out = {
            "world": tuple(D.world()),
            "broadcast": D.broadcast_object({"from": rank}),
            "flag": D.broadcast_flag(rank == 0),
            "mean": D.all_reduce_mean(float(rank)),
            "gathered": D.all_gather_object(rank * 10),
            "same": D.check_replicas({"w": torch.ones(3)}),
        }
        try:
            D.check_replicas({"w": torch.full((3,), float(rank))})
            out["diverged"] = None
        except RuntimeError as exc:
            out["diverged"] = str(exc)
        D.barrier()
        queue.put((rank, out))
    except BaseException as exc:  # surface worker failures in the test instead of a hang
        queue.put((rank, repr(exc)))


@pytest.mark.slow
def test_collectives_across_two_real_gloo_processes():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    for rank in (0, 1):
        out = results[rank]
        assert isinstance(out, dict), out
        assert out["world"] == (rank, 2, rank)
        assert out["broadcast"] == {"from": 0}  # rank 0's object everywhere
        assert out["flag"] is True
        assert out["mean"] == 0.5
        assert out["gathered"] == [0, 10]
        assert out["same"] == D.state_checksum({"w": torch.ones(3)})
        assert out["diverged"] is not None and "different model weights" in out["diverged"]
