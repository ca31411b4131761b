"""The docs hold together: README size, every relative link resolves (file and heading), every benchmark is listed,
the README's Python example runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _docs() -> list[Path]:
    tops = [ROOT / name / "README.md" for name in ("benchmarks", "data", "indexes", "pipelines")]
    return [ROOT / "README.md", *tops, *sorted((ROOT / "docs").rglob("*.md"))]


def _anchor(heading: str) -> str:
    """GitHub's heading slug: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def test_readme_is_at_most_10_kb():
    assert len((ROOT / "README.md").read_bytes()) <= 10240


def test_every_relative_link_resolves_to_a_file_and_heading():
    broken = []
    for doc in _docs():
        for target in LINK.findall(FENCE.sub("", doc.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.is_file() and anchor not in _anchors(dest):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_benchmark_script_is_described_in_benchmarks_readme():
    readme = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    scripts = sorted(p.relative_to(ROOT / "benchmarks").as_posix() for p in (ROOT / "benchmarks").rglob("*.py"))
    missing = [s for s in scripts if f"`{s}`" not in readme]
    assert not missing, f"benchmarks/README.md does not name: {missing}"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    """The README's Python block runs as printed (in a scratch directory: it writes data/, indexes/)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert blocks, "README has no Python example"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    ranked = [line for line in done.stdout.splitlines() if line.startswith(("1 ", "5 "))]
    assert len(ranked) == 2 and all("['" in line for line in ranked), done.stdout[-2000:]  # five items, each with reasons
