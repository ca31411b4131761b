"""Batch scoring at scale: throughput against its floor, the Ray engine against the local one, and peak memory
as the number of users grows (histories read per chunk from prepared parquet parts, ``recsys.histories``).

1. Local users/s vs the floor of the same pipeline: the user tower alone (``service.user_vectors`` on histories
   already in memory) + a bare FAISS search (``k`` + the chunk's longest history) of the same users in the same
   chunks. Ours adds the per-chunk history read, seen-item filtering, the output frame and the parquet part.
2. Ray (local cluster, 2 actors) vs local engine on the same inputs; ``ray.init`` is timed on its own, and the Ray
   run's seconds include its actors' start-up and model load (the local run's service is opened before its clock
   starts, so the "local+open" column adds that for a like-for-like figure).
3. Peak RSS of a whole ``batch-score`` run (own subprocess per size: its VmHWM; RUSAGE_SELF's ru_maxrss would
   include the parent's peak, which Linux carries across exec) at growing user counts, beside the peak RSS of merely
   opening the service with in-memory histories (what the previous version did before scoring anything). With
   ``--interactions-per-user N`` the datasets are streamed to disk per 100K users with exactly N interactions a
   user (``_stream_dataset``: 10M x 100 = 1B rows never in memory), instead of the demo generator's ~42.

The user side is real (a briefly trained run on a 2,000-item demo catalogue, real histories from
``generate_demo``); items beyond the 2,000 demo items get random unit vectors to reach ``--items`` (search cost
depends on count and dimension, not values), as in benchmarks/retrieve_latency.py.

    python benchmarks/batch_scale.py [--items 20000 --users 5000 --chunk 1000 --k 100 --repeats 3
                                      --rss-sizes 10000,100000,1000000 --work DIR]

Measured 2026-11-29 on the shared 2-core EPYC (AVX2), --threads 1 (see below), 20,000-item flat index, k 100;
load average 10.4 at the start of sections 1-2, 7-12 during section 3 (other jobs on the machine):

    python benchmarks/batch_scale.py --users 10000 --chunk 1000 --repeats 3 --threads 1
    1. local engine vs floor, 10,000 users, chunks of 1,000, median of 3 (alternating)
                                   seconds   users/s
       floor (encode + bare FAISS)   10.37       965     (runs 10.37, 10.45, 10.26)
       ours (run_batch, local)       11.51       869     (runs 11.35, 11.51, 11.79)
         of which history reads       0.13
       ours/floor throughput: 0.90. Two later runs (load ~7-8): 0.885 (ours 12.41 s / floor 10.98 s) and, after
       vectorising ItemIndex.search's seen-item exclusions, 0.890 (11.95 / 10.64). Where the rest goes, per chunk of
       1,000 users (1 thread): seen-item filtering in ItemIndex.search ~70 ms over bare FAISS, part write ~35 ms,
       history read ~12 ms, output frame ~15 ms, against ~1,050 ms of encode + bare search.

    After three changes (2026-11-29, later, quiet machine: load average 1-2): seen-item exclusions tested with a
    per-thread boolean mask over (query, faiss id) instead of sorted-key searchsorted (~28 -> ~6 ms a chunk over bare
    FAISS), the next chunk's histories read on a helper thread while this one is scored, the output frame built and
    written on the writer thread, and each chunk's histories split by two vectorised passes (no per-user call):
       --threads 1, median of 7:  ours 4.99 s vs floor 5.04 s -> 1.010; again 5.06 / 4.98 -> 0.985
                                  (the same code before the history split: 0.924; before all three: 0.877-0.897)
       --threads 2, median of 7:  ours 2.85 s vs floor 2.76 s -> 0.967 (before: 0.886)

    2. Ray (local Ray, 2 actors x 1 CPU) vs local, same 10,000 users in chunks of 1,000, median of 3
       ray.init (once per process)                9.0 s
       ray: first chunk written (actors start)   11.7 s
       ray: whole job                            18.6 s   538 users/s   (runs 20.1, 15.0, 18.6)
       ray steady state (after the first wave)           1430 users/s
       local: whole job                           8.5 s  1178 users/s   (+ service open: 8.6 s)
       local steady state                                1217 users/s
       ray/local: whole job 2.19x (start-up dominated at this size); steady state 0.85x (Ray faster: 2 processes
       x 1 thread beat 1 process here). A second run: whole job 1.88x, steady state 1761 vs 1258 users/s (0.71x),
       actors' first chunk at 9.3 s, ray.init 8.1 s.

    python benchmarks/batch_scale.py --skip floor,ray --threads 1 --rss-sizes 10000,100000,1000000 --rss-max-chunks 10
    3. peak RSS (MB) of one batch-score process: preparing the histories of ALL users, then scoring up to 10 chunks
       of 10,000 users (per-chunk memory is in steady state by then: an uninterrupted 1M-user run, with an earlier
       preparation, sat at 1.25 GB RSS from chunk 6 to chunk 100); "in-memory open" = only opening the service
       with every interaction in memory, as batch scoring did before (its scoring would add to it)
           users  interactions  parquet MB  prep s  peak after prep  batch peak  in-memory open
          10,000       422,177           4     0.3              385         570             370
         100,000     4,213,595          37     2.9              556         764             801
       1,000,000    42,197,843         373    19.6              704         900           4,770
       100x the users: batch peak +330 MB (the scoring phase adds a constant ~190 MB; the rest is the preparation's
       per-user state, ~165 B a user: user list + counts), the in-memory path +4.4 GB (~105 B an interaction).
       (These children measured ru_maxrss; their parent then held ~250-300 MB, below every figure here, so the
       parent's peak that ru_maxrss carries over did not show; the 10M run below did hit it, hence VmHWM now.)

Measured 2026-11-29, later (same machine, --threads 1, load average 7-15 from other jobs throughout):
10M users x 100 interactions (1,000,000,000 rows), streamed to disk and scored in bounded chunks:

    python benchmarks/batch_scale.py --skip floor,ray --threads 1 --rss-sizes 10000000 --interactions-per-user 100 --rss-max-chunks 10
    generation (parent process, 100 chunks of 100K users): 518 s, interactions.parquet 7,018 MB, 581 MB peak RSS
         users    scored   interactions  parquet MB  prepared MB  prep s  score s  users/s  peak after prep  batch peak
    10,000,000   100,000  1,000,000,000       7,018        2,096   1,241    100.2      998            1,717       1,717
    (again, histories already prepared: prep 0 s, peak 283 MB after the cache check, batch peak 746 MB, 97.3 s, 1,028 users/s)
       prep 1,241 s = user counts 7.0 min + spill into 512 user-range buckets 4.4 min (19.5 GB of lz4 Arrow IPC at
       its peak, deleted as each bucket is sorted) + sort and write 512 parts 9.5 min; the prepared parts are 2.1 GB
       (sorted user ids + dictionary item ids: ~2 B a row). Disk at the peak: 7.0 GB source + ~21 GB preparation.
       Memory: 1.72 GB for 1B rows, all of it per-user state (~145 B a user over the ~280 MB base: the counts being
       merged, the user list); the scoring phase of a 10M-user job peaks at 746 MB, about the 1M-user job's.
       Before this run, the user counts were one polars group_by over scan_parquet (streaming engine): it held the
       scanned key column, 10.6 GB RSS (sampled) at 1B rows, against 320 MB at 20M rows; that run was stopped and
       ``recsys.histories._count_users`` now counts batch by batch and merges partial counts (same counts, tested),
       ~3x slower on this log (7.0 min vs ~2.5 min wall, both at load ~13-15) but bounded by users, not rows.
       In-memory open: not run (1B rows: ~100 GB at the ~105 B an interaction measured above).

Ray vs local at 100,000 users (demo data, ~42 interactions a user), chunks of 1,000, 2 actors x 1 thread vs local
1 thread, median of 2 alternating runs each (same inputs and chunking as the 10,000-user figures above):

    python benchmarks/batch_scale.py --skip floor,rss --users 100000 --chunk 1000 --repeats 2 --threads 1 [--ray-worker-niceness 15]
                                         B: niceness 0 (now)  C: Ray's default +15  A: +15, own 10M prep running
    load average (start -> end)               7.6 -> 12.9          9.4 -> 10.5          11.5 -> 15.0
    ray.init                                      10.5 s                8.6 s              22.1 s
    ray: first chunk written                      13.0 s               13.6 s              48.7 s
    ray: whole job                                76.3 s               80.8 s             363.9 s
    local: whole job (+ service open)      78.8 s (79.2 s)      96.6 s (96.9 s)   195.7 s (196.0 s)
    ray/local whole job                            0.97x                0.84x               1.86x
    steady state users/s, ray vs local       1584 vs 1296         1485 vs 1043         313 vs 518

Again on a quiet machine after this session's local-engine changes (prefetched histories, mask exclusions; load
average 0.3 -> 2.4), 100,000 users, chunks of 1,000, median of 2 alternating runs:

                                         local 1 thread       local 2 threads (same cores as Ray)
    ray.init                                       4.1 s                4.0 s
    ray: first chunk written                       6.6 s                7.0 s
    ray: whole job (2 actors x 1 thread)          41.8 s               41.5 s
    local: whole job (+ service open)      61.0 s (61.1 s)      45.4 s (45.5 s)
    ray/local whole job                            0.68x                0.91x
    steady state users/s, ray vs local       2817 vs 1649         2880 vs 2247
    ray/local steady-state time                    0.82x                0.70x               1.66x
    ray whole-job runs                        78.7, 73.9           78.0, 83.7         375.0, 352.7
At 100K users the start-up amortises: Ray's whole job is at or below the local engine's (goal <= 1.2x: met in B
and C), its ~13 s to the first chunk (ray.init excluded; local: 1.6-2.2 s) being paid back by 2 processes in the
steady state. Run A is the exception that explains a library change: Ray starts its workers at niceness +15, so
a job at the caller's priority (here this benchmark's own 10M-user preparation, nice 5 like the driver) took the
CPU from the actors first: Ray 1.66x slower than local in the steady state. ``run_on_ray`` now starts a local Ray
with ``worker_niceness`` 0 (``recsys.batch_ray.LOCAL_RAY_SYSTEM_CONFIG``): actors at the caller's priority, like
the local engine. B vs C (different loads, no competing job of ours) shows no cost of it. Checked directly, one run
each, one after the other, with a busy loop at the driver's priority (nice 5) running throughout, load 11-15:
                                     niceness 0 (now)   Ray's default +15
    ray.init                                15.6 s             13.1 s
    ray: first chunk written                22.8 s             56.0 s
    ray: whole job                         110.0 s            298.8 s
    local: whole job                       164.7 s            196.9 s
    ray/local whole job                      0.67x              1.52x
    steady state users/s, ray vs local  1130 vs 618         441 vs 507
Start-up (ray.init 8.6-15.6 s, then 13-23 s to the first chunk while 2 actors import torch/faiss and open the
service) is not cut further here: ray.init already runs without the dashboard, and each actor loads the model once.

Threads: under this shared load, torch with 2 intra-op threads encoded 3.4x SLOWER than with 1 (1.07 s vs 0.30 s
for 500 users, alternating, load average ~10), hence --threads 1 for the figures above; the default (0) keeps the
libraries' own setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's recsys, also in the child processes (PYTHONPATH below)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
GENERATED_AT = "2026-11-29T03:00:00+00:00"
DEMO_ITEMS = 2000
PER_USER = 50  # generate_demo draws between 25 and 75 interactions a user (mean about 42 after de-duplication)


def _dataset(work: Path, users: int) -> Path:
    """A saved demo dataset with ``users`` users over the same 2,000-item catalogue (generated once, in a child)."""
    path = work / f"ds-{users}"
    if not (path / "manifest.json").exists():
        code = (
            "import sys; from pathlib import Path; from recsys.data.demo import generate_demo; "
            f"ds, src = generate_demo(users={users}, items={DEMO_ITEMS}, seed=0, interactions_per_user={PER_USER}); "
            f"ds.save(Path({str(path)!r}), source=src)"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
    return path


STREAM_CHUNK_USERS = 100_000  # users generated and written at once by _stream_dataset (~100 MB a column at 100 items)
STREAM_ZIPF = 0.9  # popularity of the r-th most popular item ~ r ** -STREAM_ZIPF (as the demo's, within a category)
STREAM_START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z


def _index_ids(n_items: int) -> np.ndarray:
    """The item ids of ``_setup``'s index: the demo items 1..2,000, then 10,000,000 + i for the random ones."""
    return np.concatenate([np.arange(1, DEMO_ITEMS + 1), 10_000_000 + np.arange(max(0, n_items - DEMO_ITEMS))]).astype(np.int64)


