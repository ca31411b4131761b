"""Random item vectors for the index tests, and brute-force cosine top-k to check searches against."""

from __future__ import annotations

import numpy as np

DIM = 24


def random_vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def clustered(n: int, seed: int = 0, clusters: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    return (centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, DIM))).astype(np.float32)


def normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(items: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = normalised(queries) @ normalised(items).T
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, top, axis=1), top
