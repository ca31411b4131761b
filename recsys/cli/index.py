"""``recsys index``: inspect and update saved FAISS item indexes.

``add-items`` needs the text encoder to turn item text into vectors; the library side is
``recsys.index.add_items_to_saved_index`` (load, add or replace, save atomically), to be wired to a command
once the encoder exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import echo_json
from recsys.errors import RecsysError

app = typer.Typer(help="Inspect and update FAISS item indexes (index.faiss, item_ids.parquet, manifest.json).", no_args_is_help=True)

IndexArg = Annotated[Path, typer.Argument(help="Index directory (holds index.faiss, item_ids.parquet, manifest.json).")]


@app.command("info")
def info_cmd(
    index: IndexArg,
    json_out: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")] = False,
) -> None:
    """Describe an index: item count, dimension, type, metric, model fingerprint, recall@100 when approximate."""
    from recsys.index import read_index_info

    info = read_index_info(index)
    if json_out:
        echo_json(info)
        return
    rows = [
        ("path", info["path"]),
        ("type", info["type"]),
        ("items", f"{info['count']:,}" if isinstance(info["count"], int) else info["count"]),
        ("dimension", info["dim"]),
        ("metric", info["metric"]),
        ("item id type", info["id_dtype"]),
        ("model fingerprint", info["model_fingerprint"]),
        ("created", info["created"]),
    ]
    if info.get("updated"):
        rows.append(("updated", info["updated"]))
    if info.get("build_seconds") is not None:
        rows.append(("build seconds", info["build_seconds"]))
    if info.get("params"):
        rows.append(("parameters", ", ".join(f"{k}={v}" for k, v in info["params"].items())))
    if "recall_at_100" in info:
        recall = info["recall_at_100"]
        rows.append(("recall@100", f"{recall:.4f}" if isinstance(recall, float) else recall))
    if "tombstones" in info:
        rows.append(("tombstones", info["tombstones"]))
    for key, value in (info.get("metadata") or {}).items():
        rows.append((key, value))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        typer.echo(f"{key.ljust(width)}  {value}")


@app.command("remove-items")
def remove_items_cmd(
    index: IndexArg,
    ids: Annotated[str, typer.Argument(help="Comma-separated item ids, or @FILE with one id per line.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the updated index here instead of in place (atomically).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Remove items from an index without a rebuild; an id not in the index is an error and nothing changes."""
    from recsys.index import parse_item_ids, read_index_info, remove_items_from_saved_index

    id_dtype = read_index_info(index)["id_dtype"]
    item_ids = parse_item_ids(_read_id_list(ids), id_dtype)
    if not item_ids:
        raise RecsysError("no item ids given")
    updated = remove_items_from_saved_index(index, item_ids, out=out)
    target = out if out is not None else index
    if json_out:
        echo_json({"removed": len(set(item_ids)), "count": len(updated), "path": str(target)})
    else:
        typer.echo(f"removed {len(set(item_ids)):,} items from {target}; {len(updated):,} remain")


def _read_id_list(spec: str) -> list[str]:
    if spec.startswith("@"):
        path = Path(spec[1:])
        if not path.is_file():
            raise RecsysError(f"id file {path} does not exist")
        return [line for line in path.read_text().splitlines() if line.strip()]
    return spec.split(",")


@app.command("add-items")
def add_items_cmd(
    index: IndexArg,
    items_file: Annotated[Path, typer.Argument(help="CSV or parquet with item_id and text fields (title, description, ...).")],
    run: Annotated[Path | None, typer.Option("--run", help="Retriever run (default: the one recorded in the index).")] = None,
    inference: Annotated[str, typer.Option("--inference", help="How item text is embedded: fp32 (torch), onnx or onnx-int8.")] = "fp32",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Add new items (by their text alone) and re-encode changed ones, without a rebuild."""
    from recsys.index.build import add_items, read_items_file

    result = add_items(index, read_items_file(items_file), run_dir=run, inference=inference)
    if json_out:
        echo_json(result)
    else:
        typer.echo(f"updated {index}: {result}")