def _stream_dataset(work: Path, users: int, per_user: int, n_items: int, seed: int = 0) -> Path:
    """A saved dataset of ``users`` users x exactly ``per_user`` interactions, streamed to parquet per
    ``STREAM_CHUNK_USERS`` users (never the whole log in memory: 10M x 100 is 1B rows, ~24 GB as a frame).

    Items are the index's ``n_items`` ids with Zipf popularity, the 2,000 demo items (the ones the trained run knows
    and encodes) the most popular: about 78% of the draws at 20,000 items; the rest are only seen-item exclusions.
    Repeats of an item within a history are allowed. Timestamps increase per user (gaps of 1 s to 2 days). Within
    a chunk the rows are position-major (every user's first interaction, then every user's second, ...), so the
    file is not sorted by user: the preparation's sort does real work, as with a time-ordered log. Text for the
    non-demo items comes from the demo generator. The content is a pure function of the arguments, which is
    what the manifest's fingerprint hashes (hashing 1B rows would take minutes).
    """
    import hashlib

    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recsys.data.demo import generate_demo
    from recsys.manifest import atomic_directory, write_manifest

    path = work / f"ds-{users}x{per_user}"
    if (path / "manifest.json").exists():
        return path
    ids = _index_ids(n_items)
    demo_items = pl.read_parquet(_dataset(work, DEMO_ITEMS) / "items.parquet")
    extra = generate_demo(users=1, items=n_items, seed=seed + 1)[0].items.slice(DEMO_ITEMS).with_columns(pl.Series("item_id", ids[DEMO_ITEMS:]))
    items = pl.concat([demo_items, extra.select(demo_items.columns)])
    rng = np.random.default_rng([seed, 7])
    popular = np.concatenate([rng.permutation(ids[:DEMO_ITEMS]), rng.permutation(ids[DEMO_ITEMS:])])  # rank -> item id
    params = {"users": users, "per_user": per_user, "items": n_items, "seed": seed, "chunk": STREAM_CHUNK_USERS, "zipf": STREAM_ZIPF, "v": 1}
    fp = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.timestamp("us", tz="UTC"))])
    a = 1.0 - STREAM_ZIPF
    t0 = time.perf_counter()
    with atomic_directory(path, "dataset") as tmp:
        items.write_parquet(tmp / "items.parquet")
        # user ids step by 1 within a position-major chunk: delta encoding stores them in ~nothing
        with pq.ParquetWriter(tmp / "interactions.parquet", schema, compression="zstd", use_dictionary=["item_id"],
                              column_encoding={"user_id": "DELTA_BINARY_PACKED", "timestamp": "DELTA_BINARY_PACKED"}) as writer:
            for k, first in enumerate(range(0, users, STREAM_CHUNK_USERS)):
                n = min(STREAM_CHUNK_USERS, users - first)
                r = np.random.default_rng([seed, 8, k])
                x = (1.0 + r.random((n, per_user)) * ((n_items + 1.0) ** a - 1.0)) ** (1.0 / a)
                item = popular[np.minimum(x.astype(np.int64) - 1, n_items - 1)]
                del x
                start = r.integers(0, 180 * 86_400, n, dtype=np.int64) * 1_000_000 + STREAM_START_US
                ts = np.cumsum(r.integers(1, 2 * 86_400, (n, per_user), dtype=np.int64) * 1_000_000, axis=1)
                ts += start[:, None]
                uid = np.broadcast_to(np.arange(first + 1, first + n + 1, dtype=np.int64)[:, None], (n, per_user))
                table = pa.table([pa.array(uid.ravel(order="F")), pa.array(item.ravel(order="F")),
                                  pa.array(ts.ravel(order="F"), type=pa.timestamp("us", tz="UTC"))], schema=schema)
                writer.write_table(table, row_group_size=1 << 20)
                del table, item, ts
                if k % 10 == 9:
                    print(f"  generated {first + n:,} users in {time.perf_counter() - t0:.0f} s", flush=True)
        counts = {"interactions": users * per_user, "items": items.height, "users": users, "profiles": 0}
        write_manifest(tmp, {
            "kind": "dataset", "source": {"name": "batch_scale stream", "format": "stream", "params": params}, "fingerprint": fp,
            "files": {"interactions.parquet": fp, "items.parquet": fp}, "counts": counts,
            "schema": {"interactions": {"user_id": "Int64", "item_id": "Int64", "timestamp": "Datetime(time_unit='us', time_zone='UTC')"},
                       "items": {k: str(v) for k, v in items.schema.items()}, "users": None},
        })
    mb = (path / "interactions.parquet").stat().st_size / 2**20
    print(f"  generated {users:,} users x {per_user} = {users * per_user:,} rows in {time.perf_counter() - t0:.0f} s, {mb:,.0f} MB, "
          f"peak RSS of this process {__import__('resource').getrusage(__import__('resource').RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB", flush=True)
    return path


