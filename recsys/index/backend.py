"""Device selection for FAISS indexes, in the style of ``implicit``'s CPU/GPU factory.

``resolve_device("auto")`` picks the GPU when the installed FAISS was built with GPU support and a GPU is
visible, the CPU otherwise; asking for ``"gpu"`` where there is none is a clear :class:`RecsysError`.

The CPU index is always the authoritative copy (it is what gets mutated and saved); a GPU copy is only a
search replica made with :func:`to_gpu` and dropped when the CPU index changes. :func:`to_cpu` turns a GPU
index back into a CPU one for callers that built on the GPU.
"""

from __future__ import annotations

from typing import Any, Literal

import faiss

from recsys.errors import RecsysError

Device = Literal["cpu", "gpu"]

#: Largest k (and nprobe) that FAISS GPU indexes accept; bigger searches fall back to the CPU copy.
GPU_MAX_K = 2048

_DEVICE_ALIASES = {"auto": "auto", "cpu": "cpu", "gpu": "gpu", "cuda": "gpu"}


def faiss_has_gpu_support() -> bool:
    """True when the installed FAISS package was built with GPU support (faiss-gpu, not faiss-cpu)."""
    return hasattr(faiss, "StandardGpuResources") and hasattr(faiss, "index_cpu_to_all_gpus")


def num_gpus() -> int:
    """Number of GPUs FAISS can see (0 with faiss-cpu or without a visible CUDA device)."""
    if not hasattr(faiss, "get_num_gpus"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except Exception:  # a broken CUDA install must not break CPU use
        return 0


def gpu_available() -> bool:
    return faiss_has_gpu_support() and num_gpus() > 0


def resolve_device(device: str = "auto") -> Device:
    """Map ``"auto" | "cpu" | "gpu"`` (``"cuda"`` is an alias of ``"gpu"``) to the device searches run on."""
    key = _DEVICE_ALIASES.get(str(device).lower())
    if key is None:
        raise RecsysError(f"unknown device {device!r}: expected one of auto, cpu, gpu")
    if key == "cpu":
        return "cpu"
    if key == "auto":
        return "gpu" if gpu_available() else "cpu"
    if not faiss_has_gpu_support():
        raise RecsysError(
            "device 'gpu' requested, but the installed FAISS has no GPU support (faiss-cpu); "
            "install faiss-gpu (pip install 'recsys[gpu]') or use --device cpu"
        )
    if num_gpus() == 0:
        raise RecsysError("device 'gpu' requested, but FAISS sees no GPU (check CUDA_VISIBLE_DEVICES); use --device cpu")
    return "gpu"


def supports_gpu(index: Any) -> bool:
    """Whether ``index`` can be cloned to the GPU (flat and IVF can; HNSW cannot)."""
    inner = faiss.downcast_index(index.index) if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)) else index
    return not isinstance(inner, faiss.IndexHNSW)


def to_gpu(index: Any, *, shard: bool = False) -> Any:
    """Clone a CPU index onto every visible GPU (replicated, or sharded when ``shard``) for searching.

    Raises RecsysError when there is no GPU or the index type has no GPU implementation.
    """
    resolve_device("gpu")
    if not supports_gpu(index):
        raise RecsysError(f"{type(index).__name__} has no FAISS GPU implementation; search it on the CPU")
    options = faiss.GpuMultipleClonerOptions()
    options.shard = shard
    return faiss.index_cpu_to_all_gpus(index, co=options)


def to_cpu(index: Any) -> Any:
    """Copy a GPU index back to the CPU (for ``faiss.write_index``); a CPU index is returned unchanged."""
    if is_gpu_index(index) and hasattr(faiss, "index_gpu_to_cpu"):
        return faiss.index_gpu_to_cpu(index)
    return index


def is_gpu_index(index: Any) -> bool:
    name = type(index).__name__
    if name.startswith("Gpu"):
        return True
    if isinstance(index, (faiss.IndexReplicas, faiss.IndexShards)):
        return True
    return False


def to_device(index: Any, device: str = "auto") -> tuple[Any, Device]:
    """The index to search with on ``device``: a GPU replica when possible, else the CPU index itself.

    Returns ``(index, device_used)``; with ``"auto"`` an index type without GPU support stays on the CPU,
    with an explicit ``"gpu"`` it is an error.
    """
    wanted = resolve_device(device)
    if wanted == "gpu":
        if supports_gpu(index):
            return to_gpu(index), "gpu"
        if str(device).lower() in ("gpu", "cuda"):
            raise RecsysError("HNSW indexes have no FAISS GPU implementation; use device 'cpu' or an 'ivf'/'flat' index")
    return index, "cpu"
