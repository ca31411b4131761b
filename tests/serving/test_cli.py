"""``recsys serve`` as a Typer command (registered by the CLI as ``serve``): options and early errors."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from recsys.cli.serve import serve
from recsys.errors import RecsysError


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("serve")(serve)
    app.command("noop")(lambda: None)  # two commands, so "serve" is a subcommand as in the real CLI
    return app


def test_help_lists_options():
    out = CliRunner().invoke(_app(), ["serve", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for option in ("--index", "--dataset", "--host", "--port", "--workers", "--threads", "--micro-batch", "--config", "--set"):
        assert option in out.output
    assert "127.0.0.1" in out.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--index", "/nonexistent/index"], "does not exist"),
        (["--index", ".", "--workers", "0"], "--workers"),
        (["--index", ".", "--port", "70000"], "--port"),
        (["--index", ".", "--threads", "-1"], "--threads"),
        (["--index", ".", "--set", "bogus=1"], "unknown serve settings: bogus"),
        (["--index", ".", "--set", "max_candidates=0"], "max_candidates must be a positive number"),
    ],
)
def test_bad_options_are_recsys_errors(args, message):
    out = CliRunner().invoke(_app(), ["serve", *args])
    assert isinstance(out.exception, RecsysError) and message in str(out.exception)

