"""The one place where items, users and requests become text for the language models.

Every text model (the two-tower retriever, the zero-shot baseline, the cross-encoder) reads its text from here, so
that the same item always renders the same way. What gets rendered is a setting (``TextTemplates``, loadable from
a dict or a TOML file), not code: a new dataset changes templates, not this module.

Item text is built with polars expressions (vectorised over the catalogue); user text is per user (a loop over a
few hundred recent items at most).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from recsys.context import TIME_OF_DAY_STARTS, WEEKDAYS
from recsys.context import time_of_day as _time_of_day
from recsys.settings import TomlSettings
from recsys.data import schema as S

#: pseudo-field of ``item_fields``: every other non-id column, rendered "name: value"
ATTRIBUTES = "attributes"
_WEEKDAYS = tuple(d.capitalize() for d in WEEKDAYS)


def _default_times_of_day() -> dict[str, int]:
    return dict(TIME_OF_DAY_STARTS)


@dataclass
class TextTemplates(TomlSettings):
    """How items, users and requests are rendered. Fields absent from the data or empty are skipped silently.

    Defaults reproduce the protocol's MovieLens item text ``"<title> | <genres, comma-joined> | <year>"``.
    """

    SETTINGS_NAME = "text template"
    TOML_TABLE = "text"

    #: item columns in rendering order; ``"attributes"`` = every other non-id column as "name: value"
    item_fields: list[str] = field(default_factory=lambda: ["title", "genres", "year", "description", "tags"])
    item_separator: str = " | "
    list_separator: str = ", "
    #: text put before a field's value, e.g. {"description": "About: "}
    item_labels: dict[str, str] = field(default_factory=dict)
    #: columns never rendered as attributes (ids, URLs, ...)
    item_exclude: list[str] = field(default_factory=lambda: [S.ITEM_ID, "imdb_url", "url"])
    max_item_chars: int = 256
    #: user text = these parts in order, joined by ``user_separator``
    user_parts: list[str] = field(default_factory=lambda: ["profile", "context", "history"])
    user_separator: str = ". "
    #: profile: "{field}" placeholders over the user's profile columns; placeholders of missing fields vanish
    profile_template: str = "{age} year old {gender}, {occupation}"
    #: history: newest first, item texts (only the fields below) joined until the character budget is used
    history_prefix: str = "Recently: "
    history_item_fields: list[str] = field(default_factory=lambda: ["title"])
    history_separator: str = "; "
    history_max_items: int = 20
    history_max_chars: int = 600
    #: request context: time of day and weekday from the timestamp, then the other context columns
    context_prefix: str = "Now: "
    times_of_day: dict[str, int] = field(default_factory=_default_times_of_day)
    context_columns: list[str] | None = None  # None = every non-timestamp context column
    context_labels: dict[str, str] = field(default_factory=dict)





# ----------------------------------------------------------------------------------------------- items


def _value_expr(frame: pl.DataFrame, col: str, t: TextTemplates) -> pl.Expr:
    """A column as a nullable string: lists joined, numbers printed, blanks -> null."""
    dtype = frame.schema[col]
    e = pl.col(col)
    if isinstance(dtype, (pl.List, pl.Array)):
        e = e.cast(pl.List(pl.String)).list.drop_nulls().list.join(t.list_separator)
    elif dtype == pl.Boolean:
        e = pl.when(e).then(pl.lit(col)).otherwise(None)
    elif dtype.is_float():
        e = pl.when(e == e.round(0)).then(e.cast(pl.Int64).cast(pl.String)).otherwise(e.cast(pl.String))
    elif dtype != pl.String:
        e = e.cast(pl.String)
    e = e.str.strip_chars()
    return pl.when(e.str.len_chars() > 0).then(e).otherwise(None)


def _attribute_columns(frame: pl.DataFrame, t: TextTemplates) -> list[str]:
    skip = set(t.item_fields) | set(t.item_exclude)
    out = []
    for c, dt in frame.schema.items():
        if c in skip:
            continue
        if dt == pl.String or dt.is_numeric() or dt == pl.Boolean or isinstance(dt, pl.List):
            out.append(c)
    return out


def item_text_expr(frame: pl.DataFrame, templates: TextTemplates | None = None) -> pl.Expr:
    """The item text as one polars expression over ``frame`` (the catalogue)."""
    t = templates or TextTemplates()
    parts: list[pl.Expr] = []
    for f in t.item_fields:
        if f == ATTRIBUTES:
            for c in _attribute_columns(frame, t):
                parts.append(pl.concat_str([pl.lit(f"{t.item_labels.get(c, c)}: "), _value_expr(frame, c, t)]))
        elif f in frame.columns:
            v = _value_expr(frame, f, t)
            label = t.item_labels.get(f)
            parts.append(pl.concat_str([pl.lit(label), v]) if label else v)
    if not parts:
        return pl.lit("")
    text = pl.concat_str(parts, separator=t.item_separator, ignore_nulls=True).fill_null("")
    return text.str.slice(0, t.max_item_chars)


def render_items(frame: pl.DataFrame, templates: TextTemplates | None = None) -> list[str]:
    """One text per row of the catalogue ``frame`` (row i = item index i)."""
    if frame.height == 0:
        return []
    return frame.select(item_text_expr(frame, templates).alias("text"))["text"].to_list()


# ----------------------------------------------------------------------------------------------- users


def _fmt(template: str, values: Mapping[str, Any]) -> str:
    """Fill ``{field}`` placeholders; a missing/null field vanishes with the spaces and commas around it."""
    import re

    def sub(m: re.Match) -> str:
        v = values.get(m.group(1))
        if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "":
            return "\x00"
        return str(v)

    s = re.sub(r"\{(\w+)\}", sub, template)
    s = re.sub(r"[ ,]*\x00[ ,]*", " ", s) if "\x00" in s else s
    return re.sub(r"\s+", " ", s).strip(" ,")


def render_profile(profile: Mapping[str, Any] | None, templates: TextTemplates | None = None) -> str:
    t = templates or TextTemplates()
    if not profile:
        return ""
    return _fmt(t.profile_template, profile)


def time_of_day(hour: int, templates: TextTemplates | None = None) -> str:
    """The part of the day of ``hour`` under the templates' ``times_of_day`` (``recsys.context.time_of_day``)."""
    return _time_of_day(hour, (templates or TextTemplates()).times_of_day)


