"""Features of (request, candidate) pairs: the one module that training and every serving path call.

``FeatureTables.fit(data)`` learns per-item and per-context statistics from the interactions the first stages were
fitted on, never from the labels the ranker learns (see ``recsys.ltr.ranker`` for the scheme); ``build_features``
turns merged candidates (``recsys.ltr.sources.merge_candidates``) plus their cases into one feature row each:

- every source's score and rank (from the merger; rank missing when the source did not propose the item);
- item popularity, all time and recent (the last ``recent_fraction`` of the training interactions), log-scaled;
  item age (request time minus the item's first training interaction, days); numeric item columns (e.g. year);
- the user's history length; mean rating of the item and of the user (when the data has ratings; shrunk);
- text similarity of the candidate to the user's ``recent_items`` last items (max and mean of MiniLM cosines);
- with ``gaps``: how far the candidate sits from the user's recent taste, as differences a tree cannot form from
  separate user and item columns: its log popularity minus the mean over the user's last ``recent_items`` items
  (mainstream vs niche users), the same for every numeric item column (e.g. year), and its cosine to the very last
  history item (the sequential signal, next to the max and mean over the recent ones);
- per categorical item attribute (single or multi-valued, e.g. category, format, genres): the share of the user's
  history with the candidate's value(s) (affinity), and the attribute's code as a LightGBM categorical feature;
- request context: hour, weekday, time-of-day bucket and every string context column (device, ...) as categorical
  codes, and their crosses with each attribute and with the item itself as smoothed target encodings: log of
  P(attribute value | context value) / P(attribute value), counted over the training interactions;
- with ``windows`` (days): causal popularity at the request's time: the item's training interactions in each window
  before it (log-scaled), its share of all interactions in that window, each shorter window's trend against the
  longest, and the days since the item's last interaction; with ``user_gap``: days since the user's last training
  interaction. Only interactions strictly before the request time count (never the request's own or later ones);
  a request after the end of the training data is counted as at its end (the tables know nothing later).

All work is numpy gathers and polars expressions over the candidate rows; no per-row Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data import schema as S
from recsys.errors import RecsysError
from recsys.data.types import Cases, TrainData

#: item columns never used as attributes (identifiers, free text, links)
NON_ATTRIBUTE_COLUMNS = {S.ITEM_ID, "title", "description", "imdb_url", "url", "bio"}
TIME_OF_DAY = ["night", "morning", "afternoon", "evening"]
#: events columns that are not request context
NON_CONTEXT_COLUMNS = {"u", "i", S.TIMESTAMP, S.RATING, S.WEIGHT, "pos", "len"}
ROW_CHUNK = 200_000
#: below this many values a Python dict lookup encodes a column faster than a polars expression (per-call overhead)
SMALL_COLUMN = 1_000


@dataclass
class FeatureSettings:
    """What ``FeatureTables`` computes; saved with the ranking run."""

    recent_fraction: float = 0.1
    recent_items: int = 10
    max_attribute_values: int = 64
    smoothing: float = 20.0
    text_similarity: bool = True
    context: bool = True
    gaps: bool = False
    #: causal time-window popularity features, window lengths in days (empty = off); see ``TimeIndex``
    windows: tuple[float, ...] = ()
    #: days since the user's last training interaction before the request
    user_gap: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "FeatureSettings":
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        if set(d) - known:
            raise RecsysError(f"unknown feature settings: {sorted(set(d) - known)} (known: {sorted(known)})")
        windows = d.get("windows", ())
        if not isinstance(windows, (list, tuple)) or not all(isinstance(w, (int, float)) and w > 0 for w in windows):
            raise RecsysError(f"features.windows must be a list of positive day counts, got {windows!r}")
        if windows:
            d["windows"] = tuple(sorted({float(w) for w in windows}))
        return cls(**d)


@dataclass
class Attribute:
    """A categorical item attribute: vocabulary and the items x values multi-hot matrix."""

    name: str
    values: list[str]
    matrix: sp.csr_matrix  # items x values, binary
    single: bool  # one value per item: also exposed as a categorical code
    _codes: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def codes(self) -> np.ndarray:
        """Per item: its value's index (-1 when none); single-valued attributes only (computed once, then kept)."""
        if self._codes is None:
            m = self.matrix.tocsr()
            out = np.full(m.shape[0], -1, dtype=np.int32)
            has = np.diff(m.indptr) > 0
            out[has] = m.indices[m.indptr[:-1][has]]
            self._codes = out
        return self._codes


