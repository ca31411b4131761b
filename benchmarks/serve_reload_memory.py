"""Memory over repeated hot reloads of ``recsys serve`` with a ranking run: RSS of a server process after each
``POST /admin/reload`` (issue: every reload used to leave the previous service in memory).

    python benchmarks/serve_reload_memory.py [--work /tmp/recsys-serve-load] [--reloads 50]
        [--json out.json]

Reuses (or builds) the demo artefacts of ``benchmarks/serve_load.py`` in ``--work`` (dataset, retriever run, index,
a reload target and a ranking run), then runs the app in a child process (in-process ASGI client, no
network) that reloads ``--reloads`` times, alternating the two indexes, and reports RSS after the start and after
each reload: the growth per reload (least-squares slope over the second half) and the total. Results:
docs/serving.md, "Memory over reloads".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

#: The child: loads the app with a ranking run, reloads n times, prints one JSON line of RSS MiB (start, then per reload).
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from fastapi.testclient import TestClient
    from recsys.serving.app import create_app

    def rss_mib():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    index_a, index_b, rerank, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    paths = json.loads(sys.argv[6])  # {"dataset": ..., "run": ...} or {}
    app = create_app(index_a, admin_token="t", rerank_run=rerank, dataset_dir=paths.get("dataset"), run_dir=paths.get("run"))
    auth = {"Authorization": "Bearer t"}
    out = []
    with TestClient(app) as client:
        out.append(rss_mib())
        for i in range(n):
            r = client.post("/admin/reload", json={"index": index_b if i % 2 == 0 else index_a, **paths}, headers=auth)
            assert r.status_code == 200, r.text
            client.get("/health")
            time.sleep(0.5)  # the replaced service is reclaimed on a background thread
            out.append(rss_mib())
    print(json.dumps(out))
    """
)


def reload_rss(index_a: Path, index_b: Path, rerank: Path, n: int, paths: dict | None = None) -> list[float]:
    """RSS (MiB) of a fresh server process after start and after each of ``n`` reloads (``paths``: dataset/run
    directories to pass instead of the ones recorded in the index)."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(index_a), str(index_b), str(rerank), str(n), json.dumps(paths or {})],
        env=env, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"reload child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def slope(values: list[float]) -> float:
    """Least-squares MiB per step."""
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    return sum((i - mx) * (v - my) for i, v in enumerate(values)) / sum((i - mx) ** 2 for i in range(n))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/recsys-serve-load"))
    p.add_argument("--reloads", type=int, default=50)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--stack", type=Path, default=None, help="Use DIR/{ds,run,index,rank} instead of preparing --work.")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import serve_load

    if a.stack is not None:  # ds, run, index and rank made elsewhere (e.g. a copy of the tests' stack)
        index_a = index_b = a.stack / "index"
        rerank, paths = a.stack / "rank", {"dataset": str(a.stack / "ds"), "run": str(a.stack / "run")}
    else:
        index_a, index_b, _ = serve_load.prepare(a.work, a.users, a.items, max_steps=20)
        rerank, paths = serve_load.prepare_ranker(a.work, depth=100), {}
    rss = reload_rss(index_a, index_b, rerank, a.reloads, paths)
    half = rss[len(rss) // 2 :]
    result = {
        "reloads": a.reloads, "rss_start_mib": rss[0], "rss_after_first_reload_mib": rss[1],
        "rss_end_mib": rss[-1], "growth_mib_per_reload_second_half": slope(half), "rss_mib": rss,
    }
    print(f"{a.reloads} reloads: RSS {rss[0]:.0f} MiB at start, {rss[1]:.0f} after the first reload, "
          f"{rss[-1]:.0f} after the last; second half {slope(half):+.1f} MiB per reload")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