def _setup(work: Path, n_items: int) -> Path:
    """Train a small run on demo data and save a flat index of ``n_items`` items (demo vectors + random ones)."""
    import polars as pl

    from recsys.index.faiss_index import ItemIndex
    from recsys.retriever.config import RetrieverTrainingArguments
    from recsys.retriever.run import load_run, train_run

    index_dir = work / f"index-{n_items}"
    if (index_dir / "manifest.json").exists():
        return index_dir
    ds_path = _dataset(work, 2000)
    from recsys.data.dataset import Dataset

    if not (work / "run" / "manifest.json").exists():
        train_run(Dataset.load(ds_path), work / "run", RetrieverTrainingArguments(epochs=1, max_steps=20))
    model, catalogue_ids, manifest = load_run(work / "run")
    base = model.encode_items()
    rng = np.random.default_rng(0)
    extra = rng.standard_normal((max(0, n_items - len(base)), base.shape[1])).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    ids = pl.concat([catalogue_ids.cast(pl.Int64), pl.Series(np.arange(10_000_000, 10_000_000 + len(extra)), dtype=pl.Int64)])
    index = ItemIndex.build(
        np.vstack([base, extra]), ids, index_type="flat", model_fingerprint=manifest["fingerprint"],
        metadata={"run": str((work / "run").resolve()), "dataset": str(ds_path.resolve())}, progress=False,
    )
    index.save(index_dir)
    return index_dir


