"""Fixtures of the index tests: 800 random item vectors and an exact index over them (ids 0, 10, 20, ...)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.index import ItemIndex
from tests.index.random_data import random_vectors


@pytest.fixture(scope="module")
def items() -> np.ndarray:
    return random_vectors(800)


@pytest.fixture()
def flat(items: np.ndarray) -> ItemIndex:
    return ItemIndex.build(items, np.arange(800) * 10, index_type="flat", model_fingerprint="model-a", device="cpu", progress=False)
