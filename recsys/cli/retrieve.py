"""``recsys build-index`` and ``recsys retrieve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import OverwriteOpt, echo_json


def build_index(
    run: Annotated[Path, typer.Argument(help="Retriever run directory (from `recsys train retriever`).")],
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Dataset whose items to index.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to write (atomically).")],
    index_type: Annotated[str, typer.Option("--index-type", help="auto (exact up to 1M items, IVF above), flat, ivf or hnsw.")] = "auto",
    device: Annotated[str, typer.Option("--device", help="auto (GPU when faiss has GPU support and one is visible), cpu or gpu.", envvar="RECSYS_DEVICE")] = "auto",
    inference: Annotated[
        str, typer.Option("--inference", help="How item text is embedded: fp32 (torch), onnx or onnx-int8 (onnxruntime; exported once, cached).")
    ] = "fp32",
    overwrite: OverwriteOpt = False,
    item_text: Annotated[str | None, typer.Option("--item-text", help="Render the item text from these columns instead of the run's (items whose text changes are embedded from it).", metavar="COL,COL,...")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the index description as JSON.")] = False,
) -> None:
    """Encode every item with the run's item tower into a FAISS inner-product index of L2-normalised vectors."""
    from recsys.data.dataset import Dataset
    from recsys.index.build import build_index as build
    from recsys.text import parse_item_fields

    index = build(
        run, Dataset.load(dataset), out, index_type=index_type, device=device, progress=not json_out, inference=inference,
        item_fields=parse_item_fields(item_text), overwrite=overwrite,
    )
    info = index.info()
    if json_out:
        echo_json(info)
    else:
        recall = f", recall@100 {info['recall_at_100']:.4f}" if info.get("recall_at_100") is not None else ""
        typer.echo(f"wrote {out}: {info['count']:,} items, {info['type']} index, dim {info['dim']}{recall}")
        meta = index.metadata
        if meta.get("run_item_text_fields") not in (None, meta.get("item_text_fields")):
            typer.echo(
                f"note: item text rendered from {', '.join(meta['item_text_fields'])}, the run's model from "
                f"{', '.join(meta['run_item_text_fields'])}: {meta['text_encoded_items']:,} items embedded from their new text", err=True
            )


def retrieve(
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory (from `recsys build-index`).")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="User id; their stored history is read from the index's dataset.")] = None,
    k: Annotated[int, typer.Option("-k", help="How many items.")] = 20,
    context: Annotated[str | None, typer.Option("--context", "-c", help="Request context, e.g. time=evening,device=mobile,weekday=sat.")] = None,
    history: Annotated[str | None, typer.Option("--history", help="New user: comma-separated item ids, oldest first.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="New user: a profile text, e.g. 'loves jazz records'.")] = None,
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="Read histories from this dataset instead of the index's.")] = None,
    run: Annotated[Path | None, typer.Option("--run", help="Retriever run (default: the one recorded in the index).")] = None,
    rerank: Annotated[Path | None, typer.Option("--rerank", help="Ranking run (from `recsys train ranker`): rank the retriever's top --candidates together with its other sources' candidates.", envvar="RECSYS_RERANK_RUN")] = None,
    candidates: Annotated[int | None, typer.Option("--candidates", help="How many retrieved items the ranker reads (default and most: the run's depth).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show why: the ranker's reasons (feature contributions) and the history items behind each item.")] = False,
    verb: Annotated[str | None, typer.Option("--verb", help="What an interaction is in the ranker's reasons ('you watched X'); default: from the dataset (watched, bought, else picked).", envvar="RECSYS_EXPLAIN_VERB")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the recommendations as JSON.")] = False,
) -> None:
    """Recommend k items: encode the user (history + context), search the index, drop items already seen, and with
    --rerank order the top candidates (and the ranking run's other sources') with the learned ranker."""
    from recsys.context import parse_context
    from recsys.service.retrieval import RetrievalService

    service = RetrievalService.open(index, dataset_dir=dataset, run_dir=run, rerank_run=rerank, rerank_depth=candidates, verb=verb)
    user_id = service.dataset.user_id_from_text(user) if user is not None else None
    hist = [service.dataset.item_id_from_text(x.strip()) for x in history.split(",") if x.strip()] if history else None
    ctx = parse_context(context)
    recs = service.recommend(user_id, history=hist, profile=profile, context=ctx, k=k, explain=explain)
    ranker = None
    if service.ranker is not None:
        ranker = {"run": str(rerank), "fingerprint": service.ranker.fingerprint, "candidates": service.ranker.depth, "sources": service.ranker.source_names}
    if json_out:
        echo_json({"user": user_id, "k": k, "context": ctx, "ranker": ranker, "items": [r.to_dict() for r in recs]})
        return
    width = max([len(str(r.item_id)) for r in recs] + [7])
    head = f"{'rank':>4}  {'item_id':<{width}}  {'score':>7}" + (f"  {'retrieval':>9}" if ranker else "") + "  title"
    typer.echo(head)
    for r in recs:
        extra = ""
        if ranker:
            extra = f"  {r.retrieval_score:>9.4f}" if r.retrieval_score is not None else f"  {'-':>9}"
        typer.echo(f"{r.rank:>4}  {str(r.item_id):<{width}}  {r.score:>7.4f}{extra}  {r.title or ''}")
        if explain:
            if r.reasons.get("ranker"):
                typer.echo(f"{'':>6}" + " · ".join(r.reasons["ranker"]))
            if r.reasons.get("sources"):
                typer.echo(f"{'':>6}proposed by: {', '.join(r.reasons['sources'])}")
            for s in r.reasons.get("history", []):
                typer.echo(f"{'':>6}because of {s['item_id']} {s.get('title') or ''} (similarity {s['similarity']:.3f})")
