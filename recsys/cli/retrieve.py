"""``recsys build-index`` and ``recsys retrieve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import OverwriteOpt, echo_json
from recsys.errors import RecsysError


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


def build_cooccurrence(
    dataset: Annotated[Path, typer.Argument(help="Dataset whose interactions to count.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write (atomically).")],
    neighbours: Annotated[int, typer.Option("--neighbours", help="Most similar items kept per item (ItemKNN's k).")] = 50,
    overwrite: OverwriteOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Fit the co-occurrence candidate source (item-item cosine of who consumed what), merged with the two-tower's
    candidates before reranking (--cooccurrence on retrieve, batch-score and serve)."""
    from recsys.service.cooccurrence import CooccurrenceSource
    from recsys.data.dataset import Dataset

    source = CooccurrenceSource.fit(Dataset.load(dataset), neighbours=neighbours)
    source.save(out, overwrite=overwrite)
    summary = {"out": str(out), "items": len(source.item_ids), "pairs": int(source.matrix.nnz), "neighbours": neighbours, "fingerprint": source.fingerprint}
    if json_out:
        echo_json(summary)
    else:
        typer.echo(f"wrote {out}: {summary['items']:,} items, {summary['pairs']:,} neighbour pairs")


def retrieve(
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory (from `recsys build-index`).")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="User id; their stored history is read from the index's dataset.")] = None,
    k: Annotated[int, typer.Option("-k", help="How many items.")] = 20,
    context: Annotated[str | None, typer.Option("--context", "-c", help="Request context, e.g. time=evening,device=mobile,weekday=sat.")] = None,
    history: Annotated[str | None, typer.Option("--history", help="New user: comma-separated item ids, oldest first.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="New user: a profile text, e.g. 'loves jazz records'.")] = None,
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="Read histories from this dataset instead of the index's.")] = None,
    run: Annotated[Path | None, typer.Option("--run", help="Retriever run (default: the one recorded in the index).")] = None,
    rerank: Annotated[Path | None, typer.Option("--rerank", help="Reranker run (from `recsys train reranker`): rerank the top --candidates with it.", envvar="RECSYS_RERANK_RUN")] = None,
    candidates: Annotated[int | None, typer.Option("--candidates", help="How many retrieved items the reranker reads (default: the reranker's setting).")] = None,
    inference: Annotated[str, typer.Option("--inference", help="Reranker inference: auto (onnx when onnxruntime is installed, else fp32), fp32, bf16, onnx or onnx-int8.")] = "auto",
    cooccurrence: Annotated[Path | None, typer.Option("--cooccurrence", help="Co-occurrence source (from `recsys build-cooccurrence`) whose candidates join the reranked pool.", envvar="RECSYS_COOCCURRENCE")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show why: the history items behind each item and, when reranked, each context field's effect.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the recommendations as JSON.")] = False,
) -> None:
    """Recommend k items: encode the user (history + context), search the index, drop items already seen, and with
    --rerank reorder the top candidates with the context-aware cross-encoder."""
    from recsys.context import parse_context
    from recsys.service.retrieval import RetrievalService

    if cooccurrence is not None and rerank is None:
        raise RecsysError("--cooccurrence merges candidates before reranking: it needs --rerank")
    service = RetrievalService.open(
        index, dataset_dir=dataset, run_dir=run, rerank_run=rerank, rerank_inference=inference, rerank_depth=candidates, cooccurrence=cooccurrence
    )
    user_id = service.dataset.user_id_from_text(user) if user is not None else None
    hist = [service.dataset.item_id_from_text(x.strip()) for x in history.split(",") if x.strip()] if history else None
    ctx = parse_context(context)
    recs = service.recommend(user_id, history=hist, profile=profile, context=ctx, k=k, explain=explain)
    if json_out:
        reranker = None
        if service.reranker is not None:
            reranker = {"run": str(rerank), "fingerprint": service.reranker.fingerprint, "candidates": candidates or service.reranker.depth, "inference": service.reranker.inference}
        if reranker is not None and service.cooccurrence is not None:
            reranker["cooccurrence"] = {"source": str(cooccurrence), "fingerprint": service.cooccurrence.fingerprint}
        echo_json({"user": user_id, "k": k, "context": ctx, "reranker": reranker, "items": [r.to_dict() for r in recs]})
        return
    width = max([len(str(r.item_id)) for r in recs] + [7])
    reranked = service.reranker is not None
    head = f"{'rank':>4}  {'item_id':<{width}}  {'score':>7}" + (f"  {'retrieval':>9}" if reranked else "") + "  title"
    typer.echo(head)
    for r in recs:
        extra = f"  {r.retrieval_score:>9.4f}" if reranked else ""
        if "source" in r.reasons:
            extra += f"  [{r.reasons['source']}]"
        typer.echo(f"{r.rank:>4}  {str(r.item_id):<{width}}  {r.score:>7.4f}{extra}  {r.title or ''}")
        if explain:
            for s in r.reasons.get("history", []):
                typer.echo(f"{'':>6}because of {s['item_id']} {s.get('title') or ''} (similarity {s['similarity']:.3f})")
            effects = {f: v for f, v in r.reasons.get("context", {}).items() if f != "all"}
            if effects:
                typer.echo(f"{'':>6}context: " + ", ".join(f"{f} {v:+.3f}" for f, v in sorted(effects.items(), key=lambda kv: -abs(kv[1]))))
