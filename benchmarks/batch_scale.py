"""Batch scoring at scale: local throughput against its floor, the Ray engine against the local one, and peak memory
as the number of users grows (histories read per chunk from prepared parquet parts, ``recsys.histories``).

1. Floor = the user tower alone (``service.user_vectors`` on histories already in memory) + a bare FAISS search of the
   same users in the same chunks; ours adds the history read, seen-item filtering, the output frame and the part.
2. Ray (local cluster, 2 actors) vs local engine on the same inputs; ``ray.init`` is timed on its own, and the local
   run's "local+open" column adds the service open for a like-for-like figure.
3. Peak RSS (VmHWM) of a whole ``batch-score`` run in its own subprocess per size, beside opening the service with
   in-memory histories. ``--interactions-per-user N`` streams datasets to disk per 100K users (1B rows never in memory).

Items beyond the 2,000 demo items get random unit vectors (search cost depends on count and dimension only).
``--threads 1`` is advised on a shared machine: torch's intra-op threads slow down under oversubscription.

    python benchmarks/batch_scale.py [--items 20000 --users 5000 --chunk 1000 --k 100 --repeats 3
                                      --rss-sizes 10000,100000,1000000 --work DIR]

Results: docs/performance.md ("Batch scoring").
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

    from recsys.index import ItemIndex
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
    from recsys.service.retrieval import RetrievalService

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
    from recsys.service.histories import HistoryStore
    from recsys.retriever.run import load_run

    (prepared,) = [p for p in histories.iterdir() if p.is_dir() and not p.name.startswith(".")]
    store = HistoryStore(prepared)
    from recsys.index import ItemIndex

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
    from recsys.service.histories import prepare_histories

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
    from recsys.service.histories import prepare_histories
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
    from recsys.service.retrieval import RetrievalService
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
