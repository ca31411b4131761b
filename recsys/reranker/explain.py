"""Why an item was recommended: the history items that support it and the context fields that moved its score.

* history support: cosine similarity of the retriever's item vectors (``TwoTowerRetriever.encode_items()``,
  L2-normalised) between the recommended item and each history item; the top 3 with their similarity;
* context effects: the reranker's score with the whole request context minus its score with one context field
  blanked (time of day, weekday, each context column such as device); positive = the field pushed the item up.

Everything returned is a plain dict / list of JSON types, ready for ``Recommendation.reasons``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.data import schema as S
from recsys.text import _WEEKDAYS, render_context, render_users, time_of_day

if TYPE_CHECKING:
    from recsys.reranker.model import Reranker

TIME_OF_DAY, WEEKDAY = "time_of_day", "weekday"


def supporting_history(
    item_vectors: np.ndarray,
    history: Sequence[int] | np.ndarray,
    item: int,
    *,
    k: int = 3,
    item_ids: Sequence[Any] | None = None,
    titles: Sequence[str | None] | None = None,
) -> list[dict[str, Any]]:
    """The ``k`` history items most similar to ``item`` (cosine of normalised item vectors), most similar first;
    each ``{"item": catalogue index, "item_id": id (when given), "title": ..., "similarity": float}``."""
    hist = np.unique(np.asarray(history, dtype=np.int64))
    hist = hist[(hist >= 0) & (hist != int(item))]
    if len(hist) == 0:
        return []
    sims = item_vectors[hist] @ item_vectors[int(item)]
    order = np.argsort(-sims, kind="stable")[:k]
    out = []
    for j in order:
        i = int(hist[j])
        row: dict[str, Any] = {"item": i}
        if item_ids is not None:
            v = item_ids[i]
            row["item_id"] = v.item() if hasattr(v, "item") else v
        if titles is not None:
            row["title"] = titles[i]
        row["similarity"] = round(float(sims[j]), 4)
        out.append(row)
    return out


def context_fields(context: Mapping[str, Any] | None, reranker: "Reranker") -> list[str]:
    """The fields of a request context that appear in the user text: time of day and weekday (from the timestamp)
    then every non-empty context column."""
    if not context:
        return []
    t = reranker.args.templates
    out = []
    if isinstance(context.get(S.TIMESTAMP), _dt.datetime):
        out += [TIME_OF_DAY, WEEKDAY]
    cols = t.context_columns if t.context_columns is not None else [c for c in context if c != S.TIMESTAMP]
    out += [c for c in cols if context.get(c) is not None and str(context.get(c)).strip() != ""]
    return out


def _blanked_context_text(context: Mapping[str, Any], field: str, reranker: "Reranker") -> str:
    """``render_context`` of the request with one field left out (time of day / weekday drop their part)."""
    t = reranker.args.templates
    ts = context.get(S.TIMESTAMP)
    if field in (TIME_OF_DAY, WEEKDAY) and isinstance(ts, _dt.datetime):
        rest = render_context({k: v for k, v in context.items() if k != S.TIMESTAMP}, t)
        keep = _WEEKDAYS[ts.weekday()] if field == TIME_OF_DAY else time_of_day(ts.hour, t)
        return ", ".join(p for p in (keep, rest) if p)
    return render_context({**context, field: None}, t)


def context_variants(
    reranker: "Reranker",
    history: Sequence[int] | np.ndarray,
    history_texts: Sequence[str],
    context: Mapping[str, Any] | None,
    profile: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, str]]:
    """(user text with the full context, {field: user text with that field blanked, "all": without any context})."""
    t = reranker.args.templates
    full = render_users([history], history_texts, profiles=[profile], context=[context], templates=t)[0]
    bare = render_users([history], history_texts, profiles=[profile], context=None, templates=t)[0]
    variants = {"all": bare}
    ctx_text = render_context(context, t) if context else ""
    if not ctx_text:
        return full, variants
    for f in context_fields(context, reranker):
        blank = _blanked_context_text(context, f, reranker)  # type: ignore[arg-type]
        old = t.context_prefix + ctx_text
        variants[f] = full.replace(old, t.context_prefix + blank, 1) if blank else full.replace(old + t.user_separator, "", 1).replace(old, "", 1)
    return full, variants


def _as_scored(reranker: "Reranker", context: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The context as the reranker reads it: without the timestamp when trained on synthesised ones."""
    if context and not getattr(reranker, "time_context", True):
        return {k: v for k, v in context.items() if k != S.TIMESTAMP}
    return context


def context_effects(
    reranker: "Reranker",
    history: Sequence[int] | np.ndarray,
    item_text: str,
    history_texts: Sequence[str],
    context: Mapping[str, Any] | None,
    profile: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """{field: score(all context) - score(field blanked)} plus ``"all"`` (the whole context's effect)."""
    if not reranker.args.use_context or not context:
        return {}
    context = _as_scored(reranker, context)
    full, variants = context_variants(reranker, history, history_texts, context, profile)
    names = list(variants)
    scores = reranker.predict([(full, item_text)] + [(variants[n], item_text) for n in names])
    return {n: round(float(scores[0] - s), 4) for n, s in zip(names, scores[1:])}


def explain(
    reranker: "Reranker",
    item: int,
    history: Sequence[int] | np.ndarray,
    *,
    item_vectors: np.ndarray | None,
    item_texts: Sequence[str],
    history_texts: Sequence[str],
    context: Mapping[str, Any] | None = None,
    profile: Mapping[str, Any] | None = None,
    item_ids: Sequence[Any] | None = None,
    titles: Sequence[str | None] | None = None,
    k: int = 3,
) -> dict[str, Any]:
    """``{"rerank_score", "history": [...top k supporting history items...], "context": {field: effect}}``."""
    context = _as_scored(reranker, context)
    user = render_users([history], history_texts, profiles=[profile], context=[context] if reranker.args.use_context else None, templates=reranker.args.templates)[0]
    score = float(reranker.predict([(user, item_texts[int(item)])])[0])
    out: dict[str, Any] = {"rerank_score": round(score, 4)}
    out["history"] = supporting_history(item_vectors, history, item, k=k, item_ids=item_ids, titles=titles) if item_vectors is not None else []
    out["context"] = context_effects(reranker, history, item_texts[int(item)], history_texts, context, profile)
    return out


__all__ = ["context_effects", "context_fields", "context_variants", "explain", "supporting_history"]
