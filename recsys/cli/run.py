"""``recsys run``: run a pipeline TOML's stages in order, skipping up-to-date ones."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import echo_json


def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline TOML, e.g. pipelines/demo.toml.")],
    force: Annotated[list[str] | None, typer.Option("--force", help="Rerun this stage even if up to date (repeatable; 'all' for every stage).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a setting: stage.field=value (repeatable). RECSYS_STAGE__FIELD env vars also override.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary of what ran and what was skipped.")] = False,
) -> None:
    """Run the stages of PIPELINE in order (data, evaluate, ...); a stage whose inputs, settings and code are unchanged is skipped."""
    from recsys.workflow import load_pipeline, run_pipeline

    settings = load_pipeline(pipeline, set_ or [])
    outcomes = run_pipeline(settings, force=force or [], log=(lambda m: typer.echo(m, err=json_out)))
    if json_out:
        echo_json({"pipeline": settings.name, "stages": [asdict(o) for o in outcomes]})
