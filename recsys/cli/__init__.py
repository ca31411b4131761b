"""The ``recsys`` command line: a thin Typer layer over the library (parsing and printing only)."""

from __future__ import annotations

import sys

import typer

from recsys.errors import RecsysError

app = typer.Typer(
    name="recsys",
    help="Pretrained-language-model recommender: data, training, FAISS retrieval, reranking, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from recsys.cli import data as data_cli
    from recsys.cli import evaluate as evaluate_cli
    from recsys.cli import run as run_cli

    app.add_typer(data_cli.app, name="data")
    app.command("evaluate")(evaluate_cli.evaluate)
    app.command("run")(run_cli.run)


_register()


def main() -> None:
    """Console entry point: RecsysError becomes a one-line message on stderr and exit code 2."""
    try:
        app(standalone_mode=False)
    except RecsysError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
