"""Helpers shared by CLI modules: JSON printing and error-to-exit-code mapping for CliRunner and the console."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

#: ``--overwrite`` of every command that writes an artefact directory (``recsys.manifest.check_replaceable``).
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Also replace a recsys artefact of another kind at the output path (one of the same kind is always "
        "replaced; a directory recsys did not write never is).",
    ),
]


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))