def _floor(index_dir: Path, ds_path: Path, k: int, chunk: int) -> tuple[float, int]:
    """Seconds of user encode + bare FAISS search over every user, histories and contexts built beforehand."""
    import polars as pl

    from recsys.context import context_frame
    from recsys.retrieval import RetrievalService

    svc = RetrievalService.open(index_dir, dataset_dir=ds_path)
    users = svc.histories.user_ids.sort().to_list()
    when = __import__("datetime").datetime.fromisoformat(GENERATED_AT)
    ctx = context_frame({}, svc.context_columns, now=when)
    prepared = []
    for lo in range(0, len(users), chunk):
        rows = svc.histories.rows(users[lo : lo + chunk])
        hist, seen = zip(*(svc.histories.history(int(r)) for r in rows))
        prepared.append((list(hist), pl.concat([ctx] * len(rows)), max(len(s) for s in seen)))
    raw = svc.index._index
    start = time.perf_counter()
    for hist, contexts, longest in prepared:
        vec = svc.user_vectors(hist, contexts)
        raw.search(vec, k + longest)
    return time.perf_counter() - start, len(users)


def _read_seconds(histories: Path, index_dir: Path, chunk: int) -> float:
    """Seconds spent reading every chunk's histories from the prepared parts (part of 'ours')."""
    from recsys.histories import HistoryStore
    from recsys.retriever.run import load_run

    (prepared,) = [p for p in histories.iterdir() if p.is_dir() and not p.name.startswith(".")]
    store = HistoryStore(prepared)
    from recsys.index.faiss_index import ItemIndex

    _, catalogue_ids, _ = load_run(ItemIndex.load(index_dir).metadata["run"])
    users = store.user_ids()
    start = time.perf_counter()
    for lo in range(0, len(users), chunk):
        store.histories(users.slice(lo, chunk).to_list(), catalogue_ids)
    return time.perf_counter() - start


