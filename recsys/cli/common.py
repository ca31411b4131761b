"""Helpers shared by CLI modules: JSON printing and error-to-exit-code mapping for CliRunner and the console."""

from __future__ import annotations

import json
from typing import Any

import typer


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))
