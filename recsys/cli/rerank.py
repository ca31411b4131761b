"""``recsys train reranker`` and ``recsys rerank`` (functions the root CLI registers).

Register with::

    train_cli.app.command("reranker")(rerank_cli.train_reranker_cmd)
    app.command("rerank")(rerank_cli.rerank_cmd)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import echo_json


def train_reranker_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    retriever: Annotated[Path, typer.Option("--retriever", "-r", help="Retriever run (from `recsys train retriever`): hard negatives.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Reranker run directory to write (cross_encoder/, config.json, manifest.json).")],
    config: Annotated[Path | None, typer.Option("--config", help="TOML whose [reranker] table holds RerankerTrainingArguments.")] = None,
    base_model: Annotated[str | None, typer.Option("--base-model", help="CrossEncoder/SentenceTransformer dir or hub name (default: bundled all-MiniLM-L6-v2).", envvar="RECSYS_RERANKER__BASE_MODEL")] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs over the pairs.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many optimiser steps.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Pairs (bce) or lists (listwise) per batch.")] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate.")] = None,
    negatives: Annotated[int | None, typer.Option("--negatives", help="Negatives per positive.")] = None,
    hard_fraction: Annotated[float | None, typer.Option("--hard-fraction", help="Share of negatives from the retriever's top candidates.")] = None,
    candidates: Annotated[int | None, typer.Option("--candidates", help="Retriever candidates per request (hard-negative pool).")] = None,
    positives_per_user: Annotated[int | None, typer.Option("--positives-per-user", help="Most recent training positions per user.")] = None,
    use_context: Annotated[bool | None, typer.Option("--context/--no-context", help="Put the request context into the user text.")] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="bce (default), listnet or lambda.")] = None,
    rating_head: Annotated[bool | None, typer.Option("--rating-head/--no-rating-head", help="Also train a rating/5 regression cross-encoder.")] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Tokens per (user, item) pair.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    retrieval_weight: Annotated[float | None, typer.Option("--retrieval-weight", help="Served score = logit + W x retriever cosine (default: W chosen on validation; 0 = the cross-encoder alone).")] = None,
    item_text: Annotated[str | None, typer.Option("--item-text", help="Item columns the text is rendered from, in order, e.g. title,brand,category (default: title, genres, categories, year, description, features, tags where present, else every text column).", metavar="COL,COL,...")] = None,
    eval_cases: Annotated[int, typer.Option("--eval-cases", help="Validation/test requests scored for the report (0 = all).")] = 300,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Fine-tune the context-aware cross-encoder on (user + context, next item) pairs with retriever hard negatives."""
    from recsys.data.dataset import Dataset
    from recsys.reranker.config import RerankerTrainingArguments
    from recsys.reranker.run import train_run
    from recsys.text import parse_item_fields, with_item_fields

    args = RerankerTrainingArguments.from_toml(config) if config else RerankerTrainingArguments()
    flags = {
        "base_model": base_model, "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
        "negatives_per_positive": negatives, "hard_negative_fraction": hard_fraction, "candidates": candidates,
        "positives_per_user": positives_per_user, "use_context": use_context, "loss": loss, "rating_head": rating_head,
        "max_length": max_length, "seed": seed, "progress_bar": False if json_out else None, "retrieval_weight": retrieval_weight,
    }
    try:
        args = RerankerTrainingArguments.from_dict({**args.to_dict(), **{k: v for k, v in flags.items() if v is not None}})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    from recsys import distributed as D

    ds = Dataset.load(dataset)
    args.templates = with_item_fields(args.templates, parse_item_fields(item_text), ds.items)
    summary = train_run(ds, retriever, out, args, progress=lambda m: typer.echo(m, err=True), eval_cases=eval_cases or None)
    if not D.is_main():  # under torchrun only rank 0 reports
        return
    if json_out:
        echo_json(summary)
    else:
        m = summary["metrics"]
        extra = f", rating AUC {m['rating_AUC']:.4f}, RMSE {m['rating_RMSE']:.3f}" if m.get("rating_AUC") is not None else ""
        typer.echo(
            f"wrote {out}: validation win rate vs hard negatives {m.get('val_win_rate', float('nan')):.4f}, "
            f"MRR {m.get('val_MRR', float('nan')):.4f}{extra}, retrieval weight {summary.get('retrieval_weight', 0):g}, {m.get('fit_seconds')} s"
        )


def rerank_cmd(
    run: Annotated[Path, typer.Argument(help="Reranker run directory (from `recsys train reranker`).")],
    candidates: Annotated[Path, typer.Argument(help="Candidates parquet file or directory of part-*.parquet (user_id, item_id, rank, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write: the candidates with rerank_score, reordered per user.")],
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="Histories, profiles and item text (default: the run's dataset).")] = None,
    context: Annotated[str | None, typer.Option("--context", "-c", help="Request context for every user, e.g. time=evening,device=mobile (default: now, or the candidates' own timestamp/context columns).")] = None,
    top: Annotated[int | None, typer.Option("--top", help="Keep this many per user after reranking.")] = None,
    inference: Annotated[str, typer.Option("--inference", help="fp32, bf16, onnx or onnx-int8.")] = "fp32",
    explain: Annotated[bool, typer.Option("--explain", help="Add a reasons column (supporting history items, context effects).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Rerank candidate lists with the cross-encoder (user history + profile + request context)."""
    from recsys.context import parse_context
    from recsys.service.rerank import rerank_candidates

    summary = rerank_candidates(
        run, candidates, out, dataset=dataset, context=parse_context(context) if context else None, top=top, inference=inference, explain=explain
    )
    if json_out:
        echo_json(summary)
    else:
        typer.echo(f"wrote {out}: {summary['users']:,} users, {summary['rows']:,} rows reranked in {summary['seconds']} s ({summary['pairs_per_second']} pairs/s)")
