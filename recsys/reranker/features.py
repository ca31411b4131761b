"""What the cross-encoder reads besides texts: the request-context columns of an event or case frame."""

from __future__ import annotations

import polars as pl

from recsys.data import schema as S

#: columns of an event/case frame that are never request context
NON_CONTEXT = ("u", "i", "pos", "len", S.RATING, S.WEIGHT, S.USER_ID, S.ITEM_ID)


def context_frame_of(frame: pl.DataFrame | None) -> pl.DataFrame | None:
    """The request-context columns (timestamp + context columns) of an event or case frame."""
    if frame is None:
        return None
    return frame.select([c for c in frame.columns if c not in NON_CONTEXT])


__all__ = ["NON_CONTEXT", "context_frame_of"]
