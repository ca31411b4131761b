"""Pipelines: a TOML file declares stages and their settings; ``run_pipeline`` runs them in order and skips a
stage whose output manifest records the same settings, input fingerprints and code version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from recsys.errors import RecsysError
from recsys.manifest import fingerprint_file, fingerprint_json, read_manifest, write_text_atomic
from recsys.settings import apply_overrides, as_dict, from_dict, load_toml

Log = Callable[[str], None]


def code_version() -> str:
    """Hash of the installed recsys sources: a code change invalidates every stage."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- stage settings
@dataclass
class DataStage:
    """Produce the dataset: ``source`` is demo, movielens or table."""

    out: Path = Path("data/demo")
    source: str = "demo"
    path: Path | None = None  # movielens source directory
    users: int = 2000  # demo
    items: int = 1000  # demo
    interactions_per_user: int = 30  # demo
    seed: int = 0  # demo
    interactions: Path | None = None  # table
    items_file: Path | None = None  # table
    users_file: Path | None = None  # table
    mapping: dict[str, str] = field(default_factory=dict)  # table


@dataclass
class EvaluateStage:
    """Run the offline protocol and write the JSON report."""

    out: Path = Path("data/evaluation.json")
    models: list[str] = field(default_factory=lambda: ["popularity", "itemknn", "ease"])
    seed: int = 0
    cold_start: bool = True
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    grids: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class PipelineSettings:
    name: str = "pipeline"
    data: DataStage | None = None
    evaluate: EvaluateStage | None = None


STAGE_ORDER = ("data", "evaluate")


def load_pipeline(path: Path, overrides: list[str] | None = None, env: dict[str, str] | None = None) -> PipelineSettings:
    raw = apply_overrides(load_toml(path), overrides or [], env)
    meta = raw.pop("pipeline", {})
    unknown = set(raw) - set(STAGE_ORDER)
    if unknown:
        raise RecsysError(f"{path}: unknown stage(s) {', '.join(sorted(unknown))}; known stages: {', '.join(STAGE_ORDER)}")
    stages = {name: from_dict(_STAGE_CLASSES[name], raw[name], name) for name in STAGE_ORDER if name in raw}
    return PipelineSettings(name=str(meta.get("name", Path(path).stem)), **stages)


_STAGE_CLASSES: dict[str, type] = {"data": DataStage, "evaluate": EvaluateStage}


# ---------------------------------------------------------------------------------------------- stage runners
def _data_inputs(s: DataStage) -> dict[str, str]:
    if s.source == "movielens" and s.path is not None and Path(s.path).is_dir():
        return {f.name: fingerprint_file(f) for f in sorted(Path(s.path).iterdir()) if f.is_file()}
    if s.source == "table":
        files = [s.interactions, s.items_file, s.users_file]
        return {str(f): fingerprint_file(Path(f)) for f in files if f is not None and Path(f).exists()}
    return {}


def _run_data(s: DataStage, stage_fp: str, log: Log) -> str:
    if s.source == "demo":
        from recsys.data.demo import generate_demo

        ds, source = generate_demo(users=s.users, items=s.items, seed=s.seed, interactions_per_user=s.interactions_per_user)
    elif s.source == "movielens":
        from recsys.data.importers.movielens import import_movielens

        if s.path is None:
            raise RecsysError("[data] source = 'movielens' needs path = <MovieLens directory>")
        ds, source = import_movielens(s.path)
    elif s.source == "table":
        from recsys.data.importers.table import import_table

        if s.interactions is None or s.items_file is None:
            raise RecsysError("[data] source = 'table' needs interactions and items_file")
        ds, source = import_table(s.interactions, s.items_file, s.users_file, mapping=s.mapping)
    else:
        raise RecsysError(f"[data] source must be demo, movielens or table, not {s.source!r}")
    saved = ds.save(s.out, source=source, extra={"stage": {"name": "data", "fingerprint": stage_fp}})
    c = saved.manifest["counts"]
    log(f"data: wrote {s.out} ({c['interactions']:,} interactions, {c['items']:,} items, {c['users']:,} users)")
    return saved.fingerprint


def _run_evaluate(s: EvaluateStage, dataset_dir: Path, stage_fp: str, log: Log) -> str:
    from recsys.data.dataset import Dataset
    from recsys.evaluation.protocol import EvaluationSettings, evaluate, format_table

    ds = Dataset.load(dataset_dir)
    report = evaluate(ds, EvaluationSettings(models=s.models, params=s.params, grids=s.grids, seed=s.seed, cold_start=s.cold_start), progress=log)
    report["manifest"] = {"kind": "evaluation", "stage": {"name": "evaluate", "fingerprint": stage_fp}, "dataset_fingerprint": ds.fingerprint}
    write_text_atomic(Path(s.out), json.dumps(report, indent=2, default=str))
    log(format_table(report))
    return fingerprint_json(report["results"])


def _stage_fingerprint(name: str, settings: Any, inputs: dict[str, str]) -> str:
    return fingerprint_json({"stage": name, "settings": as_dict(settings), "inputs": inputs, "code": code_version()})


def _recorded_fingerprint(out: Path) -> str | None:
    try:
        if out.is_dir():
            return read_manifest(out).get("stage", {}).get("fingerprint")
        if out.is_file():
            return json.loads(out.read_text()).get("manifest", {}).get("stage", {}).get("fingerprint")
    except (RecsysError, json.JSONDecodeError, AttributeError):
        return None
    return None


@dataclass
class StageOutcome:
    stage: str
    status: str  # "ran" | "skipped"
    output: str
    fingerprint: str


def run_pipeline(settings: PipelineSettings, *, force: list[str] | None = None, log: Log | None = None) -> list[StageOutcome]:
    """Run the declared stages in order; a stage is skipped when its output records the same fingerprint."""
    say = log or (lambda _m: None)
    force = set(force or [])
    bad = force - set(STAGE_ORDER) - {"all"}
    if bad:
        raise RecsysError(f"--force names unknown stage(s) {', '.join(sorted(bad))}; stages: {', '.join(STAGE_ORDER)}")
    outcomes: list[StageOutcome] = []
    dataset_dir: Path | None = settings.data.out if settings.data else None
    upstream: dict[str, str] = {}
    for name in STAGE_ORDER:
        stage = getattr(settings, name)
        if stage is None:
            continue
        if name == "data":
            inputs = _data_inputs(stage)
        else:
            if dataset_dir is None:
                raise RecsysError(f"stage '{name}' needs a [data] stage in the pipeline")
            inputs = {"dataset": upstream.get("data") or read_manifest(dataset_dir).get("fingerprint", "")}
        fp = _stage_fingerprint(name, stage, inputs)
        out = Path(stage.out)
        if name not in force and "all" not in force and _recorded_fingerprint(out) == fp:
            say(f"{name}: up to date ({out}), skipped")
            outcomes.append(StageOutcome(name, "skipped", str(out), fp))
            if name == "data":
                upstream["data"] = read_manifest(out).get("fingerprint", "")
            continue
        say(f"{name}: running")
        if name == "data":
            upstream["data"] = _run_data(stage, fp, say)
        elif name == "evaluate":
            _run_evaluate(stage, dataset_dir, fp, say)
        outcomes.append(StageOutcome(name, "ran", str(out), fp))
    return outcomes