def throughput(work: Path, index_dir: Path, n_users: int, k: int, chunk: int, repeats: int, with_ray: bool,
               niceness: int | None = None) -> list[str]:
    from recsys.batch import BatchJob, run_batch

    ds_path = _dataset(work, n_users)
    out = work / f"cand-{n_users}"
    job = dict(index=index_dir, dataset=ds_path, k=k, chunk_size=chunk, generated_at=GENERATED_AT, histories_cache=work / "histories")
    run_batch(BatchJob(out=out, **job), overwrite=True, progress=False)  # warm-up; prepares the histories once
    ours, floor = [], []
    for _ in range(repeats):  # alternate, so load changes hit both sides alike
        ours.append(run_batch(BatchJob(out=out, **job), overwrite=True, progress=False)["seconds"])
        f, n = _floor(index_dir, ds_path, k, chunk)
        floor.append(f)
    read = statistics.median(_read_seconds(work / "histories", index_dir, chunk) for _ in range(repeats))
    o, fl = statistics.median(ours), statistics.median(floor)
    lines = [
        f"1. local engine vs floor: {n} users, chunk {chunk}, k {k}, median of {repeats} (alternating)",
        f"{'':<28} {'seconds':>8} {'users/s':>9}",
        f"{'floor (encode + bare FAISS)':<28} {fl:>8.2f} {n / fl:>9.0f}",
        f"{'ours (run_batch, local)':<28} {o:>8.2f} {n / o:>9.0f}",
        f"{'  of which history reads':<28} {read:>8.2f}",
        f"ours/floor throughput: {fl / o:.3f}  (all runs: ours {', '.join(f'{x:.2f}' for x in ours)}; floor {', '.join(f'{x:.2f}' for x in floor)})",
    ]
    if with_ray:
        lines += _ray_vs_local(job, work, n, repeats, niceness)
    return lines


