"""``recsys evaluate``: the offline protocol of EVALUATION.md, baselines side by side in one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import echo_json


def evaluate(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory (from `recsys data import` or `recsys data demo`).")],
    models: Annotated[str, typer.Option("--models", "-m", help="Comma-separated: popularity, itemknn, ease, ials, bpr, sasrec, retriever, zero-shot.", envvar="RECSYS_EVALUATE__MODELS")] = "popularity,itemknn,ease",
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the JSON report to this file ('-' prints it instead of the table).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Pipeline TOML whose [evaluate] table supplies params and grids.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Fix a model parameter: model.name=value (repeatable), e.g. sasrec.time_budget_s=60.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the tie-break keys.", envvar="RECSYS_EVALUATE__SEED")] = 0,
    cold_start: Annotated[bool, typer.Option("--cold-start/--no-cold-start", help="Also run the cold-start-item protocol.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Train every model on the protocol's split (tuned on validation) and print one comparison table."""
    from recsys.data.dataset import Dataset
    from recsys.evaluation.protocol import EvaluationSettings, evaluate as run_evaluation, format_table
    from recsys.manifest import write_text_atomic
    from recsys.settings import apply_overrides

    params: dict = {}
    grids: dict = {}
    if config is not None:
        from recsys.workflow import load_pipeline

        stage = load_pipeline(config).evaluate
        if stage is not None:
            params, grids = dict(stage.params), dict(stage.grids)
    params = apply_overrides(params, param or [], env={})
    names = [m.strip() for m in models.split(",") if m.strip()]
    settings = EvaluationSettings(models=names, params=params, grids=grids, seed=seed, cold_start=cold_start)
    to_stdout = json_file is not None and str(json_file) == "-"
    log = None if quiet else (lambda m: typer.echo(m, err=True))
    report = run_evaluation(Dataset.load(dataset), settings, progress=log)
    if to_stdout:
        echo_json(report)
        return
    if json_file is not None:
        write_text_atomic(json_file, json.dumps(report, indent=2, default=str))
    typer.echo(format_table(report))
