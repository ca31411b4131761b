"""The ``recsys`` command line: a thin Typer layer over the library (parsing and printing only)."""

from __future__ import annotations

import os

import click
import typer
from typer.core import TyperGroup

from recsys.errors import RecsysError


class _RecsysGroup(TyperGroup):
    """Root group: a RecsysError anywhere below becomes ``error: ...`` on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except RecsysError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc


app = typer.Typer(
    name="recsys",
    cls=_RecsysGroup,
    help="Pretrained-language-model recommender: data, training, FAISS retrieval, learned ranking, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from recsys.cli import batch as batch_cli
    from recsys.cli import data as data_cli
    from recsys.cli import evaluate as evaluate_cli
    from recsys.cli import index as index_cli
    from recsys.cli import retrieve as retrieve_cli
    from recsys.cli import run as run_cli
    from recsys.cli import serve as serve_cli
    from recsys.cli import train as train_cli

    app.add_typer(data_cli.app, name="data")
    app.add_typer(train_cli.app, name="train")
    app.command("build-index")(retrieve_cli.build_index)
    app.add_typer(index_cli.app, name="index")
    app.command("retrieve")(retrieve_cli.retrieve)
    app.command("batch-score")(batch_cli.batch_score)
    app.command("serve")(serve_cli.serve)
    app.command("evaluate")(evaluate_cli.evaluate)
    app.command("run")(run_cli.run)


_register()


def main() -> None:
    """Console entry point (library progress bars of model loading are noise on a command line)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