def ray_only(work: Path, index_dir: Path, n_users: int, k: int, chunk: int, repeats: int, niceness: int | None = None) -> list[str]:
    """Section 2 without section 1: prepare the histories both engines read first (outside every clock)."""
    from recsys.data.dataset import Dataset
    from recsys.histories import prepare_histories

    ds_path = _dataset(work, n_users)
    prepare_histories(Dataset.load(ds_path, with_interactions=False), work / "histories")
    job = dict(index=index_dir, dataset=ds_path, k=k, chunk_size=chunk, generated_at=GENERATED_AT, histories_cache=work / "histories")
    return _ray_vs_local(job, work, n_users, repeats, niceness)


def _timed_run(job: dict, out: Path, **kw) -> tuple[float, float, list[float]]:
    """(scoring-loop seconds, wall seconds with service open, finish time of each chunk from the loop start).

    Chunk finish times are the parts' mtimes (the actors write them), not when Ray Data hands results back (it
    batches them, which would hide its start-up inside a burst).
    """
    from recsys.batch import BatchJob, run_batch

    t, t_wall = time.perf_counter(), time.time()
    s = run_batch(BatchJob(out=out, **job, **kw), overwrite=True, progress=False)
    wall = time.perf_counter() - t
    loop_start = t_wall + wall - s["seconds"]
    marks = sorted(p.stat().st_mtime_ns / 1e9 - loop_start for p in out.glob("part-*.parquet"))
    return s["seconds"], wall, marks


def _steady(marks: list[float], chunk: int, wave: int) -> float:
    """Users/s once every worker is busy: the chunks completed after the first wave, over the time they took."""
    return (len(marks) - wave) * chunk / (marks[-1] - marks[wave - 1])


