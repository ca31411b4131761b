"""``recsys data``: import, generate and describe datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import echo_json

app = typer.Typer(help="Create, import and inspect datasets (interactions, items, users as parquet).", no_args_is_help=True)
import_app = typer.Typer(help="Import third-party formats into a dataset directory.", no_args_is_help=True)
app.add_typer(import_app, name="import")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write (replaced atomically).")]


@import_app.command("movielens")
def import_movielens_cmd(
    src: Annotated[Path, typer.Argument(help="MovieLens directory: 100K (u.data), 1M (*.dat) or latest/25M/32M (*.csv).")],
    out: OutOpt,
    json_out: Annotated[bool, typer.Option("--json", help="Print the dataset manifest as JSON.")] = False,
) -> None:
    """Import a MovieLens release (variant auto-detected) into a dataset directory."""
    from recsys.data.importers.movielens import import_movielens

    ds, source = import_movielens(src)
    saved = ds.save(out, source=source)
    if json_out:
        echo_json(saved.manifest)
    else:
        c = saved.manifest["counts"]
        typer.echo(f"wrote {out}: {c['interactions']:,} interactions, {c['items']:,} items, {c['users']:,} users ({source['name']})")
