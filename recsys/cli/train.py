"""``recsys train``: train models from a dataset directory into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import OverwriteOpt, echo_json

app = typer.Typer(help="Train models: the two-tower retriever and the learned ranker (the second stage).", no_args_is_help=True)


@app.command("retriever")
def retriever_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write (weights, settings, catalogue, manifest).")],
    config: Annotated[Path | None, typer.Option("--config", help="TOML whose [retriever] table holds RetrieverTrainingArguments.")] = None,
    base_model: Annotated[str | None, typer.Option("--base-model", help="sentence-transformers model dir or hub name (default: bundled all-MiniLM-L6-v2).", envvar="RECSYS_RETRIEVER__BASE_MODEL")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (early stopping on the held-out last interactions).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many optimiser steps.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Sequences per batch.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", help="Wall-clock seconds for training.")] = None,
    use_context: Annotated[bool | None, typer.Option("--context/--no-context", help="Learn from the request context (time, device, ...).")] = None,
    text_finetune_steps: Annotated[int | None, typer.Option("--text-finetune-steps", help="MNRL fine-tune steps of the MiniLM item tower (0 = frozen).")] = None,
    text_finetune_batch_size: Annotated[int | None, typer.Option("--text-finetune-batch-size", help="Pairs per MNRL batch (the in-batch negatives).")] = None,
    logq: Annotated[bool | None, typer.Option("--logq/--no-logq", help="Text fine-tune: subtract log q(item popularity) from every in-batch logit.")] = None,
    hard_negatives: Annotated[int | None, typer.Option("--hard-negatives", help="Text fine-tune: one hard negative per pair from the anchor's N nearest items (0 = none).")] = None,
    cached: Annotated[bool | None, typer.Option("--cached/--no-cached", help="Text fine-tune: CachedMultipleNegativesRankingLoss (large batches in bounded memory).")] = None,
    mini_batch_size: Annotated[int | None, typer.Option("--mini-batch-size", help="Text fine-tune: rows per embedding pass of the cached loss.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    item_text: Annotated[str | None, typer.Option("--item-text", help="Item columns the text is rendered from, in order, e.g. title,brand,category (default: title, genres, categories, year, description, features, tags where present, else every text column).", metavar="COL,COL,...")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Train the two-tower retriever (MiniLM item text -> adaptor + ID embeddings; transformer user tower)."""
    from recsys.data.dataset import Dataset
    from recsys.retriever.config import RetrieverTrainingArguments
    from recsys.retriever.run import train_run
    from recsys.text import parse_item_fields, with_item_fields

    args = RetrieverTrainingArguments.from_toml(config) if config else RetrieverTrainingArguments()
    flags = {
        "base_model": base_model, "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
        "time_budget_s": time_budget, "use_context": use_context, "text_finetune_steps": text_finetune_steps,
        "text_finetune_batch_size": text_finetune_batch_size, "text_finetune_logq": logq, "text_finetune_hard_negatives": hard_negatives,
        "text_finetune_cached": cached, "text_finetune_mini_batch_size": mini_batch_size, "seed": seed,
    }
    args = RetrieverTrainingArguments.from_dict({**args.to_dict(), **{k: v for k, v in flags.items() if v is not None}})
    from recsys import distributed as D

    log = (lambda m: typer.echo(m, err=True))
    ds = Dataset.load(dataset)
    args.templates = with_item_fields(args.templates, parse_item_fields(item_text), ds.items)
    summary = train_run(ds, out, args, progress=log)
    if not D.is_main():  # under torchrun only rank 0 reports
        return
    if json_out:
        echo_json(summary)
    else:
        m = summary["metrics"]
        typer.echo(f"wrote {out}: model {summary['fingerprint']}, validation NDCG@10 {m.get('val_NDCG@10', float('nan')):.4f}, "
                   f"{m.get('epochs_run')} epochs, {m.get('fit_seconds')} s")


@app.command("ranker")
def ranker_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory (the one the retriever run was trained on).")],
    retriever: Annotated[Path, typer.Option("--retriever", "-r", help="Retriever run (from `recsys train retriever`): the served first stage and the ranker's main source.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Ranking run directory to write (atomically; manifest kind ltr).")],
    config: Annotated[Path | None, typer.Option("--config", help="TOML whose [ltr] table holds LTRSettings (sources, features, LightGBM settings).")] = None,
    depth: Annotated[int, typer.Option("--depth", help="Retrieved candidates per request the ranker reads (unless [ltr] sources set the retriever's).")] = 100,
    overwrite: OverwriteOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Fit the learned ranker (LightGBM LambdaRank) over the retriever's candidates and the cheap sources (EASE,
    co-occurrence, popularity); `retrieve`, `batch-score` and `serve` use it with --rerank OUT."""
    from recsys.data.dataset import Dataset
    from recsys.ltr.run import train_ranking_run
    from recsys.settings import load_toml

    settings = load_toml(config).get("ltr") if config else None
    summary = train_ranking_run(
        Dataset.load(dataset), retriever, out, settings, depth=depth, overwrite=overwrite, progress=None if json_out else (lambda m: typer.echo(m, err=True))
    )
    if json_out:
        echo_json(summary)
    else:
        typer.echo(
            f"wrote {out}: ranking run {summary['fingerprint']} on retriever {summary['retriever_fingerprint']}, "
            f"validation NDCG@10 of the candidates {summary['validation_ndcg_at_10_candidates'] or float('nan'):.4f}, {summary['fit_seconds']} s"
        )
