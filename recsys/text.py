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
from recsys.errors import RecsysError

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
    #: (the defaults name MovieLens' and the Amazon importer's columns; none present = every text column, see
    #: ``effective_templates``)
    item_fields: list[str] = field(default_factory=lambda: list(S.ITEM_TEXT_FIELDS))
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


def _is_text_like(dtype: pl.DataType) -> bool:
    """Strings and lists of strings: what a column must be to count as item text without being named."""
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return True
    return isinstance(dtype, (pl.List, pl.Array)) and _is_text_like(dtype.inner)  # type: ignore[union-attr]


def fallback_text_columns(frame: pl.DataFrame, templates: TextTemplates | None = None) -> list[str]:
    """Every non-id text-like column (string, list of strings) in file order; numbers are read only when named."""
    t = templates or TextTemplates()
    skip = set(t.item_exclude) | {S.ITEM_ID}
    return [c for c, dt in frame.schema.items() if c not in skip and _is_text_like(dt)]


def effective_templates(frame: pl.DataFrame, templates: TextTemplates | None = None) -> TextTemplates:
    """The templates as they apply to ``frame``: the configured ``item_fields`` when any of them is there,
    otherwise every text-like column (see :func:`fallback_text_columns`), labelled "name: " when there are several.

    So a catalogue whose text is under ``name``, ``text`` or ``product_title`` is read as it is, without a rename.
    """
    t = templates or TextTemplates()
    if ATTRIBUTES in t.item_fields or any(f in frame.columns for f in t.item_fields):
        return t
    cols = fallback_text_columns(frame, t)
    labels = {c: t.item_labels.get(c, f"{c}: ") for c in cols} if len(cols) > 1 else dict(t.item_labels)
    return TextTemplates(**{**t.to_dict(), "item_fields": cols, "item_labels": labels})


def item_text_fields(frame: pl.DataFrame, templates: TextTemplates | None = None) -> list[str]:
    """The columns of ``frame`` the item text is rendered from (what a manifest records)."""
    t = effective_templates(frame, templates)
    if ATTRIBUTES in t.item_fields:
        return [c for f in t.item_fields for c in ([f] if f != ATTRIBUTES else _attribute_columns(frame, t)) if c in frame.columns]
    return [f for f in t.item_fields if f in frame.columns]


def parse_item_fields(spec: str | Sequence[str] | None) -> list[str] | None:
    """``"title,brand,category"`` (or several such strings) -> ``["title", "brand", "category"]``; None stays None."""
    if spec is None:
        return None
    parts = [spec] if isinstance(spec, str) else list(spec)
    fields = [f.strip() for p in parts for f in p.split(",") if f.strip()]
    if not fields:
        raise RecsysError("--item-text names no column (expected e.g. --item-text title,brand,category)")
    return fields


def with_item_fields(templates: TextTemplates, fields: Sequence[str] | None, frame: pl.DataFrame) -> TextTemplates:
    """``templates`` reading the item text from ``fields`` (checked against the catalogue ``frame``'s columns)."""
    if fields is None:
        return templates
    missing = [f for f in fields if f != ATTRIBUTES and f not in frame.columns]
    if missing:
        found = ", ".join(c for c in frame.columns if c != S.ITEM_ID)
        raise RecsysError(f"--item-text names {', '.join(missing)}, not a column of the items (found: {found or 'only item_id'})")
    return TextTemplates(**{**templates.to_dict(), "item_fields": list(fields)})


def item_text_summary(frame: pl.DataFrame, templates: TextTemplates | None = None, texts: Sequence[str] | None = None) -> dict[str, Any]:
    """What a manifest records about the item text: the columns it is rendered from and the share of empty texts."""
    texts = render_items(frame, templates) if texts is None else texts
    return {"fields": item_text_fields(frame, templates), "empty_share": round(empty_text_share(texts), 6)}


def item_text_expr(frame: pl.DataFrame, templates: TextTemplates | None = None) -> pl.Expr:
    """The item text as one polars expression over ``frame`` (the catalogue)."""
    t = effective_templates(frame, templates)
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
    """One text per row of the catalogue ``frame`` (row i = item index i), also when nothing renders."""
    if frame.height == 0:
        return []
    # with_columns broadcasts a constant expression to the frame's height (select would give one row)
    return frame.with_columns(item_text_expr(frame, templates).alias("__text"))["__text"].to_list()


def empty_text_share(texts: Sequence[str]) -> float:
    """Share of items whose rendered text is empty (blank)."""
    return sum(1 for s in texts if not s.strip()) / len(texts) if len(texts) else 0.0


def require_item_text(texts: Sequence[str], frame: pl.DataFrame, templates: TextTemplates | None = None, *, model: str = "this text model") -> None:
    """Raise when no item has any text: a text model would train on nothing. The message names the fix."""
    if len(texts) == 0 or empty_text_share(texts) < 1.0:
        return
    t = templates or TextTemplates()
    cols = [c for c in frame.columns if c != S.ITEM_ID]
    have = f"its columns are {', '.join(cols)}" if cols else "it has no column besides item_id"
    raise RecsysError(
        f"{model} reads item text, but none of the {len(texts):,} items has any: {have} and none of them is text "
        f"(item fields looked for: {', '.join(t.item_fields)}). Name the columns to read with --item-text COL,COL "
        f"(or item_fields in the [text] settings), or add a text column to the items file and import it again "
        f"(e.g. --map items.title=COLUMN)"
    )


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
    "effective_templates",
    "empty_text_share",
    "fallback_text_columns",
    "history_item_texts",
    "item_text_fields",
    "item_text_summary",
    "parse_item_fields",
    "with_item_fields",
    "item_text_expr",
    "render_context",
    "render_history",
    "render_items",
    "render_profile",
    "render_users",
    "require_item_text",
    "time_of_day",
]
