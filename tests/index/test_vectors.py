"""What ItemIndex accepts: the checks of ``recsys.index.vectors`` name the bad id or row; vectors are normalised."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import RecsysError
from recsys.index import ItemIndex
from tests.index.random_data import DIM, random_vectors


@pytest.mark.parametrize(
    ("vectors", "ids", "message"),
    [
        (np.zeros((3, 0), np.float32), [1, 2, 3], "dimension 0"),
        (np.ones((3, 4), np.float64), [1, 2, 3], "float32"),
        (np.ones(4, np.float32), [1], "2-D"),
        (np.ones((3, 4), np.float32), [1, 2], "3 rows but there are 2"),
        (np.array([[1, 0], [np.nan, 1]], np.float32), ["a", "b"], "item id 'b'.*non-finite"),
        (np.ones((3, 4), np.float32), ["a", "b", "a"], "item id 'a' appears more than once"),
        (np.array([[1, 0], [0, 0]], np.float32), [1, 2], "item id 2 is the zero vector"),
    ],
)
def test_build_validation(vectors, ids, message) -> None:
    with pytest.raises(RecsysError, match=message):
        ItemIndex.build(vectors, ids, index_type="flat", model_fingerprint="m", device="cpu", progress=False)


def test_vectors_are_normalised_and_wrong_id_type_refused(flat: ItemIndex) -> None:
    index = ItemIndex.build(np.array([[3, 4]], np.float32), ["x"], index_type="flat", model_fingerprint="m", device="cpu", progress=False)
    np.testing.assert_allclose(index.get_vectors(["x"]), [[0.6, 0.8]], atol=1e-6)
    with pytest.raises(RecsysError, match="String"):
        flat.add_items(random_vectors(1), ["not-an-int"])
    with pytest.raises(RecsysError, match="dimension"):
        flat.search(np.ones((1, DIM + 1), np.float32), 3)
