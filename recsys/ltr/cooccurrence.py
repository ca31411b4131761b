"""Item-to-item co-occurrence neighbours (ItemKNN: cosine of binary interaction vectors), the ranking run's
co-occurrence source (``recsys.ltr.sources.CooccurrenceScores``).

The two-tower reads text and the order of a history; co-occurrence reads which items the same users consume
together, which wins on repeat-purchase or bundle-like catalogues.

The scores equal the harness's ``itemknn`` model with ``k = neighbours`` (a user's score for item j is the sum of
sim(h, j) over history items h among j's ``neighbours`` most similar items), computed in row blocks so the
catalogue never needs a dense items x items matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

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


__all__ = ["item_neighbours"]
