"""A second candidate source: item-to-item co-occurrence neighbours (ItemKNN: cosine of binary interaction vectors).

Production systems merge candidates from several sources before reranking. The two-tower reads text and the order
of a history; co-occurrence reads which items the same users consume together, which wins on repeat-purchase or
bundle-like catalogues. ``recsys build-cooccurrence DATASET --out DIR`` fits it; ``--cooccurrence DIR`` on
``retrieve``/``batch-score``/``serve`` merges its candidates with the two-tower's before the reranker reads them.

The scores equal the harness's ``itemknn`` model with ``k = neighbours`` (a user's score for item j is the sum of
sim(h, j) over history items h among j's ``neighbours`` most similar items), computed in row blocks so the
catalogue never needs a dense items x items matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.errors import ManifestMismatchError, RecsysError
from recsys.manifest import atomic_directory, fingerprint_file, read_manifest, write_manifest

KIND = "cooccurrence"
MATRIX_FILE, ITEMS_FILE = "neighbours.npz", "items.parquet"
#: dense scratch per block of rows (floats): bounds the fit's memory whatever the catalogue size
BLOCK_FLOATS = 32_000_000


def item_neighbours(matrix: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """``S`` (items x items, CSR): ``S[i, j] = cos(i, j)`` when i is among j's ``neighbours`` most similar items.

    ``S[history].sum(0)`` is then the ItemKNN score of every item for that history."""
    n = matrix.shape[1]
    x = matrix.astype(np.float32).tocsc()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    xn = (x @ sp.diags(1.0 / norms).astype(np.float32)).tocsc()
    xt = xn.T.tocsr()
    k = max(0, min(int(neighbours), n - 1))
    block = max(1, BLOCK_FLOATS // max(n, 1))
    rows, cols, vals = [], [], []
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        sim = np.asarray((xt[lo:hi] @ xn).todense(), dtype=np.float32)
        sim[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        if k == 0:
            continue
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (hi - lo, 1))
        v = np.take_along_axis(sim, top, axis=1)
        keep = v > 0
        j = np.repeat(np.arange(lo, hi), k).reshape(hi - lo, k)
        rows.append(top[keep])  # neighbour i of item j ...
        cols.append(j[keep])  # ... stored at S[i, j]
        vals.append(v[keep])
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float32)


class CooccurrenceSource:
    """Candidates for a history from item co-occurrence; ``candidates(history, n)`` is the verb."""

    def __init__(self, item_ids: pl.Series, neighbours: sp.csr_matrix, manifest: dict[str, Any] | None = None) -> None:
        self.item_ids = item_ids
        self.matrix = neighbours.tocsr()
        self.manifest = dict(manifest or {})
        self._rows = pl.DataFrame({S.ITEM_ID: item_ids, "__row": np.arange(len(item_ids), dtype=np.int64)})

    @classmethod
    def fit(cls, dataset: Dataset, *, neighbours: int = 50) -> "CooccurrenceSource":
        """Fit on every interaction of ``dataset`` (repeats count once)."""
        items = dataset.items[S.ITEM_ID]
        lookup = pl.DataFrame({S.ITEM_ID: items, "__i": np.arange(len(items), dtype=np.int64)})
        pairs = dataset.interactions.select(S.USER_ID, S.ITEM_ID).join(lookup, on=S.ITEM_ID, how="inner")
        users = pairs[S.USER_ID].rank("dense").cast(pl.Int64).to_numpy() - 1
        m = sp.csr_matrix((np.ones(pairs.height, dtype=np.float32), (users, pairs["__i"].to_numpy())), shape=(int(users.max(initial=-1)) + 1, len(items)))
        manifest = {"dataset": {"path": str(dataset.path) if dataset.path else None, "fingerprint": dataset.fingerprint}}
        return cls.from_matrix(items, m, neighbours=neighbours, manifest=manifest)

    @classmethod
    def from_matrix(cls, item_ids: pl.Series, matrix: sp.spmatrix, *, neighbours: int = 50, manifest: dict[str, Any] | None = None) -> "CooccurrenceSource":
        """Fit on a users x items matrix whose column j is ``item_ids[j]`` (any positive entry counts once)."""
        if neighbours < 1:
            raise RecsysError(f"neighbours must be at least 1, got {neighbours}")
        m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        m.sum_duplicates()
        m.data[:] = 1.0
        return cls(item_ids, item_neighbours(m, neighbours), {**(manifest or {}), "neighbours": int(neighbours)})

    def save(self, directory: Path | str, *, overwrite: bool = False) -> Path:
        directory = Path(directory)
        with atomic_directory(directory, KIND, overwrite=overwrite) as tmp:
            sp.save_npz(tmp / MATRIX_FILE, self.matrix, compressed=False)
            pl.DataFrame({S.ITEM_ID: self.item_ids}).write_parquet(tmp / ITEMS_FILE)
            files = {f: fingerprint_file(tmp / f) for f in (MATRIX_FILE, ITEMS_FILE)}
            write_manifest(tmp, {"kind": KIND, **self.manifest, "items": len(self.item_ids), "pairs": int(self.matrix.nnz), "files": files})
        return directory

    @classmethod
    def load(cls, directory: Path | str, *, dataset_fingerprint: str | None = None) -> "CooccurrenceSource":
        """Open a saved source; refuse one fitted on another dataset than ``dataset_fingerprint`` (when given)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise RecsysError(f"co-occurrence source {directory} does not exist (build one with `recsys build-cooccurrence`)")
        manifest = read_manifest(directory, KIND)
        fitted_on = (manifest.get("dataset") or {}).get("fingerprint")
        if dataset_fingerprint and fitted_on and fitted_on != dataset_fingerprint:
            raise ManifestMismatchError(
                f"co-occurrence source {directory} was fitted on dataset {fitted_on}, not {dataset_fingerprint}: rebuild it with `recsys build-cooccurrence`"
            )
        for f, fp in manifest.get("files", {}).items():
            if not (directory / f).is_file() or fingerprint_file(directory / f) != fp:
                raise RecsysError(f"{directory / f} is missing or does not match the fingerprint in its manifest")
        return cls(pl.read_parquet(directory / ITEMS_FILE)[S.ITEM_ID], sp.load_npz(directory / MATRIX_FILE), manifest)

    @property
    def fingerprint(self) -> str:
        from recsys.manifest import fingerprint_json

        return fingerprint_json(self.manifest.get("files") or {"pairs": int(self.matrix.nnz), "neighbours": self.manifest.get("neighbours")})

    def rows(self, item_ids: Sequence[Any]) -> np.ndarray:
        """Matrix row per raw item id (-1 when unknown)."""
        if not len(item_ids):
            return np.zeros(0, dtype=np.int64)
        q = pl.DataFrame({S.ITEM_ID: pl.Series(list(item_ids)).cast(self.item_ids.dtype, strict=False)})
        return q.join(self._rows, on=S.ITEM_ID, how="left", maintain_order="left")["__row"].fill_null(-1).to_numpy()

    def candidates(self, history: Sequence[Any], n: int, *, exclude: Sequence[Any] = ()) -> tuple[list[Any], np.ndarray]:
        """The ``n`` best-scored items for a history (raw ids, oldest first), never one in ``exclude`` or the history;
        (ids, scores) best first. Items no history item co-occurs with are not returned (fewer than n then)."""
        rows = self.rows(history)
        rows = rows[rows >= 0]
        if not len(rows) or n <= 0:
            return [], np.zeros(0, dtype=np.float32)
        sub = self.matrix[np.unique(rows)] if len(rows) else None
        cols, inverse = np.unique(sub.indices, return_inverse=True)
        scores = np.bincount(inverse, weights=sub.data, minlength=len(cols)).astype(np.float32)
        banned = np.concatenate([rows, self.rows(list(exclude))]) if len(exclude) else rows
        keep = ~np.isin(cols, banned)
        cols, scores = cols[keep], scores[keep]
        order = np.lexsort((cols, -scores))[:n]
        ids = self.item_ids.gather(cols[order]).to_list()
        return ids, scores[order]


__all__ = ["CooccurrenceSource", "item_neighbours"]
