"""``recsys data``: import, generate and describe datasets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from recsys.cli.common import OverwriteOpt, echo_json

if TYPE_CHECKING:
    from recsys.data.dataset import Dataset

app = typer.Typer(help="Create, import and inspect datasets (interactions, items, users as parquet).", no_args_is_help=True)
import_app = typer.Typer(help="Import third-party formats into a dataset directory.", no_args_is_help=True)
app.add_typer(import_app, name="import")

def _report(saved: "Dataset", json_out: bool, headline: str) -> None:
    """What every import prints: the manifest (--json, with ``item_text``) or the headline and the item text the
    text models will read; a catalogue without any text gets a warning naming the fix (on stderr)."""
    from recsys.data.describe import format_item_text, item_text_report

    report = item_text_report(saved.items)
    if json_out:
        echo_json({**saved.manifest, "item_text": report})
        if report["samples"] and report["empty_share"] >= 1.0:
            typer.echo(format_item_text(report)[-1], err=True)
        return
    typer.echo(headline)
    for line in format_item_text(report):
        typer.echo(line, err=line.startswith("warning:"))


OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write (replaced atomically).")]


@import_app.command("movielens")
def import_movielens_cmd(
    src: Annotated[Path, typer.Argument(help="MovieLens directory: 100K (u.data), 1M (*.dat) or latest/25M/32M (*.csv).")],
    out: OutOpt,
    overwrite: OverwriteOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the dataset manifest as JSON.")] = False,
) -> None:
    """Import a MovieLens release (variant auto-detected) into a dataset directory."""
    from recsys.data.importers.movielens import import_movielens

    ds, source = import_movielens(src)
    saved = ds.save(out, source=source, overwrite=overwrite)
    c = saved.manifest["counts"]
    _report(saved, json_out, f"wrote {out}: {c['interactions']:,} interactions, {c['items']:,} items, {c['users']:,} users ({source['name']})")


@import_app.command("table")
def import_table_cmd(
    interactions: Annotated[Path, typer.Option("--interactions", "-i", help="Interactions file (.csv, .tsv or .parquet): user_id, item_id, optional timestamp, rating, weight and context columns.")],
    items: Annotated[Path, typer.Option("--items", help="Items file (.csv, .tsv or .parquet): item_id plus attribute/text columns.")],
    out: OutOpt,
    users: Annotated[Optional[Path], typer.Option("--users", help="Optional users file: user_id plus profile columns.")] = None,
    mapping: Annotated[Optional[list[str]], typer.Option("--map", help="Rename columns: user_id=COL,item_id=COL,timestamp=COL,... (prefix items./users./interactions. to scope one file; repeatable).", metavar="CANONICAL=COLUMN,...")] = None,
    order_column: Annotated[Optional[str], typer.Option("--order-column", help="Numeric interactions column that defines time order when there is no timestamp column (default: row order).", metavar="COLUMN")] = None,
    timestamp_format: Annotated[Optional[str], typer.Option("--timestamp-format", help="strftime pattern for string timestamps, e.g. '%d/%m/%Y %H:%M' (default: unix epoch numbers or ISO 8601).", metavar="FMT")] = None,
    overwrite: OverwriteOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the dataset manifest as JSON.")] = False,
) -> None:
    """Import CSV/parquet tables (interactions, items, optional users) into a dataset directory."""
    from recsys.data.importers.table import import_table, parse_mapping

    ds, source = import_table(
        interactions, items, users, mapping=parse_mapping(mapping), order_column=order_column, timestamp_format=timestamp_format
    )
    saved = ds.save(out, source=source, overwrite=overwrite)
    c = saved.manifest["counts"]
    note = "" if not source["timestamps"].get("synthetic") else (
        f"; timestamps synthesised from {source['timestamps']['from'].replace('_', ' ')} (order only: no time-of-day or weekday context)"
    )
    _report(saved, json_out, f"wrote {out}: {c['interactions']:,} interactions, {c['items']:,} items, {c['users']:,} users{note}")


@import_app.command("amazon")
def import_amazon_cmd(
    reviews: Annotated[Path, typer.Argument(help="Amazon reviews file, 2018 or 2023 release (.json/.jsonl, gzipped or not).")],
    out: OutOpt,
    meta: Annotated[Optional[Path], typer.Option("--meta", help="The matching meta file: item title, brand, categories, description, features.")] = None,
    min_user: Annotated[int, typer.Option("--min-user", help="k-core: keep users with at least this many interactions (iterated with --min-item to a fixed point).")] = 1,
    min_item: Annotated[int, typer.Option("--min-item", help="k-core: keep items with at least this many interactions.")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the dataset manifest as JSON.")] = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Import an Amazon review dump (McAuley lab; 2018 or 2023 format, streamed) into a dataset directory."""
    from recsys.data.importers.amazon import import_amazon

    ds, source = import_amazon(reviews, meta, min_user=min_user, min_item=min_item)
    saved = ds.save(out, source=source, overwrite=overwrite)
    c = saved.manifest["counts"]
    core = source["k_core"]
    notes = [source["format"], f"{source['duplicates_dropped']:,} duplicate (user, item, time) rows dropped"]
    if core["rounds"]:
        notes.append(f"{min_user}/{min_item}-core removed {core['interactions_removed']:,} interactions in {core['rounds']} rounds")
    if source["meta"] is not None:
        notes.append(f"{source['meta']['items_without_meta']:,} items without meta")
    _report(saved, json_out, f"wrote {out}: {c['interactions']:,} interactions, {c['items']:,} items, {c['users']:,} users ({'; '.join(notes)})")