@dataclass
class TimeIndex:
    """Interactions sorted by (key, time) as one int64 array ``key * span + (second - origin)``, so the number of a
    key's interactions before a time, or the time of its last one, is one ``np.searchsorted`` for any batch of
    (key, time) pairs. A key outside 0..n_keys-1 (an item added after the run, an unknown user) has no interactions:
    nothing to pad when the catalogue grows."""

    keys: np.ndarray  # int64, sorted
    seconds: np.ndarray  # int64 second of each interaction, same order
    origin: int
    span: int  # > every (second - origin) + 1
    timeline: np.ndarray  # int64 seconds of every interaction, sorted (all keys together)

    @classmethod
    def build(cls, key: np.ndarray, seconds: np.ndarray) -> "TimeIndex":
        sec = np.floor(np.asarray(seconds, dtype=np.float64)).astype(np.int64)
        origin = int(sec.min()) if len(sec) else 0
        span = int(sec.max()) - origin + 2 if len(sec) else 2
        if (int(key.max(initial=0)) + 2) * span >= 2**62:
            raise RecsysError(f"time index: {int(key.max()) + 1} keys over {span} seconds overflow int64")
        k = np.asarray(key, dtype=np.int64) * span + (sec - origin)
        order = np.argsort(k, kind="stable")
        return cls(k[order], sec[order], origin, span, np.sort(sec))

    def position(self, key: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """Index of ``key``'s first interaction in a second >= ``floor(seconds)`` (its count of earlier ones, plus
        every interaction of smaller keys). NaN ``seconds`` = after everything."""
        sec = np.where(np.isnan(seconds), np.inf, np.floor(seconds))
        q = np.clip(sec - self.origin, 0, self.span - 1).astype(np.int64)
        k = np.asarray(key, dtype=np.int64)
        k = np.where(k < 0, -1, k)  # keys far below 0 must not wrap
        return np.searchsorted(self.keys, k * self.span + q, side="left")

    def count(self, key: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """``key``'s interactions in seconds [floor(start), floor(end))."""
        return (self.position(key, end) - self.position(key, start)).astype(np.float64)

    def total(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Interactions of every key in seconds [floor(start), floor(end))."""
        return (np.searchsorted(self.timeline, np.floor(end), side="left") - np.searchsorted(self.timeline, np.floor(start), side="left")).astype(np.float64)

    def last_before(self, key: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Second of ``key``'s last interaction before floor(``end``) (NaN with none)."""
        p = self.position(key, end)
        has = p > self.position(key, np.full(len(p), -np.inf))
        return np.where(has, self.seconds[np.maximum(p - 1, 0)].astype(np.float64), np.nan)


@dataclass
class FeatureTables:
    """Statistics of one training set that ``build_features`` reads (fitted once per first-stage fold)."""

    settings: FeatureSettings
    n_items: int
    log_pop: np.ndarray
    log_pop_recent: np.ndarray
    first_seen: np.ndarray  # epoch seconds of the item's first training interaction (nan: never)
    last_time: float  # epoch seconds of the last training interaction (request time when a case has none)
    numeric: dict[str, np.ndarray]
    attributes: list[Attribute]
    context_values: dict[str, list[str]]  # context key -> vocabulary
    lifts: dict[tuple[str, str], np.ndarray]  # (context key, attribute name or "item") -> values x (attr values | items)
    item_rating: np.ndarray | None = None
    user_rating: np.ndarray | None = None
    item_vectors: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: the training interactions by (item, time) and (user, time), for the ``windows`` / ``user_gap`` features (None = off);
    #: keyed by row, so items added after the run read as never interacted with: no padding needed
    item_times: TimeIndex | None = None
    user_times: TimeIndex | None = None

    @classmethod
    def fit(cls, data: TrainData, settings: FeatureSettings | None = None, *, item_vectors: np.ndarray | None = None) -> "FeatureTables":
        st = settings or FeatureSettings()
        ev = data.events
        n = data.n_items
        items = ev["i"].to_numpy()
        counts = np.bincount(items, minlength=n).astype(np.float64)
        ts = _epoch_seconds(ev[S.TIMESTAMP]) if S.TIMESTAMP in ev.columns else np.zeros(ev.height)
        cutoff = np.quantile(ts, 1.0 - st.recent_fraction) if len(ts) else 0.0
        recent = np.bincount(items[ts >= cutoff], minlength=n).astype(np.float64)
        first = np.full(n, np.inf)
        np.minimum.at(first, items, ts)
        first[np.isinf(first)] = np.nan
        attributes = _attributes(data.items, st.max_attribute_values)
        numeric = {
            c: data.items[c].cast(pl.Float64, strict=False).to_numpy().astype(np.float32)
            for c, t in data.items.schema.items()
            if c not in NON_ATTRIBUTE_COLUMNS and t.is_numeric()
        }
        item_rating = user_rating = None
        if S.RATING in ev.columns:
            r = ev[S.RATING].cast(pl.Float64).to_numpy()
            mu, k = float(np.nanmean(r)) if len(r) else 0.0, 5.0
            item_rating = ((np.bincount(items, weights=r, minlength=n) + k * mu) / (counts + k)).astype(np.float32)
            users = ev["u"].to_numpy()
            nu = data.n_users
            user_rating = ((np.bincount(users, weights=r, minlength=nu) + k * mu) / (np.bincount(users, minlength=nu) + k)).astype(np.float32)
        context_values: dict[str, list[str]] = {}
        lifts: dict[tuple[str, str], np.ndarray] = {}
        if st.context and ev.height:
            ctx = _context_columns(ev)
            for key, col in ctx.items():
                vocab = sorted(col.drop_nulls().unique().to_list())
                if not vocab:
                    continue
                context_values[key] = vocab
                codes = _encode(col, vocab)
                keep = codes >= 0
                onehot = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (codes[keep], np.flatnonzero(keep))), shape=(len(vocab), ev.height))
                item_onehot = sp.csr_matrix((np.ones(ev.height, np.float32), (np.arange(ev.height), items)), shape=(ev.height, n))
                per_item = np.asarray((onehot @ item_onehot).todense(), dtype=np.float64)  # values x items
                lifts[(key, "item")] = _lift(per_item, st.smoothing)
                for a in attributes:
                    per_value = per_item @ a.matrix.toarray().astype(np.float64)  # values x attribute values
                    lifts[(key, a.name)] = _lift(per_value, st.smoothing)
        timed = S.TIMESTAMP in ev.columns and ev.height > 0 and not data.synthetic_timestamps  # row order is no clock
        return cls(
            st, n, np.log1p(counts).astype(np.float32), np.log1p(recent).astype(np.float32), first,
            float(ts.max()) if len(ts) else 0.0, numeric, attributes, context_values, lifts, item_rating, user_rating,
            item_vectors if st.text_similarity else None,
            item_times=TimeIndex.build(items, ts) if timed and st.windows else None,
            user_times=TimeIndex.build(ev["u"].to_numpy(), ts) if timed and st.user_gap else None,
        )  # fmt: skip

    def context_keys(self) -> list[str]:
        return list(self.context_values)

    #: per-item array fields that ``extend`` pads with a value other than its default (NaN for float arrays, 0 for
    #: integer ones, False for booleans): no interaction means zero popularity, not an unknown one
    EXTEND_PAD: ClassVar[dict[str, float]] = {"log_pop": 0.0, "log_pop_recent": 0.0}
    #: array fields indexed by user, never padded by ``extend``
    PER_USER_FIELDS: ClassVar[tuple[str, ...]] = ("user_rating",)

    def extend(self, items: pl.DataFrame, *, item_vectors: np.ndarray | None = None) -> "FeatureTables":
        """A copy whose catalogue has ``items`` appended (rows ``n_items`` onwards): items added to an index after
        the tables were fitted (``recsys index add-items``), so a served request can rank them.

        The new items have no interactions: popularity 0, first seen missing (item age missing), the item mean rating
        the shrunk mean of an unrated item (the global mean), item-level context lifts neutral (0); their numeric and
        categorical attributes come from ``items``' columns (values outside a fitted vocabulary are dropped, so
        attribute-level lifts and affinities read the values the tables know), and their text vectors are
        ``item_vectors`` (the same MiniLM as the fitted tables'; required when the tables have vectors).

        Every per-item numpy array field (first axis of length ``n_items``) is padded, so a field added to the class
        later must be paddable: NaN (missing) for float arrays, 0 for integer ones, or a value named in
        ``EXTEND_PAD``; per-user arrays are listed in ``PER_USER_FIELDS``. ``extra["names"]`` (display names) gets
        the items' titles (else their ids)."""
        import copy
        import dataclasses

        m, n = items.height, self.n_items
        if S.ITEM_ID not in items.columns:
            raise RecsysError(f"items to add need an '{S.ITEM_ID}' column, got {items.columns}")
        if self.item_vectors is not None and (item_vectors is None or item_vectors.shape != (m, self.item_vectors.shape[1])):
            got = None if item_vectors is None else item_vectors.shape
            raise RecsysError(f"the tables have text vectors: give {m} item vectors of dimension {self.item_vectors.shape[1]}, got {got}")
        out = copy.copy(self)
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "item_vectors" or f.name in self.PER_USER_FIELDS or not isinstance(v, np.ndarray) or v.ndim == 0 or v.shape[0] != n:
                continue
            setattr(out, f.name, _pad_rows(v, m, self.EXTEND_PAD.get(f.name)))
        if self.item_rating is not None:
            out.item_rating[n:] = _unrated_mean(self.item_rating, self.log_pop)
        out.n_items = n + m
        column = lambda c: items[c].cast(pl.Float64, strict=False).to_numpy() if c in items.columns else np.full(m, np.nan)  # noqa: E731
        out.numeric = {c: np.concatenate([v, column(c).astype(v.dtype)]) for c, v in self.numeric.items()}
        out.attributes = [_extend_attribute(a, items) for a in self.attributes]
        out.lifts = {k: (np.pad(v, ((0, 0), (0, m))) if k[1] == "item" else v) for k, v in self.lifts.items()}
        if self.item_vectors is not None:
            out.item_vectors = np.concatenate([self.item_vectors, np.asarray(item_vectors, dtype=self.item_vectors.dtype)])
        out.extra = dict(self.extra)
        names = self.extra.get("names")
        if names is not None:
            title = items["title"].cast(pl.String) if "title" in items.columns else pl.Series([None] * m, dtype=pl.String)
            added = title.fill_null(items[S.ITEM_ID].cast(pl.String)).fill_null("?")
            out.extra["names"] = pl.concat([pl.Series(names).cast(pl.String), added.rename(pl.Series(names).name)])
        return out


def _pad_rows(values: np.ndarray, m: int, pad: float | None) -> np.ndarray:
    """``values`` with ``m`` rows appended: ``pad``, else NaN (float), 0 (integer) or False (bool)."""
    if pad is None:
        pad = np.nan if np.issubdtype(values.dtype, np.floating) else (False if values.dtype == bool else 0)
    return np.concatenate([values, np.full((m, *values.shape[1:]), pad, dtype=values.dtype)])


def _unrated_mean(item_rating: np.ndarray, log_pop: np.ndarray, prior: float = 5.0) -> float:
    """The mean rating ``fit`` gives an item without ratings (the global mean), recovered from the shrunk item means:
    sum_i mean_i (count_i + prior) = global mean x sum_i (count_i + prior), with ``fit``'s prior of 5."""
    w = np.expm1(log_pop.astype(np.float64)) + prior
    return float((item_rating.astype(np.float64) * w).sum() / w.sum()) if len(w) else float("nan")


def _extend_attribute(a: Attribute, items: pl.DataFrame) -> Attribute:
    """``a`` with one row per item of ``items`` (their values in ``a``'s vocabulary; others dropped)."""
    m = items.height
    if a.name in items.columns and m:
        col = items[a.name]
        lists = items.select(pl.concat_list(pl.col(a.name)).alias(a.name))[a.name] if col.dtype != pl.List(pl.String) else col
        lists = lists.cast(pl.List(pl.String), strict=False)
        new = _multi_hot(lists, a.values)
    else:
        new = sp.csr_matrix((m, len(a.values)), dtype=np.float32)
    return Attribute(a.name, a.values, sp.vstack([a.matrix.tocsr(), new], format="csr"), a.single)


def _epoch_seconds(col: pl.Series) -> np.ndarray:
    return col.dt.epoch("us").to_numpy().astype(np.float64) / 1e6


def _time_parts(ts: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch seconds (NaN when null), hour 0-23 and ISO weekday 1-7 (hour and weekday -1 when null) of a datetime
    column, the hour and weekday on the column's wall clock. Plain numpy: polars' per-query overhead dominates the
    one-row frame of a served request."""
    utc = ts.to_numpy().astype("datetime64[us]")
    null = np.isnat(utc)
    epoch = np.where(null, np.nan, utc.astype(np.int64).astype(np.float64) / 1e6)
    zone = getattr(ts.dtype, "time_zone", None)
    local = utc if zone in (None, "UTC") else ts.dt.replace_time_zone(None).to_numpy().astype("datetime64[us]")
    us = np.where(null, 0, local.astype(np.int64))
    hour = np.where(null, -1, us // 3_600_000_000 % 24).astype(np.int32)
    weekday = np.where(null, -1, (us // 86_400_000_000 + 3) % 7 + 1).astype(np.int32)  # 1970-01-01 was a Thursday
    return epoch, hour, weekday


def _context_columns(frame: pl.DataFrame) -> dict[str, pl.Series]:
    """Context key -> string column: the frame's string context columns plus time of day and weekday."""
    out: dict[str, pl.Series] = {}
    if S.TIMESTAMP in frame.columns:
        _, hour, weekday = _time_parts(frame[S.TIMESTAMP])
        names = np.array([*TIME_OF_DAY, None], dtype=object)
        out["time_of_day"] = pl.Series("time_of_day", names[np.where(hour >= 0, hour // 6, len(TIME_OF_DAY))], dtype=pl.String)
        days = np.array([None, *(str(d) for d in range(1, 8))], dtype=object)
        out["weekday"] = pl.Series("weekday", days[np.maximum(weekday, 0)], dtype=pl.String)
    for c, t in frame.schema.items():
        if c not in NON_CONTEXT_COLUMNS and t == pl.String:
            out[c] = frame[c]
    return out


def _encode(col: pl.Series, vocab: list[str]) -> np.ndarray:
    """Index of each value in ``vocab`` (-1 when absent or null); a dict lookup for short columns (a request)."""
    mapping = {v: i for i, v in enumerate(vocab)}
    if len(col) <= SMALL_COLUMN:
        return np.fromiter((mapping.get(v, -1) for v in col.cast(pl.String).to_list()), dtype=np.int32, count=len(col))
    return col.cast(pl.String).replace_strict(mapping, default=-1, return_dtype=pl.Int32).fill_null(-1).to_numpy()


def _lift(counts: np.ndarray, alpha: float) -> np.ndarray:
    """log P(x | context value) / P(x), smoothed towards 0 with ``alpha`` pseudo-interactions per context value."""
    total = counts.sum()
    p = (counts.sum(axis=0) + 1.0) / (total + counts.shape[1])
    cond = (counts + alpha * p) / (counts.sum(axis=1, keepdims=True) + alpha)
    return np.log(cond / p).astype(np.float32)


def _multi_hot(lists: pl.Series, vocab: list[str]) -> sp.csr_matrix:
    """Binary (rows x vocabulary) matrix of list-of-string values; values outside ``vocab`` and nulls are dropped."""
    mapping = {v: i for i, v in enumerate(vocab)}
    row = np.repeat(np.arange(len(lists)), lists.list.len().fill_null(0).clip(1, None).to_numpy())
    codes = lists.explode().replace_strict(mapping, default=-1, return_dtype=pl.Int32).fill_null(-1).to_numpy()
    keep = codes >= 0
    m = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (row[keep], codes[keep])), shape=(len(lists), len(vocab)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _attributes(items: pl.DataFrame, max_values: int) -> list[Attribute]:
    out = []
    for c, t in items.schema.items():
        if c in NON_ATTRIBUTE_COLUMNS:
            continue
        if t == pl.String:
            lists, single = items.select(pl.concat_list(pl.col(c)).alias(c))[c], True
        elif t == pl.List(pl.String):
            lists, single = items[c], False
        else:
            continue
        vocab = sorted(lists.explode().drop_nulls().unique().to_list())
        if not vocab or len(vocab) > max_values or len(vocab) >= items.height:
            continue
        out.append(Attribute(c, vocab, _multi_hot(lists, vocab), single))
    return out


def case_frame(cases: Cases, tables: FeatureTables) -> pl.DataFrame:
    """Per case: history length, request time, hour, weekday, context codes (one row per case, ``case`` = row)."""
    return pl.DataFrame(_case_columns(cases, tables))


def _case_columns(cases: Cases, tables: FeatureTables) -> dict[str, np.ndarray]:
    """``case_frame``'s columns as numpy arrays (masked = null), so ``build_features`` can gather them per candidate."""
    n = len(cases)
    ctx = cases.context
    cols: dict[str, Any] = {"case": np.arange(n, dtype=np.int32), "history_length": cases.history.lengths.astype(np.int32)}
    timed = ctx is not None and S.TIMESTAMP in ctx.columns
    # no request time: the end of training stands in, hour and weekday are unknown
    epoch, hour, weekday = _time_parts(ctx[S.TIMESTAMP]) if timed else (np.full(n, tables.last_time), np.full(n, -1), np.full(n, -1))
    cols["request_time"] = epoch
    if tables.settings.context:
        cols["hour"] = np.ma.masked_less(hour, 0).astype(np.int32)
        cols["weekday_num"] = np.ma.masked_less(weekday, 0).astype(np.int32)
    if tables.context_values:
        found = _context_columns(ctx) if ctx is not None else {}
        for key, vocab in tables.context_values.items():
            cols[f"ctx_{key}"] = _encode(found[key], vocab) if key in found else np.full(n, -1, dtype=np.int32)
    if tables.user_rating is not None:
        u = np.asarray(cases.users)
        ok = (u >= 0) & (u < len(tables.user_rating))
        cols["user_mean_rating"] = np.where(ok, tables.user_rating[np.clip(u, 0, len(tables.user_rating) - 1)], np.nan).astype(np.float32)
    return cols


def check_context(cases: Cases, tables: FeatureTables) -> None:
    """Refuse requests whose context names a key the ranking run has never seen (a typo must not do nothing)."""
    if cases.context is None:
        return
    known = set(tables.context_values) | {S.TIMESTAMP} | set(NON_CONTEXT_COLUMNS)
    unknown = [c for c in cases.context.columns if c not in known and cases.context[c].dtype == pl.String]
    if unknown and tables.settings.context:
        raise RecsysError(f"unknown context keys {unknown}: this ranking run knows {sorted(tables.context_values)}")


def build_features(candidates: pl.DataFrame, cases: Cases, tables: FeatureTables) -> pl.DataFrame:
    """One feature row per candidate row (same order): the merger's source columns plus everything above."""
    if "case" not in candidates.columns or "item" not in candidates.columns:
        raise RecsysError("candidates need 'case' and 'item' columns (from recsys.ltr.sources.merge_candidates)")
    check_context(cases, tables)
    per_case = _case_columns(cases, tables)
    case = candidates["case"].to_numpy()
    item = candidates["item"].to_numpy()
    if len(case) and (case.min() < 0 or case.max() >= len(cases)):
        raise RecsysError(f"candidate rows name cases outside 0-{len(cases) - 1}")
    # per-case columns by position (``case`` is the row in ``per_case``): numpy gathers, not a join
    out = candidates.hstack([pl.Series(c, v[case]) for c, v in per_case.items() if c not in ("case", "request_time")])
    cols: dict[str, Any] = {
        "pop_all": tables.log_pop[item],
        "pop_recent": tables.log_pop_recent[item],
        "item_age_days": ((per_case["request_time"][case] - tables.first_seen[item]) / 86400.0).astype(np.float32),
    }
    for name, values in tables.numeric.items():
        cols[f"item_{name}"] = values[item]
    if tables.item_rating is not None:
        cols["item_mean_rating"] = tables.item_rating[item]
    hist = cases.history.to_csr(tables.n_items)
    lengths = np.maximum(cases.history.lengths, 1).astype(np.float32)
    for a in tables.attributes:
        profile = np.asarray((hist @ a.matrix).todense(), dtype=np.float32) / lengths[:, None]  # cases x values
        cols[f"affinity_{a.name}"] = _row_dot(a.matrix, item, profile, case)
        if a.single:
            cols[f"attr_{a.name}"] = a.codes()[item]
    for (key, target), lift in tables.lifts.items():
        code = out[f"ctx_{key}"].to_numpy()
        ok = code >= 0
        safe = np.where(ok, code, 0)
        if target == "item":
            v = lift[safe, item]
        else:
            a = next(x for x in tables.attributes if x.name == target)
            v = _row_dot(a.matrix, item, lift, safe, mean=True)
        cols[f"lift_{key}_{target}"] = np.where(ok, v, np.nan).astype(np.float32)
    if tables.item_vectors is not None:
        smax, smean = _text_similarity(tables.item_vectors, cases, item, case, tables.settings.recent_items)
        cols["text_sim_max"], cols["text_sim_mean"] = smax, smean
    if tables.settings.gaps:
        cols.update(_gaps(tables, cases, item, case))
    if getattr(tables, "item_times", None) is not None or getattr(tables, "user_times", None) is not None:
        cols.update(_time_windows(tables, cases, per_case["request_time"], item, case))
    return out.hstack([pl.Series(k, v) for k, v in cols.items()])


def _row_dot(matrix: sp.csr_matrix, item: np.ndarray, table: np.ndarray, row: np.ndarray, *, mean: bool = False) -> np.ndarray:
    """Per candidate: sum (or mean) over the item's attribute values x of ``table[row, x]``."""
    m = matrix.tocsr()
    out = np.zeros(len(item), dtype=np.float32)
    for lo in range(0, len(item), ROW_CHUNK):
        sl = slice(lo, lo + ROW_CHUNK)
        # the CSR rows of the chunk's items, read straight from indptr/indices (scipy's row indexing costs far more)
        starts, nnz = m.indptr[item[sl]], np.diff(m.indptr)[item[sl]]
        offsets = np.zeros(len(nnz) + 1, dtype=np.int64)
        np.cumsum(nnz, out=offsets[1:])
        cols = m.indices[np.repeat(starts - offsets[:-1], nnz) + np.arange(offsets[-1])]
        vals = table[np.repeat(row[sl], nnz), cols]
        # a trailing 0: an item without values at the chunk's end has offset len(vals), outside reduceat's range
        s = np.add.reduceat(np.append(vals, 0.0), offsets[:-1]) if len(vals) else np.zeros(len(item[sl]))
        s = np.where(nnz > 0, s, 0.0)
        out[sl] = s / np.maximum(nnz, 1) if mean else s
    if mean:
        out[np.diff(m.indptr)[item] == 0] = np.nan
    return out


def _recent_mean(values: np.ndarray, cases: Cases, recent: int) -> np.ndarray:
    """Per case: nan-mean of ``values[item]`` over its last ``recent`` history items (nan with none)."""
    last = cases.history.last(recent)
    v = values[last.items].astype(np.float64)
    ok = np.isfinite(v)
    rows = np.repeat(np.arange(len(cases)), last.lengths)
    total = np.bincount(rows[ok], weights=v[ok], minlength=len(cases))
    count = np.bincount(rows[ok], minlength=len(cases))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _gaps(tables: FeatureTables, cases: Cases, item: np.ndarray, case: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate minus the user's recent mean (popularity, numeric columns) and its cosine to the last item."""
    recent = tables.settings.recent_items
    out = {"pop_gap": (tables.log_pop[item] - _recent_mean(tables.log_pop, cases, recent)[case]).astype(np.float32)}
    for name, values in tables.numeric.items():
        out[f"item_{name}_gap"] = (values[item] - _recent_mean(values, cases, recent)[case]).astype(np.float32)
    if tables.item_vectors is not None:
        out["text_sim_last"] = _text_similarity(tables.item_vectors, cases, item, case, 1)[0]
    return out


def _time_windows(tables: FeatureTables, cases: Cases, request_time: np.ndarray, item: np.ndarray, case: np.ndarray) -> dict[str, np.ndarray]:
    """Causal popularity at the request time (``windows``) and the user's gap (``user_gap``): only training
    interactions in seconds strictly before the request's count; a request after the training data (or with no
    time) is counted as just after its last interaction."""
    end = np.fmin(request_time, tables.last_time + 1.0)
    end = np.where(np.isnan(end), tables.last_time + 1.0, end)
    out: dict[str, np.ndarray] = {}
    idx = getattr(tables, "item_times", None)
    if idx is not None:
        windows = tables.settings.windows
        t = end[case]
        counts = {}
        for w in windows:
            start = t - w * 86400.0
            c = idx.count(item, start, t)
            everything = idx.total(start, t)
            counts[w] = c
            label = f"{w:g}d"
            out[f"pop_{label}"] = np.log1p(c).astype(np.float32)
            out[f"share_{label}"] = (c / np.maximum(everything, 1.0)).astype(np.float32)
        longest = windows[-1]
        for w in windows[:-1]:  # log (count in w) / (the longest window's count scaled to w): rising > 0 > falling
            out[f"trend_{w:g}d"] = (np.log1p(counts[w]) - np.log1p(counts[longest] * w / longest)).astype(np.float32)
        out["item_idle_days"] = ((t - idx.last_before(item, t)) / 86400.0).astype(np.float32)
    users = getattr(tables, "user_times", None)
    if users is not None:
        gap = (end - users.last_before(np.asarray(cases.users), end)) / 86400.0
        out["user_gap_days"] = gap[case].astype(np.float32)
    return out


def _text_similarity(vectors: np.ndarray, cases: Cases, item: np.ndarray, case: np.ndarray, recent: int) -> tuple[np.ndarray, np.ndarray]:
    """Max and mean cosine of each candidate to its case's last ``recent`` history items (nan with no history)."""
    last = cases.history.last(recent)
    width = max(int(last.lengths.max(initial=0)), 1)
    pad = np.full((len(cases), width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(cases)), last.lengths)
    pad[rows, np.arange(len(last.items)) - np.repeat(last.indptr[:-1], last.lengths)] = last.items
    smax = np.full(len(item), np.nan, dtype=np.float32)
    smean = np.full(len(item), np.nan, dtype=np.float32)
    for lo in range(0, len(item), ROW_CHUNK // 4):
        sl = slice(lo, lo + ROW_CHUNK // 4)
        h = pad[case[sl]]
        valid = h >= 0
        sims = np.einsum("nd,nkd->nk", vectors[item[sl]], vectors[np.where(valid, h, 0)])
        cnt = valid.sum(1)
        smax[sl] = np.where(cnt > 0, np.where(valid, sims, -np.inf).max(1), np.nan)
        smean[sl] = np.where(cnt > 0, np.where(valid, sims, 0).sum(1) / np.maximum(cnt, 1), np.nan)
    return smax, smean


#: columns of a feature frame that are bookkeeping, not features
NON_FEATURES = ("case", "item", "label")


def feature_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in NON_FEATURES]


def categorical_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c.startswith(("ctx_", "attr_"))]


__all__ = ["FeatureSettings", "FeatureTables", "build_features", "case_frame", "categorical_columns", "check_context", "feature_columns"]
