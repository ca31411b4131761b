"""``recsys batch-score``: nightly candidate lists for every user, streamed to parquet parts, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import echo_json


def batch_score(
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory (from `recsys build-index`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory, e.g. data/candidates/2026-11-29/ (part-NNNNN.parquet + manifest.json).")],
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="Histories from this dataset (default: the index's).")] = None,
    users: Annotated[str, typer.Option("--users", help="'all', or a CSV/parquet file with a user_id column.")] = "all",
    k: Annotated[int, typer.Option("--k", "-k", help="Candidates per user.")] = 100,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Users per part file (memory stays flat in the number of users).", envvar="RECSYS_BATCH__CHUNK_SIZE")] = 10_000,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a killed run in OUT (refused if its inputs changed).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace candidates already in OUT.")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local, or ray (Ray Data actor pool; pip install 'recsys[ray]').")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: start a local Ray).", envvar="RAY_ADDRESS")] = None,
    actors: Annotated[int, typer.Option("--actors", help="Ray actors (one model load each).")] = 2,
    gpus_per_actor: Annotated[float | None, typer.Option("--gpus-per-actor", help="Ray: GPUs each actor reserves (default: 1 when the cluster has GPUs, else 0).")] = None,
    rerank: Annotated[Path | None, typer.Option("--rerank", help="Ranking run (from `recsys train ranker`): ranks each user's top --rerank-depth with its other sources' candidates (rerank_score).", envvar="RECSYS_RERANK_RUN")] = None,
    rerank_depth: Annotated[int | None, typer.Option("--rerank-depth", help="Retrieved items per user the ranker reads (default and most: the run's depth).")] = None,
    histories_cache: Annotated[Path | None, typer.Option("--histories-cache", help="Where the users' histories are prepared once per dataset and reused (default: $RECSYS_CACHE/histories; shared storage for --engine ray on a cluster).", envvar="RECSYS_BATCH__HISTORIES_CACHE")] = None,
    generated_at: Annotated[str | None, typer.Option("--generated-at", help="Request time the candidates are for (ISO 8601; default: now). Context-aware models read its hour and weekday.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Score top-k candidates for every user: encode -> FAISS search without seen items -> optional learned ranking of
    the top candidates with the ranking run's other sources -> parquet parts."""
    from recsys.batch import BatchJob, parse_time, run_batch

    job = BatchJob(index=index, out=out, dataset=dataset, users=users, k=k, chunk_size=chunk_size, engine=engine, ray_address=address, ray_actors=actors, ray_gpus=gpus_per_actor,
                   rerank=rerank, rerank_depth=rerank_depth,
                   histories_cache=histories_cache)
    if generated_at is not None:
        job.generated_at = parse_time(generated_at)
    summary = run_batch(job, resume=resume, overwrite=overwrite, progress=not json_out)
    if json_out:
        echo_json(summary)
    else:
        typer.echo(
            f"wrote {out}: {summary['users']:,} users in {summary['chunks']} parts "
            f"({summary['resumed_chunks']} already done), {summary['users_per_second']} users/s"
        )