def _ray_vs_local(job: dict, work: Path, n: int, repeats: int, niceness: int | None = None) -> list[str]:
    import ray

    t = time.perf_counter()
    from recsys.batch_ray import LOCAL_RAY_SYSTEM_CONFIG

    # the engine's own settings (it would start Ray with them), or Ray's default worker niceness with --ray-worker-niceness 15
    system = LOCAL_RAY_SYSTEM_CONFIG if niceness is None else {**LOCAL_RAY_SYSTEM_CONFIG, "worker_niceness": niceness}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config=system)
    init_s = time.perf_counter() - t
    chunk = job["chunk_size"]
    R: dict[str, list[float]] = {k: [] for k in ("ray", "ray_first", "ray_steady", "local", "local_wall", "local_first", "local_steady")}
    for _ in range(repeats):  # alternate engines
        sec, _, marks = _timed_run(job, work / "cand-ray", engine="ray", ray_actors=2)
        R["ray"].append(sec); R["ray_first"].append(marks[0]); R["ray_steady"].append(_steady(marks, chunk, 2))
        sec, wall, marks = _timed_run(job, work / f"cand-{n}")
        R["local"].append(sec); R["local_wall"].append(wall); R["local_first"].append(marks[0]); R["local_steady"].append(_steady(marks, chunk, 1))
        print(f"  ray {R['ray'][-1]:.1f} s (first chunk {R['ray_first'][-1]:.1f} s, steady {R['ray_steady'][-1]:.0f} users/s); "
              f"local {R['local'][-1]:.1f} s (+open {R['local_wall'][-1]:.1f} s, steady {R['local_steady'][-1]:.0f} users/s)", flush=True)
    ray.shutdown()
    m = {k: statistics.median(v) for k, v in R.items()}
    return [
        "",
        f"2. Ray engine (local Ray, 2 actors x 1 CPU, worker niceness +{system['worker_niceness']}) vs local engine, same {n} users in chunks of {chunk}, median of {repeats} (alternating)",
        f"{'':<40} {'seconds':>8} {'users/s':>9}",
        f"{'ray.init (once per process)':<40} {init_s:>8.2f}",
        f"{'ray run: first chunk done (actors start)':<40} {m['ray_first']:>8.2f}",
        f"{'ray run: whole job':<40} {m['ray']:>8.2f} {n / m['ray']:>9.0f}",
        f"{'ray steady state (after first wave)':<40} {'':>8} {m['ray_steady']:>9.0f}",
        f"{'local: first chunk done':<40} {m['local_first']:>8.2f}",
        f"{'local: whole job (service open excluded)':<40} {m['local']:>8.2f} {n / m['local']:>9.0f}",
        f"{'local: whole job + service open':<40} {m['local_wall']:>8.2f} {n / m['local_wall']:>9.0f}",
        f"{'local steady state':<40} {'':>8} {m['local_steady']:>9.0f}",
        f"ray/local time: whole job {m['ray'] / m['local']:.2f}x (vs local + open {m['ray'] / m['local_wall']:.2f}x); "
        f"steady state {m['local_steady'] / m['ray_steady']:.2f}x; ray whole-job runs {', '.join(f'{x:.1f}' for x in R['ray'])}",
    ]


_CHILD = """
import json, resource, sys, time
from pathlib import Path
def peak_mb():
    # VmHWM: the high-water mark of THIS process's memory. RUSAGE_SELF's ru_maxrss is not: Linux carries the
    # pre-exec peak across exec, and subprocess's vfork/fork means that is the parent's peak (measured: a child
    # reported the 1,264 MB its parent had reached generating data, against 570 MB of its own)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
mode, index, ds, out, k, chunk, threads, max_chunks = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
if threads:
    import faiss, torch
    torch.set_num_threads(threads); faiss.omp_set_num_threads(threads)
t = time.perf_counter()
if mode == "batch":
    from recsys.batch import BatchJob, run_batch
    from recsys.histories import prepare_histories
    from recsys.data.dataset import Dataset
    t0 = time.perf_counter()
    histories = out.with_name(out.name + "-histories")
    prepare_histories(Dataset.load(ds, with_interactions=False), histories)
    prep = time.perf_counter() - t0
    prep_peak = peak_mb()
    class Enough(Exception):
        pass
    done = []
    def stop(c):  # --rss-max-chunks: stop like a killed run once the per-chunk memory is in steady state
        done.append(c)
        if max_chunks and len(done) >= max_chunks:
            raise Enough
    t1 = time.perf_counter()
    try:
        s = run_batch(BatchJob(index=index, out=out, dataset=ds, k=k, chunk_size=chunk, generated_at="2026-11-29T03:00:00+00:00", histories_cache=histories), overwrite=True, progress=False, on_chunk=stop)
        scored, secs = s["users"], s["seconds"]
    except Enough:
        scored, secs = len(done) * chunk, time.perf_counter() - t1
    extra = {"prep_s": prep, "prep_peak_mb": prep_peak, "score_s": secs, "users": scored}
else:
    from recsys.retrieval import RetrievalService
    svc = RetrievalService.open(index, dataset_dir=ds)
    extra = {"users": len(svc.histories.user_ids)}
print(json.dumps({"peak_mb": peak_mb(), "wall_s": time.perf_counter() - t, **extra}))
"""


