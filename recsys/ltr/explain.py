"""Reasons a person reads, from the ranker's per-feature contributions (LightGBM ``pred_contrib``, i.e. SHAP values).

Each feature belongs to one reason group (a source, text similarity, an attribute affinity, the request context,
popularity, ratings); a recommendation's groups are summed, and its strongest positive groups are rendered with the
data behind them: "you watched Toy Story" (the history item the candidate co-occurs with or resembles most),
"often watched after Heat" (co-occurrence), "its description matches what you watched lately, like Heat" (the text
cross-encoder), "you often pick Drama" (affinity), "popular on tv in the evening" (context lifts), "popular lately".
Rendering only touches the recommendations being explained.

The verb follows the catalogue (``interaction_verb``): "watched" for films, "bought" for products, a neutral "picked"
when the dataset does not say, or whatever the caller sets.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.data.types import Cases
from recsys.errors import RecsysError
from recsys.ltr.cross import COLUMN as CROSS_COLUMN
from recsys.ltr.features import TIME_OF_DAY
from recsys.ltr.ranker import LearnedRanker
from recsys.ltr.sources import CooccurrenceScores


#: the verb when neither the caller nor the dataset says what an interaction is
DEFAULT_VERB = "picked"
#: environment variable that overrides the verb for every path (retrieve, serve, batch, workflow)
VERB_ENV = "RECSYS_EXPLAIN_VERB"
#: dataset source format (the manifest's ``source.format``, up to its first '-') -> what an interaction is
FORMAT_VERBS = {"movielens": "watched", "amazon": "bought", "demo": "bought"}
#: for other formats (a table import): words in the source's name or file paths -> what an interaction is
NAME_VERBS = {r"\b(movielens|movies?|films?|imdb|ml-\d+[km]?)\b": "watched", r"\b(amazon|products?|shop|retail)\b": "bought"}


def interaction_verb(source: dict[str, Any] | None = None, *, override: str | None = None) -> str:
    """The past-tense verb of an interaction in reasons ("you watched Heat", "often bought after ..."): ``override``
    (or the ``RECSYS_EXPLAIN_VERB`` environment variable), else the dataset's kind from its manifest ``source``
    (MovieLens -> watched; Amazon reviews and the demo's product catalogue -> bought; a table import by the words
    of its name and file paths, ``NAME_VERBS``), else ``DEFAULT_VERB``."""
    given = override if override is not None else os.environ.get(VERB_ENV) or None
    if given is not None:
        verb = given.strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z' -]{0,29}", verb):
            raise RecsysError(f"explanation verb {given!r} (--verb or {VERB_ENV}): give a past-tense verb of letters, e.g. 'watched', 'bought'")
        return verb
    source = source or {}
    fmt = str(source.get("format") or "").lower().split("-", 1)[0]
    if fmt in FORMAT_VERBS:
        return FORMAT_VERBS[fmt]
    files = source.get("files")
    words = " ".join([str(source.get("name") or ""), *(map(str, files.values()) if isinstance(files, dict) else [])]).lower()
    return next((v for pattern, v in NAME_VERBS.items() if re.search(pattern, words)), DEFAULT_VERB)


def feature_group(name: str, sources: list[str]) -> str:
    """The reason group of a feature column."""
    if name == CROSS_COLUMN:
        return "cross"
    for s in sources:
        if name in (f"{s}_score", f"{s}_rank"):
            return f"source:{s}"
    if name.startswith("text_sim"):
        return "text"
    if name.startswith("affinity_"):
        return "affinity:" + name.removeprefix("affinity_")
    if name.startswith(("lift_", "ctx_", "attr_")) or name in ("hour", "weekday_num"):
        return "context"
    if name in ("pop_all", "pop_recent"):
        return "popularity:" + name
    if re.fullmatch(r"(pop|share|trend)_[0-9.e+-]+d|item_idle_days", name):  # time-window popularity: "popular lately"
        return "popularity:pop_recent"
    if name in ("item_mean_rating",):
        return "rating"
    return "other"


def contributions(ranker: LearnedRanker, frame: pl.DataFrame) -> np.ndarray:
    """(rows, features + 1) SHAP contributions of each feature (last column: the bias)."""
    return ranker.booster_.predict(ranker.feature_matrix(frame), num_iteration=ranker.best_iteration_, pred_contrib=True)


def explain(
    ranker: LearnedRanker, cases: Cases, *, top: int = 10, reasons: int = 3, verb: str = DEFAULT_VERB, names: pl.Series | None = None
) -> pl.DataFrame:
    """The ``top`` recommendations of each case with their reasons.

    Columns: ``case``, ``rank`` (1 = best), ``item`` (catalogue index), ``score`` (ranker margin), ``reasons``
    (list of sentences, strongest first) and ``contributions`` (feature -> contribution, for machines).
    ``names``: item display names by catalogue index (default: the catalogue's ``title`` or ``item_id``); ``verb``:
    what an interaction is (``interaction_verb`` of the dataset's manifest source)."""
    frame = ranker.rank_frame(cases)
    frame = (
        frame.sort(["case", "score"], descending=[False, True])
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("case"))
        .filter(pl.col("rank") <= top)
    )
    return explain_ranked(ranker, cases, frame, reasons=reasons, verb=verb, names=names)


def explain_ranked(
    ranker: LearnedRanker, cases: Cases, frame: pl.DataFrame, *, reasons: int = 3, verb: str = DEFAULT_VERB, names: pl.Series | None = None
) -> pl.DataFrame:
    """Reasons of already ranked rows (a ``rank_frame`` subset with ``rank``): what ``explain`` and the serving
    stage (``recsys.service.ranking``) render; columns as ``explain``'s, in ``frame``'s row order."""
    contrib = contributions(ranker, frame)
    feats = ranker.feature_names_
    sources = list(ranker.serving_)
    groups = sorted({feature_group(f, sources) for f in feats} - {"other"})
    gmat = np.zeros((len(feats), len(groups)), dtype=np.float64)
    for j, f in enumerate(feats):
        g = feature_group(f, sources)
        if g != "other":
            gmat[j, groups.index(g)] = 1.0
    by_group = contrib[:, : len(feats)] @ gmat
    if names is None:
        items = ranker.tables_.extra.get("names")
        names = items if items is not None else pl.Series([str(i) for i in range(ranker.n_items_)])
    keys = ranker.tables_.context_keys()
    kmat = np.zeros((len(feats), len(keys)), dtype=np.float64)
    for j, f in enumerate(feats):
        for k, key in enumerate(keys):
            extra = {"time_of_day": ("hour",), "weekday": ("weekday_num",)}.get(key, ())
            if f == f"ctx_{key}" or f.startswith(f"lift_{key}_") or f in extra:
                kmat[j, k] = 1.0
    by_key = contrib[:, : len(feats)] @ kmat
    render = _Renderer(ranker, cases, frame, names, verb)
    out_reasons = []
    for r in range(frame.height):
        order = np.argsort(-by_group[r])
        render.keys = [keys[k] for k in np.flatnonzero(by_key[r] > 0)]
        said: list[str] = []
        anchors: set[str] = set()
        for g in order:  # strongest first; a history item is named once
            if len(said) == reasons or by_group[r, g] <= 0:
                break
            text, anchor = render(groups[g], r)
            if text and text not in said and (anchor is None or anchor not in anchors):
                said.append(text)
                anchors.add(anchor) if anchor else None
        out_reasons.append(said)
    contrib_maps = [dict(zip(feats, map(float, row[: len(feats)]))) for row in contrib]
    return frame.select("case", "rank", "item", "score").with_columns(
        reasons=pl.Series("reasons", out_reasons, dtype=pl.List(pl.String)),
        contributions=pl.Series("contributions", [json_map(m) for m in contrib_maps], dtype=pl.String),
    )


def json_map(m: dict[str, float]) -> str:
    return json.dumps({k: round(v, 5) for k, v in sorted(m.items(), key=lambda kv: -abs(kv[1])) if v != 0.0})


class _Renderer:
    """Turns a reason group of one recommendation into a sentence, reading the data behind the feature."""

    def __init__(self, ranker: LearnedRanker, cases: Cases, frame: pl.DataFrame, names: pl.Series, verb: str) -> None:
        self.ranker, self.cases, self.names, self.verb = ranker, cases, names.cast(pl.String).to_list(), verb
        self.case = frame["case"].to_numpy()
        self.item = frame["item"].to_numpy()
        inner = [getattr(s, "inner", s) for s in ranker.serving_.values()]
        self.co = next((s.matrix_ for s in inner if isinstance(s, CooccurrenceScores)), None)
        self.vectors = ranker.tables_.item_vectors
        self.context = cases.context
        self.keys: list[str] = []  # context keys that contributed to the recommendation being rendered

    def _anchor(self, r: int, *, text: bool, last: int = 50) -> str | None:
        """The history item (of the last ``last``) that best explains the candidate: most co-occurring, or most
        similar text."""
        hist = self.cases.history.row(self.case[r])[-last:]
        if not len(hist):
            return None
        if not text and self.co is not None and self.item[r] < self.co.shape[1]:  # items added after the run: none
            known = hist[hist < self.co.shape[0]]
            w = np.asarray(self.co[known][:, self.item[r]].todense()).ravel()
            if w.max(initial=0) > 0:
                return self.names[int(known[int(np.argmax(w))])]
        if self.vectors is not None:
            sims = self.vectors[hist] @ self.vectors[self.item[r]]
            return self.names[int(hist[int(np.argmax(sims))])]
        return self.names[int(hist[-1])]

    def __call__(self, group: str, r: int) -> tuple[str | None, str | None]:
        """(sentence, the history item it names) for one reason group of recommendation ``r``."""
        kind, _, what = group.partition(":")
        if kind == "source":
            if what == "popularity":
                return "popular overall", None
            if what == "sasrec":
                anchor = self._anchor(r, text=False, last=5)
                return (f"fits what you {self.verb} lately, like {anchor}", anchor) if anchor else (None, None)
            anchor = self._anchor(r, text=False)
            if what == "cooccurrence":
                return (f"often {self.verb} after {anchor}", anchor) if anchor else (None, None)
            return (f"you {self.verb} {anchor}", anchor) if anchor else (None, None)
        if kind == "text":
            anchor = self._anchor(r, text=True)
            return (f"similar to {anchor}, which you {self.verb}", anchor) if anchor else (None, None)
        if kind == "cross":  # the cross-encoder reads the recent history's text against the item's
            anchor = self._anchor(r, text=True, last=5)
            return (f"its description matches what you {self.verb} lately, like {anchor}", anchor) if anchor else (None, None)
        if kind == "affinity":
            attr = next((a for a in self.ranker.tables_.attributes if a.name == what), None)
            if attr is None:
                return None, None
            m = attr.matrix.tocsr()
            vals = [attr.values[j] for j in m.indices[m.indptr[self.item[r]] : m.indptr[self.item[r] + 1]]]
            return (f"you often pick {', '.join(vals[:2])}" if vals else None), None
        if kind == "popularity":
            return ("popular lately" if what == "pop_recent" else "popular overall"), None
        if kind == "rating":
            return "highly rated", None
        if kind == "context":
            return self._context(r), None
        return None, None

    def _context(self, r: int) -> str | None:
        """'popular on tv in the evening': the context values whose features pushed this item up."""
        if self.context is None:
            return None
        row: dict[str, Any] = self.context.row(int(self.case[r]), named=True)
        ts = row.get(S.TIMESTAMP)
        values = [f"on {row[k]}" for k in self.keys if k not in ("time_of_day", "weekday") and isinstance(row.get(k), str)]
        if ts is not None and "weekday" in self.keys:
            values.append(f"on {ts.strftime('%A')}s")
        if ts is not None and "time_of_day" in self.keys:
            values.append(f"in the {TIME_OF_DAY[ts.hour // 6]}")
        parts = values
        return ("popular " + " ".join(parts)) if parts else None


__all__ = [
    "DEFAULT_VERB", "FORMAT_VERBS", "NAME_VERBS", "VERB_ENV", "contributions", "explain", "explain_ranked", "feature_group", "interaction_verb",
]  # fmt: skip
