"""Workflows behind ``recsys run``: a TOML file declares stages and their settings; ``run_pipeline`` runs them in
order and skips a stage whose output manifest records the same settings, input fingerprints and code version.
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
    #: PipelineRecommender parameters: also fit retriever -> ranker under the protocol and print what the ranker adds
    #: over its own retriever (NDCG@10 side by side, paired difference); None = skip
    second_stage: dict[str, Any] | None = None


@dataclass
class TrainStage:
    """Train the two-tower retriever; ``retriever`` holds RetrieverTrainingArguments fields."""

    out: Path = Path("data/runs/retriever")
    retriever: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainRankerStage:
    """Fit the learned ranker (``recsys train ranker``) on the trained retriever run: ``depth`` retrieved candidates
    per request plus the other sources of ``ltr`` (LTRSettings fields). Later retrieve/batch stages rank with it when
    they say so (``rerank = true``)."""

    out: Path = Path("data/runs/ranker")
    depth: int = 100
    ltr: dict[str, Any] = field(default_factory=dict)


@dataclass
class IndexStage:
    """Build the FAISS index of every item with the trained run."""

    out: Path = Path("indexes/demo")
    index_type: str = "auto"
    device: str = "auto"


@dataclass
class RetrieveStage:
    """Retrieve for a few users (a smoke check a person can read); writes JSON."""

    out: Path = Path("data/retrieve.json")
    users: list[str] = field(default_factory=list)  # empty: the first three users of the dataset
    k: int = 10
    context: str = ""
    rerank: bool = True  # with a [ranker] stage: rank the top `candidates` (and its other sources') with it
    candidates: int | None = None  # default: the ranking run's depth
    explain: bool = False
    verb: str | None = None  # what an interaction is in the reasons; default: from the dataset (watched, bought, picked)


@dataclass
class BatchStage:
    """Nightly candidates for every user (``recsys batch-score``)."""

    out: Path = Path("data/candidates/demo")
    k: int = 100
    chunk_size: int = 10_000
    engine: str = "local"
    rerank: bool = False  # with a [ranker] stage: rank each user's top `rerank_depth` with it
    rerank_depth: int | None = None


@dataclass
class PipelineSettings:
    name: str = "pipeline"
    data: DataStage | None = None
    train: TrainStage | None = None
    ranker: TrainRankerStage | None = None
    index: IndexStage | None = None
    retrieve: RetrieveStage | None = None
    evaluate: EvaluateStage | None = None
    batch: BatchStage | None = None


STAGE_ORDER = ("data", "train", "ranker", "index", "retrieve", "evaluate", "batch")
_STAGE_CLASSES: dict[str, type] = {
    "data": DataStage, "train": TrainStage, "ranker": TrainRankerStage, "index": IndexStage, "retrieve": RetrieveStage,
    "evaluate": EvaluateStage, "batch": BatchStage,
}
#: what each stage consumes from the stages before it
_NEEDS = {
    "data": (), "train": ("data",), "ranker": ("data", "train"), "index": ("data", "train"), "retrieve": ("data", "index"),
    "evaluate": ("data",), "batch": ("data", "index"),
}
#: stages consumed when the pipeline has them (retrieve and batch rank with the ranker when ``rerank`` is on)
_OPTIONAL_NEEDS = {"retrieve": ("ranker",), "batch": ("ranker",)}


def load_pipeline(path: Path, overrides: list[str] | None = None, env: dict[str, str] | None = None) -> PipelineSettings:
    raw = apply_overrides(load_toml(path), overrides or [], env)
    meta = raw.pop("pipeline", {})
    unknown = set(raw) - set(STAGE_ORDER)
    if unknown:
        raise RecsysError(f"{path}: unknown stage(s) {', '.join(sorted(unknown))}; known stages: {', '.join(STAGE_ORDER)}")
    stages = {name: from_dict(_STAGE_CLASSES[name], raw[name], name) for name in STAGE_ORDER if name in raw}
    return PipelineSettings(name=str(meta.get("name", Path(path).stem)), **stages)


# ---------------------------------------------------------------------------------------------- stage runners
def _data_inputs(s: DataStage) -> dict[str, str]:
    if s.source == "movielens" and s.path is not None and Path(s.path).is_dir():
        return {f.name: fingerprint_file(f) for f in sorted(Path(s.path).iterdir()) if f.is_file()}
    if s.source == "table":
        files = [s.interactions, s.items_file, s.users_file]
        return {str(f): fingerprint_file(Path(f)) for f in files if f is not None and Path(f).exists()}
    return {}


def _run_data(s: DataStage, ctx: dict[str, Any], log: Log) -> str:
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
    saved = ds.save(s.out, source=source)
    c = saved.manifest["counts"]
    log(f"data: wrote {s.out} ({c['interactions']:,} interactions, {c['items']:,} items, {c['users']:,} users)")
    return saved.fingerprint


def _run_train(s: TrainStage, ctx: dict[str, Any], log: Log) -> str:
    from recsys.data.dataset import Dataset
    from recsys.retriever.config import RetrieverTrainingArguments
    from recsys.retriever.run import train_run

    args = RetrieverTrainingArguments.from_dict(s.retriever)  # bad keys/values raise a SettingsError
    summary = train_run(Dataset.load(ctx["dataset"]), s.out, args, progress=log)
    log(f"train: wrote {s.out} (model {summary['fingerprint']}, validation NDCG@10 {summary['metrics'].get('val_NDCG@10', float('nan')):.4f})")
    return summary["fingerprint"]


def _run_ranker(s: TrainRankerStage, ctx: dict[str, Any], log: Log) -> str:
    from recsys.data.dataset import Dataset
    from recsys.ltr.run import train_ranking_run

    summary = train_ranking_run(Dataset.load(ctx["dataset"]), ctx["run"], s.out, s.ltr or None, depth=s.depth, overwrite=True, progress=log)
    ndcg = summary["validation_ndcg_at_10_candidates"]
    log(f"ranker: wrote {s.out} (ranking run {summary['fingerprint']}, validation NDCG@10 of the candidates {ndcg if ndcg is not None else float('nan'):.4f}, {summary['fit_seconds']} s)")
    return summary["fingerprint"]


def _run_index(s: IndexStage, ctx: dict[str, Any], log: Log) -> str:
    from recsys.data.dataset import Dataset
    from recsys.index.build import build_index

    index = build_index(ctx["run"], Dataset.load(ctx["dataset"]), s.out, index_type=s.index_type, device=s.device, progress=False)
    info = index.info()
    log(f"index: wrote {s.out} ({info['count']:,} items, {info['type']}, dim {info['dim']})")
    return str(read_manifest(Path(s.out)).get("fingerprint"))


def _run_retrieve(s: RetrieveStage, ctx: dict[str, Any], log: Log) -> str:
    from recsys.context import parse_context
    from recsys.service.retrieval import RetrievalService

    rerank = ctx.get("ranker") if s.rerank else None
    service = RetrievalService.open(ctx["index"], dataset_dir=ctx["dataset"], rerank_run=rerank, rerank_depth=s.candidates, verb=s.verb)
    users = [service.dataset.user_id_from_text(u) for u in s.users] or service.histories.user_ids.sort().head(3).to_list()
    context = parse_context(s.context)
    results = []
    for user in users:
        recs = service.recommend(user, k=s.k, context=context, explain=s.explain)
        results.append({"user": user, "context": context, "items": [r.to_dict() for r in recs]})
        log(f"retrieve{' + ranker' if rerank else ''}: user {user}: " + "; ".join(f"{r.item_id} {r.title or ''}".strip() for r in recs[:5]) + (" ..." if len(recs) > 5 else ""))
    write_text_atomic(Path(s.out), json.dumps({"results": results}, indent=2, default=str))
    return fingerprint_json(results)


def _run_evaluate(s: EvaluateStage, ctx: dict[str, Any], log: Log) -> str:
    from recsys.data.dataset import Dataset
    from recsys.evaluation.protocol import EvaluationSettings, evaluate, format_table

    ds = Dataset.load(ctx["dataset"])
    report = evaluate(ds, EvaluationSettings(models=s.models, params=s.params, grids=s.grids, seed=s.seed, cold_start=s.cold_start), progress=log)
    report["manifest"] = {"kind": "evaluation", "dataset_fingerprint": ds.fingerprint, "code": code_version()}
    log(format_table(report))
    if s.second_stage is not None:
        from recsys.evaluation.second_stage import format_second_stage, second_stage_report

        report["second_stage"] = second_stage_report(ds, s.second_stage, seed=s.seed, progress=log)
        log(format_second_stage(report["second_stage"]))
    write_text_atomic(Path(s.out), json.dumps(report, indent=2, default=str))
    return fingerprint_json([report["results"], report.get("second_stage")])


def _run_batch(s: BatchStage, ctx: dict[str, Any], log: Log) -> str:
    from recsys.batch import BatchJob, run_batch

    rerank = ctx.get("ranker") if s.rerank else None
    if s.rerank and rerank is None:
        raise RecsysError("[batch] rerank = true needs a [ranker] stage in the pipeline")
    job = BatchJob(
        index=Path(ctx["index"]), out=Path(s.out), dataset=Path(ctx["dataset"]), k=s.k, chunk_size=s.chunk_size, engine=s.engine,
        rerank=Path(rerank) if rerank else None, rerank_depth=s.rerank_depth,
    )
    summary = run_batch(job, overwrite=True, progress=False)
    log(f"batch: wrote {s.out} ({summary['users']:,} users, {summary['chunks']} parts, {summary['users_per_second']} users/s)")
    return str(read_manifest(Path(s.out)).get("inputs", {}).get("index_fingerprint")) + ":" + summary["generated_at"]


_RUNNERS: dict[str, Callable[[Any, dict[str, Any], Log], str]] = {
    "data": _run_data, "train": _run_train, "ranker": _run_ranker, "index": _run_index, "retrieve": _run_retrieve,
    "evaluate": _run_evaluate, "batch": _run_batch,
}
#: the context key under which each stage's output path is passed downstream
_PROVIDES = {"data": "dataset", "train": "run", "ranker": "ranker", "index": "index"}


def _stage_fingerprint(name: str, settings: Any, inputs: dict[str, str]) -> str:
    return fingerprint_json({"stage": name, "settings": as_dict(settings), "inputs": inputs, "code": code_version()})


def _record_path(out: Path) -> Path:
    """The stage record sits beside the output (``.NAME.stage.json``) so artefact writers never clobber it."""
    return out.parent / f".{out.name}.stage.json"


def _read_record(out: Path) -> dict[str, Any] | None:
    path = _record_path(out)
    if not out.exists() or not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


@dataclass
class StageOutcome:
    stage: str
    status: str  # "ran" | "skipped"
    output: str
    fingerprint: str


def run_pipeline(settings: PipelineSettings, *, force: list[str] | None = None, log: Log | None = None) -> list[StageOutcome]:
    """Run the declared stages in order; a stage is skipped when its record matches settings, inputs and code."""
    say = log or (lambda _m: None)
    force = set(force or [])
    bad = force - set(STAGE_ORDER) - {"all"}
    if bad:
        raise RecsysError(f"--force names unknown stage(s) {', '.join(sorted(bad))}; stages: {', '.join(STAGE_ORDER)}")
    outcomes: list[StageOutcome] = []
    ctx: dict[str, Any] = {}
    produced: dict[str, str] = {}  # stage -> output fingerprint
    for name in STAGE_ORDER:
        stage = getattr(settings, name)
        if stage is None:
            continue
        for need in _NEEDS[name]:
            if need not in produced:
                raise RecsysError(f"stage '{name}' needs a [{need}] stage before it in the pipeline")
        inputs = _data_inputs(stage) if name == "data" else {need: produced[need] for need in _NEEDS[name]}
        inputs.update({opt: produced[opt] for opt in _OPTIONAL_NEEDS.get(name, ()) if opt in produced and getattr(stage, "rerank", False)})
        fp = _stage_fingerprint(name, stage, inputs)
        out = Path(stage.out)
        record = _read_record(out)
        if name not in force and "all" not in force and record is not None and record.get("fingerprint") == fp:
            say(f"{name}: up to date ({out}), skipped")
            produced[name] = record["output_fingerprint"]
            outcomes.append(StageOutcome(name, "skipped", str(out), fp))
        else:
            say(f"{name}: running")
            produced[name] = _RUNNERS[name](stage, ctx, say)
            write_text_atomic(_record_path(out), json.dumps({"stage": name, "fingerprint": fp, "output_fingerprint": produced[name], "inputs": inputs, "code": code_version()}, indent=2))
            outcomes.append(StageOutcome(name, "ran", str(out), fp))
        if name in _PROVIDES:
            ctx[_PROVIDES[name]] = out
    return outcomes