@app.command("download")
def download_cmd(
    name: Annotated[str, typer.Argument(help="movielens-100k, movielens-1m or movielens-latest-small.", metavar="NAME")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Dataset directory to write (default: data/NAME; replaced atomically).")] = None,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Where archives are kept and unpacked (default: $RECSYS_CACHE or ~/.cache/recsys).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Network timeout in seconds.")] = 10.0,
    overwrite: OverwriteOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the dataset manifest as JSON.")] = False,
) -> None:
    """Download an official GroupLens MovieLens archive, verify its checksum and import it."""
    from recsys.data.importers.download import download_movielens

    ds, source = download_movielens(name, cache=cache, timeout=timeout)
    target = out if out is not None else Path("data") / name
    saved = ds.save(target, source=source, overwrite=overwrite)
    c = saved.manifest["counts"]
    d = source["download"]
    _report(
        saved, json_out,
        f"wrote {target}: {c['interactions']:,} interactions, {c['items']:,} items, {c['users']:,} users\n"
        f"archive {d['archive']} ({'cached' if d['cached'] else 'downloaded'}), sha256 {d['sha256']}",
    )


@app.command("describe")
def describe_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Counts, density, time span, activity quantiles, ratings, context values and item text coverage."""
    from recsys.data.dataset import Dataset
    from recsys.data.describe import describe, format_describe

    stats = describe(Dataset.load(dataset))
    if json_out:
        echo_json(stats)
    else:
        typer.echo(format_describe(stats), nl=False)


@app.command("demo")
def demo_cmd(
    out: OutOpt,
    users: Annotated[int, typer.Option("--users", help="Number of users (>= 1).")] = 2000,
    items: Annotated[int, typer.Option("--items", help="Number of items (>= 12, one per category).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (>= 0); same seed, same bytes.")] = 0,
    interactions_per_user: Annotated[int, typer.Option("--interactions-per-user", help="Mean draws per user (repeated items are dropped).")] = 30,
    item_context: Annotated[bool, typer.Option("--item-context", help="Also give items a format that the device favours, so the context predicts items, not only categories.")] = False,
    overwrite: OverwriteOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the dataset manifest as JSON.")] = False,
) -> None:
    """Generate the built-in demo dataset (categories, drifting tastes, device/time context; docs/demo-data.md)."""
    from recsys.data.demo import generate_demo

    ds, source = generate_demo(users=users, items=items, seed=seed, interactions_per_user=interactions_per_user, item_context=item_context)
    saved = ds.save(out, source=source, overwrite=overwrite)
    if json_out:
        echo_json(saved.manifest)
    else:
        c = saved.manifest["counts"]
        typer.echo(f"wrote {out}: {c['interactions']:,} interactions, {c['items']:,} items, {c['users']:,} users (demo, seed {seed})")
