"""Dataset statistics (``recsys data describe``).

Definitions:

* ``users`` are the distinct users that have interactions, ``items`` the rows of the item table, ``profiles`` the
  rows of the user table (0 without one).
* ``density`` = distinct (user, item) pairs / (users x items).
* ``per_user`` / ``per_item``: interactions per user / per item over the users / items that have at least one
  interaction (``items_without_interactions`` counts the rest of the catalogue); quantiles use linear
  interpolation (numpy's default).
* ``time``: first and last timestamp, and the span in days; ``synthetic`` is true when the importer made
  timestamps up from row or column order (the span then means nothing).
* ``ratings``: count and share per distinct value (up to 20 distinct values, otherwise quantiles), and the mean.
* ``context``: per context column, its type, number of distinct values, nulls and the most frequent values.
* ``text_coverage``: per item text column, the fraction of items whose value is non-null and non-empty
  (strings: not blank; lists: at least one element).
* ``item_text``: what the text models will read under the default text settings (``recsys.text``): the columns the
  item text is rendered from, the share of items whose text is empty, and the text of the first three items.
* ``time.time_context``: false when the timestamps are synthetic: no model then reads a time of day or weekday.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from recsys.data import schema as S
from recsys.data.dataset import Dataset, timestamps_synthetic
from recsys.text import TextTemplates, empty_text_share, fallback_text_columns, item_text_fields, render_items

QUANTILES = (("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p90", 0.9))
TOP_VALUES = 5
MAX_RATING_VALUES = 20
SAMPLE_ITEMS = 3
#: the fix named when no item has text (import and describe say it; training refuses such a catalogue)
NO_TEXT_FIX = (
    "the text models (retriever, zero-shot, reranker) have nothing to read: add a text column to the items file "
    "(title, name, description, ...) and import again, or name the columns with --item-text COL,COL when training"
)


def describe(dataset: Dataset) -> dict[str, Any]:
    inter, items, users = dataset.interactions, dataset.items, dataset.users
    n_inter = inter.height
    n_users = inter[S.USER_ID].n_unique()
    n_items = items.height
    pairs = inter.select(pl.struct(S.USER_ID, S.ITEM_ID).n_unique()).item() if n_inter else 0
    per_user = inter.group_by(S.USER_ID).len()["len"]
    per_item = inter.group_by(S.ITEM_ID).len()["len"]
    out: dict[str, Any] = {
        "name": dataset.name,
        "path": str(dataset.path) if dataset.path is not None else None,
        "fingerprint": dataset.fingerprint,
        "counts": {
            "interactions": n_inter,
            "users": n_users,
            "items": n_items,
            "profiles": users.height if users is not None else 0,
            "items_with_interactions": per_item.len(),
            "items_without_interactions": n_items - int(items[S.ITEM_ID].is_in(inter[S.ITEM_ID].implode()).sum()),
        },
        "density": pairs / (n_users * n_items) if n_users and n_items else 0.0,
        "time": _time(inter, dataset.manifest),
        "per_user": _summary(per_user),
        "per_item": _summary(per_item),
        "ratings": _ratings(inter[S.RATING]) if S.RATING in inter.columns else None,
        "context": {c: _context(inter[c]) for c in dataset.context_columns},
        "text_coverage": {c: _coverage(items[c]) for c in _text_columns(dataset)},
        "item_text": item_text_report(items),
    }
    return out


def item_text_report(items: pl.DataFrame, templates: TextTemplates | None = None) -> dict[str, Any]:
    """The item text the text models will read: its columns, the share of empty texts and three sample items."""
    texts = render_items(items, templates)
    ids = items[S.ITEM_ID].head(SAMPLE_ITEMS).to_list()
    return {
        "fields": item_text_fields(items, templates),
        "empty_share": empty_text_share(texts),
        "samples": [{"item_id": i, "text": t} for i, t in zip(ids, texts)],
    }


def format_item_text(report: dict[str, Any]) -> list[str]:
    """Lines that show what the model will read (and the fix when nothing is there)."""
    fields = ", ".join(report["fields"]) or "(no text column)"
    lines = [f"item text (from {fields}; {report['empty_share']:.1%} of items empty):"]
    lines += [f"  {s['item_id']}: {s['text'] or '(empty)'}" for s in report["samples"]]
    if report["samples"] and report["empty_share"] >= 1.0:
        lines.append(f"warning: no item has any text: {NO_TEXT_FIX}")
    return lines


def _time(inter: pl.DataFrame, manifest: dict[str, Any]) -> dict[str, Any]:
    ts = inter[S.TIMESTAMP]
    first, last = ts.min(), ts.max()
    synthetic = timestamps_synthetic(manifest)
    if first is None or last is None:
        return {"first": None, "last": None, "days": 0.0, "synthetic": synthetic, "time_context": not synthetic}
    return {
        "first": first.isoformat(),  # type: ignore[union-attr]
        "last": last.isoformat(),  # type: ignore[union-attr]
        "days": (last - first).total_seconds() / 86400,  # type: ignore[operator]
        "synthetic": synthetic,
        "time_context": not synthetic,
    }


def _summary(counts: pl.Series) -> dict[str, float]:
    if counts.len() == 0:
        return {k: 0.0 for k in ("min", *(q for q, _ in QUANTILES), "max", "mean")}
    c = counts.cast(pl.Float64)
    out = {"min": float(c.min())}  # type: ignore[arg-type]
    out.update({name: float(c.quantile(q, interpolation="linear")) for name, q in QUANTILES})  # type: ignore[arg-type]
    out["max"] = float(c.max())  # type: ignore[arg-type]
    out["mean"] = float(c.mean())  # type: ignore[arg-type]
    return out


def _ratings(r: pl.Series) -> dict[str, Any]:
    out: dict[str, Any] = {"mean": float(r.mean()) if r.len() else None}  # type: ignore[arg-type]
    counts = r.value_counts(sort=False).sort(r.name)
    if counts.height <= MAX_RATING_VALUES:
        out["distribution"] = [
            {"value": _plain(v), "count": int(n), "share": int(n) / r.len()} for v, n in counts.iter_rows()
        ]
    else:
        out["quantiles"] = _summary(r)
    return out


def _context(s: pl.Series) -> dict[str, Any]:
    counts = s.drop_nulls().value_counts(sort=False).sort(["count", s.name], descending=[True, False])
    return {
        "dtype": str(s.dtype),
        "distinct": s.drop_nulls().n_unique(),
        "nulls": s.null_count(),
        "top": [{"value": _plain(v), "count": int(n)} for v, n in counts.head(TOP_VALUES).iter_rows()],
    }


def _text_columns(dataset: Dataset) -> list[str]:
    cols = fallback_text_columns(dataset.items)
    cols += [c for c in S.ITEM_TEXT_FIELDS if c in dataset.items.columns and c not in cols]
    return cols


def _coverage(s: pl.Series) -> float:
    if s.len() == 0:
        return 0.0
    if s.dtype == pl.String:
        ok = s.is_not_null() & (s.str.strip_chars() != "")
    elif isinstance(s.dtype, pl.List):
        ok = s.is_not_null() & (s.list.len() > 0)
    else:
        ok = s.is_not_null()
    return float(ok.fill_null(False).sum()) / s.len()


def _plain(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v) if abs(v) < 2**53 else v
    return v


# --------------------------------------------------------------------------------------------------- text


def format_describe(d: dict[str, Any]) -> str:
    """Human-readable, aligned rendering of :func:`describe`'s result."""
    lines: list[str] = []

    def table(title: str, rows: list[tuple[str, ...]], align: str = "") -> None:
        lines.append(title)
        if not rows:
            lines.append("  (none)")
            lines.append("")
            return
        widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
        for r in rows:
            cells = [
                cell.ljust(w) if (align[k] if k < len(align) else ("l" if k == 0 else "r")) == "l" else cell.rjust(w)
                for k, (cell, w) in enumerate(zip(r, widths))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        lines.append("")

    c = d["counts"]
    t = d["time"]
    table(
        f"dataset {d['name']}" + (f" ({d['path']})" if d.get("path") else "") + f"  fingerprint {d['fingerprint']}",
        [
            ("interactions", f"{c['interactions']:,}"),
            ("users", f"{c['users']:,}"),
            ("items", f"{c['items']:,}"),
            ("items without interactions", f"{c['items_without_interactions']:,}"),
            ("user profiles", f"{c['profiles']:,}"),
            ("density", f"{d['density']:.4%}"),
            ("first interaction", str(t["first"])),
            ("last interaction", str(t["last"])),
            ("time span (days)", f"{t['days']:,.1f}"),
        ],
    )
    if t["synthetic"]:
        lines.insert(-1, "  (synthetic timestamps: the importer made them from row or column order; only the order means anything,")
        lines.insert(-1, "   so no model reads a time of day or weekday from them)")
    keys = ["min", *(q for q, _ in QUANTILES), "max", "mean"]
    table(
        "interactions per",
        [("", *keys)]
        + [(who, *(_num(d[f"per_{who}"][k]) for k in keys)) for who in ("user", "item")],
    )
    r = d.get("ratings")
    if r is not None:
        if "distribution" in r:
            rows = [("rating", "count", "share")] + [
                (str(e["value"]), f"{e['count']:,}", f"{e['share']:.1%}") for e in r["distribution"]
            ]
        else:
            rows = [(k, _num(v)) for k, v in r["quantiles"].items()]
        table(f"ratings (mean {r['mean']:.3f})" if r["mean"] is not None else "ratings", rows)
    ctx = d["context"]
    table(
        "context columns",
        [("column", "type", "distinct", "nulls", "top values")]
        + [
            (name, e["dtype"], f"{e['distinct']:,}", f"{e['nulls']:,}", ", ".join(f"{v['value']} ({v['count']:,})" for v in e["top"]))
            for name, e in ctx.items()
        ]
        if ctx
        else [],
        align="llrrl",
    )
    cov = d["text_coverage"]
    table("item text coverage", [(k, f"{v:.1%}") for k, v in cov.items()])
    if d.get("item_text") is not None:
        lines += format_item_text(d["item_text"])
    return "\n".join(lines).rstrip() + "\n"


def _num(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"
