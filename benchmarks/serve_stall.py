"""Can one cheap request stall the reranked ones? ``recsys serve --rerank`` on a demo index, loopback only:

    python benchmarks/serve_stall.py [--work /tmp/recsys-serve-load] [--repeats 3] [--json out.json]

Reuses (or builds) the artefacts of ``benchmarks/serve_load.py`` in ``--work``, starts ``python -m recsys serve``
(the ``recsys`` importable from this interpreter: point PYTHONPATH at another checkout to measure it) and times,
``--repeats`` times each (medians reported):

* a reranked ``GET /recommend/{user}?k=5`` alone (the baseline);
* a ``k=300`` request abandoned by its client after 1 s, then at once a reranked ``k=5``: the abandoned request must
  neither keep the cross-encoder nor delay the next one;
* ``GET /recommend/{user}?k=1000`` (``--big-k``): k must not raise the reranked depth.

Results: docs/serving.md, "Limits".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed_get(base: str, path: str, params: dict, timeout: float) -> tuple[float, int | str]:
    import httpx

    t0 = time.perf_counter()
    try:
        r = httpx.get(f"{base}{path}", params=params, timeout=timeout)
        items = r.json().get("items", []) if r.status_code == 200 else []
        status: int | str = f"{r.status_code}: {len(items)} items, {sum(i['rerank_score'] is not None for i in items)} reranked"
    except httpx.TimeoutException:
        status = "abandoned"
    return time.perf_counter() - t0, status


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/recsys-serve-load"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--inference", default="auto")
    p.add_argument("--stack", type=Path, default=None, help="Use DIR/{ds,run,index,rerank} instead of preparing --work.")
    p.add_argument("--abandoned-candidates", type=int, default=None, help="candidates= of the abandoned k=300 request (default: the server's depth).")
    p.add_argument("--big-k", type=int, default=1000)
    p.add_argument("--big-timeout", type=float, default=300, help="Client timeout of the big-k request (reported as 'abandoned').")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import serve_load

    if a.stack is not None:  # ds, run, index and rerank made elsewhere (e.g. a copy of the tests' stack)
        import polars as pl

        index, rerank = a.stack / "index", a.stack / "rerank"
        users = pl.read_parquet(a.stack / "ds" / "interactions.parquet")["user_id"].unique().sort().to_list()
        extra = ["--dataset", str(a.stack / "ds"), "--run", str(a.stack / "run")]
    else:
        index, _, users = serve_load.prepare(a.work, a.users, a.items, max_steps=20)
        rerank = serve_load.prepare_reranker(a.work, steps=20)
        extra = []
    port = serve_load.free_port()
    base = f"http://127.0.0.1:{port}"
    log = (a.stack or a.work) / "serve_stall.log"
    cmd = [sys.executable, "-m", "recsys", "serve", "--index", str(index), "--rerank", str(rerank), "--inference", a.inference,
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra]
    # cwd: not a checkout, so `-m recsys` imports the recsys of PYTHONPATH / the environment, not ./recsys
    proc = subprocess.Popen(cmd, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        startup = serve_load.wait_ready(base, proc)
        path = f"/recommend/{users[0]}"
        timed_get(base, path, {"k": 5}, 600)  # warm-up
        big = f"k={a.big_k}"
        rows: dict[str, list[float]] = {"k=5 alone": [], "k=5 after an abandoned k=300": [], big: []}
        statuses: dict[str, list] = {k: [] for k in rows}

        def record(name: str, params: dict, timeout: float) -> None:
            s, code = timed_get(base, path, params, timeout)
            rows[name].append(s)
            statuses[name].append(code)

        for _ in range(a.repeats):
            record("k=5 alone", {"k": 5}, 600)
            timed_get(base, path, {"k": 300, **({"candidates": a.abandoned_candidates} if a.abandoned_candidates else {})}, 1.0)  # gives up after 1 s
            record("k=5 after an abandoned k=300", {"k": 5}, 600)
            record(big, {"k": a.big_k}, a.big_timeout)  # last: a timed-out one may keep the server busy
            time.sleep(1.0)
    finally:
        proc.terminate()
        proc.wait(30)
    served = subprocess.run([sys.executable, "-c", "import recsys; print(recsys.__file__)"], cwd=log.parent, capture_output=True, text=True).stdout.strip()
    result = {"recsys": str(Path(served).parent), "startup_s": startup, "inference": a.inference,
              "median_s": {k: statistics.median(v) for k, v in rows.items()}, "seconds": rows, "statuses": statuses}
    print(f"recsys from {result['recsys']} (reranker inference {a.inference}), medians of {a.repeats}:")
    for k, v in rows.items():
        print(f"  {k:32s} {statistics.median(v):8.2f} s   statuses {statuses[k]}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
