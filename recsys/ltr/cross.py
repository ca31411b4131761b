"""The text cross-encoder's score as a feature of the learned ranker (column ``cross_encoder``).

Leak-free by construction: one cross-encoder is trained on the label fold's training data (``data_a``: the
training interactions without each user's held-out ones, ``recsys.ltr.ranker.holdout_split``), with hard negatives
from the label fold's first source, fitted on the same ``data_a``. It never sees a label-fold label, nor a
validation or test interaction, so the same model scores the label-fold rows, validation (early stopping) and
test/served requests; a single model also keeps the feature's distribution the same in training and at serving.
A pre-trained model can be named with ``{"run": DIR}``; it is refused unless it was trained on exactly ``data_a``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from recsys.data.types import Cases, TrainData, train_data_fingerprint
from recsys.errors import ManifestMismatchError
from recsys.reranker.config import CrossEncoderArguments
from recsys.reranker.examples import Scorer
from recsys.reranker.model import CrossEncoder
from recsys.reranker.training import fit_cross_encoder

COLUMN = "cross_encoder"


def fit_cross_feature(settings: dict[str, Any], data_a: TrainData, scorer: Scorer, *, progress: Callable[[str], None] | None = None) -> CrossEncoder:
    """The cross-encoder of a ranking run: trained on ``data_a`` with ``scorer``'s hard negatives (``settings`` =
    ``CrossEncoderArguments`` fields), or loaded from ``settings["run"]`` and checked to be trained on ``data_a``."""
    spec = dict(settings)
    run = spec.pop("run", None)
    if run is None:
        return fit_cross_encoder(CrossEncoder(CrossEncoderArguments.from_dict(spec)), data_a, scorer, progress=progress)
    model = CrossEncoder.load(run)
    expected = train_data_fingerprint(data_a, model.render_items(data_a.items))
    if model.data_fingerprint != expected:
        raise ManifestMismatchError(
            f"cross-encoder run {run} was trained on data {model.data_fingerprint}, not on this ranking run's label fold "
            f"({expected}): its scores could have seen the labels; train it on the label fold (omit 'run')"
        )
    if len(model.item_vectors_) != data_a.n_items:
        raise ManifestMismatchError(f"cross-encoder run {run} has {len(model.item_vectors_)} catalogue items, the data {data_a.n_items}")
    return model


def add_cross_feature(frame: pl.DataFrame, cases: Cases, model: CrossEncoder) -> pl.DataFrame:
    """``frame`` (one row per case x candidate, columns ``case`` and ``item``) with the ``cross_encoder`` score."""
    if frame.height == 0:
        return frame.with_columns(pl.lit(None, dtype=pl.Float32).alias(COLUMN))
    histories = [cases.history.row(r) for r in range(len(cases))]
    score = model.score(histories, frame["case"].to_numpy(), frame["item"].to_numpy())
    return frame.with_columns(pl.Series(COLUMN, np.asarray(score, dtype=np.float32)))


__all__ = ["COLUMN", "add_cross_feature", "fit_cross_feature"]
