"""Data-parallel training under the standard launchers (``torchrun``, ``accelerate launch``), with no code changes.

The launchers start one process per device and describe the job in environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). Everything here reads those variables, so the
same ``recsys train ...`` command runs as one plain process or as N ranks; outside a launcher every helper is a
cheap no-op and single-process results stay exactly what they were.

Why a module of our own: the sentence-transformers trainers are already distributed-aware, but our hand-written
sequence-tower loop, and every save, manifest and report after training, must know which rank they run on so that
ranks agree on when to stop and only one of them writes a run directory.
"""

from __future__ import annotations

import atexit
import os
from typing import Any, NamedTuple

import torch
import torch.distributed as dist


class World(NamedTuple):
    rank: int
    world_size: int
    local_rank: int


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def world() -> World:
    """(rank, world_size, local_rank) of this process: from the launcher's environment, or (0, 1, 0) without one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", dist.get_rank()))
    return World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def is_launched() -> bool:
    """True when a launcher started this process as one of several ranks (WORLD_SIZE > 1)."""
    return world().world_size > 1


def is_distributed() -> bool:
    """True when a process group of several ranks is up, i.e. collectives are needed to keep ranks in step."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """Rank 0 (or a plain process): the one rank that writes run directories, manifests and prints reports."""
    return world().rank == 0


def device() -> torch.device:
    """This rank's training device: ``cuda:LOCAL_RANK`` when CUDA is visible under a launcher, else CPU.

    A plain process keeps training on CPU (the default of the library); only a launched run moves to its GPU.
    """
    if is_launched() and torch.cuda.is_available():
        return torch.device("cuda", world().local_rank)
    return torch.device("cpu")


def init_if_launched() -> bool:
    """Initialise ``torch.distributed`` once when launched with WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU).

    Safe to call repeatedly and from library code: a no-op in a plain process or when the group is already up
    (e.g. created by accelerate). Also pins ``cuda:LOCAL_RANK`` as the current device, so ``"cuda"`` in code
    that never heard of ranks (model loading, the HF trainers) means this rank's GPU. Returns whether the process
    is part of a distributed group.
    """
    w = world()
    if w.world_size <= 1 or not dist.is_available():
        return False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(w.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=w.rank, world_size=w.world_size)
        atexit.register(_shutdown)
    return True


def _shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a distributed group): e.g. others wait while rank 0 writes a run."""
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any = None, src: int = 0) -> Any:
    """``obj`` as rank ``src`` holds it, on every rank (picklable objects; identity without a distributed group).

    Used for decisions only one rank may take (validation, early stopping) and results only it computed.
    """
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_flag(flag: bool, src: int = 0) -> bool:
    """Rank ``src``'s boolean on every rank: a stop decision taken on one clock (time budgets differ per rank)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.broadcast(t, src=src)
    return bool(t.item())


def all_reduce_mean(value: float) -> float:
    """The mean of a float over ranks (e.g. the epoch's training loss for the log); ``value`` alone otherwise."""
    if not is_distributed():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` without a distributed group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def state_checksum(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 (16 hex) of a state dict's names, dtypes, shapes and bytes: replicas that trained in step agree bit
    for bit, so one comparison proves no rank drifted."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def check_replicas(state: dict[str, torch.Tensor], what: str = "model") -> str | None:
    """Raise when the ranks' copies of ``state`` differ (a silent divergence would save one rank's model and
    lose the others' work); the shared checksum, or None without a distributed group.

    With ``RECSYS_DEBUG_RANKS=1`` every rank prints its own checksum to stderr (the multi-process test reads it).
    """
    if not is_distributed():
        return None
    mine = state_checksum(state)
    if os.environ.get("RECSYS_DEBUG_RANKS") == "1":
        import sys

        w = world()
        print(f"recsys rank {w.rank}/{w.world_size}: {what} weights {mine}", file=sys.stderr, flush=True)
    every = all_gather_object(mine)
    if len(set(every)) != 1:
        raise RuntimeError(f"the ranks ended with different {what} weights ({', '.join(every)}): data-parallel training lost sync")
    return mine


def _collective_device() -> torch.device:
    # nccl only moves CUDA tensors; gloo only CPU ones
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def shard_order(order: Any, rank: int, world_size: int) -> Any:
    """This rank's share of a permutation that every rank drew identically: strided, padded by wrapping around so
    that every rank gets the same number of items (and so the same number of batches: no collective ever waits for
    a rank that has already finished its epoch). ``world_size == 1`` returns ``order`` itself."""
    if world_size <= 1:
        return order
    import numpy as np

    order = np.asarray(order)
    n = len(order)
    per_rank = -(-n // world_size)
    total = per_rank * world_size
    if total > n:
        order = np.concatenate([order, np.resize(order, total - n)]) if n else order
    return order[rank:total:world_size]


__all__ = [
    "World",
    "all_gather_object",
    "all_reduce_mean",
    "barrier",
    "broadcast_flag",
    "broadcast_object",
    "check_replicas",
    "device",
    "init_if_launched",
    "is_distributed",
    "is_launched",
    "is_main",
    "shard_order",
    "state_checksum",
    "world",
]
