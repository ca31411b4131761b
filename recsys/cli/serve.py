"""``recsys serve``: the HTTP API (FastAPI under uvicorn) over a retriever run and its index."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from recsys.errors import RecsysError

#: Environment variables that carry the app's settings into uvicorn worker processes (``--workers`` > 1).
_ENV_INDEX, _ENV_DATASET, _ENV_RUN = "RECSYS_SERVE_INDEX", "RECSYS_SERVE_DATASET", "RECSYS_SERVE_RUN"
_ENV_BATCH, _ENV_THREADS = "RECSYS_SERVE_MICRO_BATCH", "RECSYS_SERVE_THREADS"
_ENV_RERANK, _ENV_DEPTH, _ENV_SETTINGS = "RECSYS_SERVE_RERANK", "RECSYS_SERVE_RERANK_DEPTH", "RECSYS_SERVE_SETTINGS"


def app_from_env():
    """App factory for uvicorn worker processes: reads what ``serve`` put in the environment."""
    from recsys.serving.app import create_app
    from recsys.serving.settings import ServeSettings

    return create_app(
        os.environ[_ENV_INDEX],
        settings=ServeSettings.from_dict(json.loads(os.environ.get(_ENV_SETTINGS) or "{}")),
        dataset_dir=os.environ.get(_ENV_DATASET) or None,
        run_dir=os.environ.get(_ENV_RUN) or None,
        micro_batch=os.environ.get(_ENV_BATCH, "1") == "1",
        threads=int(os.environ.get(_ENV_THREADS, "1")) or None,
        rerank_run=os.environ.get(_ENV_RERANK) or None,
        rerank_depth=int(os.environ.get(_ENV_DEPTH) or 0) or None,
    )


def serve(
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory (from `recsys build-index`).")],
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="Dataset (histories, item fields); default: the index's.")] = None,
    run: Annotated[Path | None, typer.Option("--run", help="Retriever run (default: the one recorded in the index).")] = None,
    rerank: Annotated[Path | None, typer.Option("--rerank", help="Ranking run (from `recsys train ranker`): rank each request's top --rerank-depth with its other sources' candidates (per request: rerank=false turns it off).", envvar="RECSYS_RERANK_RUN")] = None,
    rerank_depth: Annotated[int | None, typer.Option("--rerank-depth", help="Default number of retrieved items the ranker reads (default and most: the run's depth).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; loopback by default (put a proxy in front to expose it).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes (each loads its own model and index).")] = 1,
    threads: Annotated[int, typer.Option("--threads", help="torch/FAISS threads per request (0 = library default); requests run in parallel anyway.")] = 1,
    micro_batch: Annotated[bool, typer.Option("--micro-batch/--no-micro-batch", help="Encode the users of concurrent requests together.")] = True,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    config: Annotated[Path | None, typer.Option("--config", help="TOML whose [serve] table sets the request limits (docs/serving.md).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a limit: field=value, e.g. --set max_candidates=100 (repeatable). RECSYS_SERVE__FIELD env vars also override.")] = None,
    verb: Annotated[str | None, typer.Option("--verb", help="What an interaction is in the ranker's reasons ('you watched X'); default: from the dataset (watched, bought, else picked).", envvar="RECSYS_EXPLAIN_VERB")] = None,
) -> None:
    """Serve recommendations over HTTP: /recommend, /items, /health, /ready, /metrics, /docs; POST /admin/reload
    swaps in another index when $RECSYS_ADMIN_TOKEN is set."""
    try:
        import uvicorn

        import recsys.serving.app  # noqa: F401 - fails early without fastapi
    except ImportError as exc:
        raise RecsysError(f"serving needs the serve extra: pip install 'recsys[serve]' ({exc})") from None
    if threads < 0:
        raise RecsysError(f"--threads must be 0 (library default) or more, got {threads}")
    if workers < 1:
        raise RecsysError(f"--workers must be at least 1, got {workers}")
    if not 0 < port < 65536:
        raise RecsysError(f"--port must be 1-65535, got {port}")
    if not index.is_dir():
        raise RecsysError(f"index directory {index} does not exist")
    if rerank is not None and not rerank.is_dir():
        raise RecsysError(f"ranking run {rerank} does not exist (train one with `recsys train ranker`)")
    if rerank_depth is not None and rerank_depth < 1:
        raise RecsysError(f"--rerank-depth must be at least 1, got {rerank_depth}")
    if verb is not None:  # read by RetrievalService in this process and in every worker
        from recsys.ltr.explain import VERB_ENV, interaction_verb

        os.environ[VERB_ENV] = interaction_verb(override=verb)
    from recsys.serving.settings import load_serve_settings

    settings = load_serve_settings(config, set_ or [])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if workers == 1:
        from recsys.serving.app import create_app

        app = create_app(
            index, dataset_dir=dataset, run_dir=run, micro_batch=micro_batch, threads=threads or None,
            rerank_run=rerank, rerank_depth=rerank_depth, settings=settings,
        )
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    os.environ[_ENV_INDEX] = str(index.resolve())
    os.environ[_ENV_DATASET] = str(dataset.resolve()) if dataset else ""
    os.environ[_ENV_RUN] = str(run.resolve()) if run else ""
    os.environ[_ENV_BATCH] = "1" if micro_batch else "0"
    os.environ[_ENV_THREADS] = str(threads)
    os.environ[_ENV_RERANK] = str(rerank.resolve()) if rerank else ""
    os.environ[_ENV_DEPTH] = str(rerank_depth or "")
    os.environ[_ENV_SETTINGS] = json.dumps(settings.to_dict())
    uvicorn.run("recsys.cli.serve:app_from_env", factory=True, host=host, port=port, workers=workers, log_level=log_level)