def render_context(context: Mapping[str, Any] | None, templates: TextTemplates | None = None) -> str:
    """'evening, Saturday, device: mobile' from the request's timestamp and context columns."""
    t = templates or TextTemplates()
    if not context:
        return ""
    out: list[str] = []
    ts = context.get(S.TIMESTAMP)
    if isinstance(ts, _dt.datetime):
        out += [time_of_day(ts.hour, t), _WEEKDAYS[ts.weekday()]]
    cols = t.context_columns if t.context_columns is not None else [c for c in context if c != S.TIMESTAMP]
    for c in cols:
        v = context.get(c)
        if v is None or str(v).strip() == "":
            continue
        out.append(f"{t.context_labels.get(c, c)}: {v}")
    return ", ".join(out)


def render_history(history: Sequence[int] | np.ndarray, item_texts: Sequence[str], templates: TextTemplates | None = None) -> str:
    """Most recent items first (``history`` is oldest first), within the item count and character budgets."""
    t = templates or TextTemplates()
    pieces: list[str] = []
    used = 0
    for i in list(history)[::-1][: t.history_max_items]:
        s = item_texts[int(i)]
        extra = len(s) + (len(t.history_separator) if pieces else 0)
        if pieces and used + extra > t.history_max_chars:
            break
        pieces.append(s[: t.history_max_chars])
        used += extra
    return (t.history_prefix + t.history_separator.join(pieces)) if pieces else ""


def history_item_texts(frame: pl.DataFrame, templates: TextTemplates | None = None) -> list[str]:
    """Short per-item texts used inside user text (by default the title only)."""
    t = templates or TextTemplates()
    short = TextTemplates(**{**t.to_dict(), "item_fields": list(t.history_item_fields), "item_labels": {}})
    return render_items(frame, short)


def render_users(
    histories: Sequence[Sequence[int] | np.ndarray],
    items: pl.DataFrame | Sequence[str],
    *,
    profiles: pl.DataFrame | Sequence[Mapping[str, Any] | None] | None = None,
    context: pl.DataFrame | Sequence[Mapping[str, Any] | None] | None = None,
    templates: TextTemplates | None = None,
) -> list[str]:
    """One text per user: profile, request context and recent history, in ``templates.user_parts`` order.

    ``items`` is the catalogue frame (rendered with ``history_item_fields``) or ready per-item texts.
    """
    t = templates or TextTemplates()
    texts = history_item_texts(items, t) if isinstance(items, pl.DataFrame) else list(items)
    n = len(histories)
    prof = profiles.to_dicts() if isinstance(profiles, pl.DataFrame) else (list(profiles) if profiles is not None else [None] * n)
    ctx = context.to_dicts() if isinstance(context, pl.DataFrame) else (list(context) if context is not None else [None] * n)
    if len(prof) != n or len(ctx) != n:
        raise ValueError(f"{n} histories but {len(prof)} profiles and {len(ctx)} contexts")
    out = []
    for h, p, c in zip(histories, prof, ctx):
        parts = {
            "profile": render_profile(p, t),
            "context": (t.context_prefix + s) if (s := render_context(c, t)) else "",
            "history": render_history(h, texts, t),
        }
        out.append(t.user_separator.join(parts[k] for k in t.user_parts if parts.get(k)))
    return out


__all__ = [
    "ATTRIBUTES",
    "TextTemplates",
    "history_item_texts",
    "item_text_expr",
    "render_context",
    "render_history",
    "render_items",
    "render_profile",
    "render_users",
    "time_of_day",
]