def _child(mode: str, index_dir: Path, ds: Path, out: Path, k: int, chunk: int, threads: int, max_chunks: int = 0) -> dict:
    args = [mode, str(index_dir), str(ds), str(out), str(k), str(chunk), str(threads), str(max_chunks)]
    done = subprocess.run([sys.executable, "-c", _CHILD, *args],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def memory(work: Path, index_dir: Path, sizes: list[int], k: int, chunk: int, threads: int, max_chunks: int,
           per_user: int = 0, n_items: int = 20_000, open_max_rows: int = 50_000_000) -> list[str]:
    import polars as pl

    lines = [
        "",
        f"3. peak RSS of a whole local batch-score run (own process; k {k}, chunk {chunk}) vs opening the service with",
        "   in-memory histories (the previous batch path, before scoring anything; skipped above "
        f"{open_max_rows:,} interactions)",
        f"{'users':>10} {'scored':>9} {'interactions':>13} {'parquet MB':>10} {'prepared MB':>11} {'prep s':>7} {'score s':>8} {'users/s':>8} "
        f"{'peak MB after prep':>18} {'batch peak MB':>13} {'in-memory open MB':>17}",
    ]
    for n in sizes:
        ds = _stream_dataset(work, n, per_user, n_items) if per_user else _dataset(work, n)
        rows = pl.scan_parquet(ds / "interactions.parquet").select(pl.len()).collect().item()
        mb = (ds / "interactions.parquet").stat().st_size / 2**20
        out = work / f"rss-{ds.name}"
        b = _child("batch", index_dir, ds, out, k, chunk, threads, max_chunks)
        prepared = _du_mb(out.with_name(out.name + "-histories"))
        o = _child("open", index_dir, ds, out, k, chunk, threads) if rows <= open_max_rows else {"peak_mb": float("nan")}
        lines.append(f"{n:>10,} {b['users']:>9,} {rows:>13,} {mb:>10,.0f} {prepared:>11,.0f} {b['prep_s']:>7.1f} {b['score_s']:>8.1f} "
                     f"{b['users'] / b['score_s']:>8.0f} {b['prep_peak_mb']:>18,.0f} {b['peak_mb']:>13,.0f} {o['peak_mb']:>17,.0f}")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=10_000, help="users for the throughput and Ray comparisons")
    ap.add_argument("--chunk", type=int, default=1_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-sizes", default="10000,100000,1000000")
    ap.add_argument("--rss-chunk", type=int, default=10_000)
    ap.add_argument("--rss-max-chunks", type=int, default=0, help="stop each RSS run after this many chunks (0: score all)")
    ap.add_argument("--interactions-per-user", type=int, default=0, help="RSS datasets: exactly this many interactions a "
                    "user, streamed to disk per 100K users (0: the demo generator, ~42 a user, built in memory)")
    ap.add_argument("--rss-open-max-rows", type=int, default=50_000_000, help="skip the in-memory open above this many interactions")
    ap.add_argument("--ray-worker-niceness", type=int, default=None, help="niceness of the Ray workers over the driver "
                    "(default: the engine's setting, 0; Ray's own default is 15)")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: floor,ray,rss")
    ap.add_argument("--threads", type=int, default=0, help="torch/faiss threads of the local engine (0: their default); "
                    "Ray actors always run 1 thread each (num_cpus=1)")
    ap.add_argument("--work", type=Path, default=None, help="keep generated data here (reused between invocations)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    skip = set(filter(None, args.skip.split(",")))

    import faiss
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        index_dir = _setup(work, args.items)
        load = os.getloadavg()
        out = [f"batch scale: {args.items:,}-item flat index (2,000 demo items + random unit vectors), torch threads "
               f"{torch.get_num_threads()}, faiss threads {faiss.omp_get_max_threads()}, load average at start {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}", ""]
        if "floor" not in skip:
            out += throughput(work, index_dir, args.users, args.k, args.chunk, args.repeats, with_ray="ray" not in skip,
                              niceness=args.ray_worker_niceness)
        elif "ray" not in skip:
            out += ray_only(work, index_dir, args.users, args.k, args.chunk, args.repeats, args.ray_worker_niceness)
        if "rss" not in skip:
            out += memory(work, index_dir, [int(x) for x in args.rss_sizes.split(",")], args.k, args.rss_chunk, args.threads, args.rss_max_chunks,
                          args.interactions_per_user, args.items, args.rss_open_max_rows)
        load = os.getloadavg()
        out.append(f"\nload average at end {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")
        print("\n".join(out))


if __name__ == "__main__":
    main()
