"""Retrieve + rerank quality on MovieLens 100K under the offline protocol (EVALUATION.md), at every rerank depth
from one scoring pass.

    python benchmarks/pipeline_quality.py --work DIR --split validation --users 150 --depth 20 --tag a
    python benchmarks/pipeline_quality.py --work DIR --split test --tag a --time-limit 2400

Stages, each cached under ``--work`` so that a rerun (or a longer one) reuses what is done:

1. the two-tower retriever, fitted once on the protocol's train split with early stopping on validation (the
   settings of pipelines/movielens-100k.toml), used as is for test;
2. its full-catalogue scores and top ``--depth`` candidates per case (protocol exclusions and tie keys, so depth 0
   is exactly the retriever's protocol ranking);
3. the cross-encoder reranker (``--tag`` names a setting; ``--set`` overrides RerankerTrainingArguments), fitted on
   the train split with hard negatives from that retriever;
4. reranker scores of each case's candidates in a seeded random order of the cases, saved as it goes, so a
   time-limited pass still gives a clean random sample;
5. the report per depth d (top d reordered, the rest in retriever order): NDCG@10 and its paired difference against
   retrieve only, ms per request, gain per ms, ROC AUC (rating >= 4) of the cosine, the logit and the rating head.
   Full JSON: ``--work``/report-<tag>-<split>-<inference>.json.

Results: docs/results.md ("retrieve + rerank at every depth").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys.evaluation import metrics as M
from recsys.evaluation.protocol import _TEST, _VALIDATION
from recsys.data.types import Cases, TrainData
from recsys.evaluation.split import LeaveOneOutSplit
from recsys.manifest import atomic_file, write_text_atomic

#: reranked candidates score LIFT + logit; retriever cosines are within [-1, 1]
LIFT = 1000.0
#: MovieLens 100K numbers of EVALUATION.md (SASRec is the best tuned baseline)
SASREC_NDCG10, SASREC_SE = 0.1118, 0.0081


def _save_npy(path: Path, array: np.ndarray) -> None:
    """np.save through a temp file + rename, so a killed run never leaves a torn file."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _save_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=float))


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# ------------------------------------------------------------------------------------------------ stages


def load_or_fit_retriever(work: Path, split: LeaveOneOutSplit, threads: int, say: Any) -> Any:
    """The retriever fitted on train, early-stopped on validation; saved to ``work/retriever``."""
    from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever

    path = work / "retriever"
    if path.is_dir():
        return TwoTowerRetriever.load(path)
    # pipelines/movielens-100k.toml: [train.retriever] time_budget_s = 600, everything else default
    args = RetrieverTrainingArguments(time_budget_s=600, threads=threads)
    start = time.perf_counter()
    retriever = TwoTowerRetriever(args).fit(split.train, split.validation)
    fit_s = time.perf_counter() - start
    say(f"retriever fitted in {fit_s:.0f}s: {retriever.metrics}")
    retriever.save(path, extra_manifest={"fit_seconds": round(fit_s, 1)})
    return retriever


def case_set(split: LeaveOneOutSplit, name: str) -> tuple[Cases, TrainData, int]:
    """(cases, the data their histories come from, the protocol's tie-key offset)."""
    if name == "test":
        return split.test, split.train_full, _TEST
    return split.validation, split.train, _VALIDATION


def retriever_candidates(work: Path, retriever: Any, cases: Cases, data: TrainData, split_name: str, offset: int, depth: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Prepared retriever scores (NaN = excluded, float64) and the top ``depth`` items per case in protocol order."""
    spath, tpath = work / f"{split_name}_retriever_scores.npy", work / f"{split_name}_top{depth}.npy"
    if spath.exists() and tpath.exists():
        return np.load(spath), np.load(tpath)
    profiles = data.users[cases.users] if (data.users is not None and retriever.args.use_profiles) else None
    raw = retriever.score(cases, profiles).astype(np.float32)
    excl = cases.exclude
    s = M.prepare_scores(raw, np.repeat(np.arange(len(cases)), excl.lengths), excl.items, cases.targets)
    keys = M.tie_keys(np.arange(len(cases)) + offset, s.shape[1], seed)
    top = M.top_k(s, keys, depth)
    _save_npy(spath, s)
    _save_npy(tpath, top)
    return s, top


def load_or_fit_reranker(work: Path, tag: str, overrides: dict[str, Any], split: LeaveOneOutSplit, retriever: Any, say: Any) -> Any:
    """The cross-encoder fitted on the train split, hard negatives from ``retriever``; saved to ``work/reranker-<tag>``."""
    from recsys.reranker import Reranker, RerankerTrainingArguments

    path = work / f"reranker-{tag}"
    args = RerankerTrainingArguments.from_dict({"progress_bar": False, **overrides})
    if path.is_dir():
        reranker = Reranker.load(path)
        saved = {k: v for k, v in reranker.args.to_dict().items() if k not in ("progress_bar", "threads")}
        wanted = {k: v for k, v in args.to_dict().items() if k not in ("progress_bar", "threads")}
        if wanted.get("retrieval_weight") is None:  # chosen on validation at fit time
            wanted["retrieval_weight"] = saved.get("retrieval_weight")
        if saved != wanted:
            diff = {k: (saved.get(k), wanted.get(k)) for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k)}
            raise SystemExit(f"{path} was trained with other settings {diff}; use another --tag")
        return reranker
    # validation cases pick the fusion weight (retrieval_weight), as the reranker's own training does
    reranker = Reranker(args).fit(split.train, retriever, split.validation, progress=say)
    say(f"reranker {tag}: {reranker.history}")
    reranker.save(path)
    return reranker


def score_candidates(
    work: Path, tag: str, split_name: str, reranker: Any, cases: Cases, data: TrainData, top: np.ndarray,
    order: np.ndarray, n_cases: int, chunk: int, time_limit: float | None, say: Any, shard: tuple[int, int] = (0, 1),
) -> tuple[np.ndarray, np.ndarray]:
    """Reranker logits of every case's candidates (rows of ``top``), in ``order``, resumable; (scores, done mask).

    ``shard`` = (i, n): this process scores chunks i, i + n, ... of ``order`` into its own files (n single-thread
    processes beat one n-thread process on an oversubscribed CPU); the returned arrays merge every shard's files."""
    name = f"{tag}_{split_name}_rerank{top.shape[1]}" + ("" if reranker.inference == "fp32" else f"_{reranker.inference}")
    i_shard, n_shard = shard
    own = f"{name}_s{i_shard}of{n_shard}" if n_shard > 1 else name
    spath, dpath = work / f"{own}.npy", work / f"{own}_done.npy"
    scores, done = _merged_scores(work, name, top.shape)
    if spath.exists() and dpath.exists():
        mine, mine_done = np.load(spath), np.load(dpath)
    else:
        mine, mine_done = np.full(top.shape, np.nan, dtype=np.float32), np.zeros(len(top), dtype=bool)
    positions = np.arange(min(n_cases, len(order)))
    positions = positions[(positions // chunk) % n_shard == i_shard]
    todo = [int(r) for r in order[positions] if not done[r]]
    item_texts = reranker.render_items(data.items)
    hist_texts = reranker.history_texts(data.items)
    start, pairs = time.perf_counter(), 0
    for lo in range(0, len(todo), chunk):
        if time_limit is not None and time.perf_counter() - start > time_limit:
            say(f"time limit reached: {int(done[order[:n_cases]].sum())} of {n_cases} cases scored")
            break
        rows = np.array(todo[lo : lo + chunk])
        sub = cases.take(rows)
        profiles = data.users[sub.users] if data.users is not None else None
        cands = [top[r][top[r] >= 0] for r in rows]
        out = reranker.score_candidates([sub.history.row(i) for i in range(len(sub))], cands, item_texts, hist_texts, context=sub.context, profiles=profiles)
        for r, c, s in zip(rows, cands, out):
            scores[r, : len(c)] = s
            mine[r, : len(c)] = s
        done[rows] = True
        mine_done[rows] = True
        pairs += sum(len(c) for c in cands)
        _save_npy(spath, mine)
        _save_npy(dpath, mine_done)
        el = time.perf_counter() - start
        say(f"{tag}/{split_name}: {int(done[order[:n_cases]].sum())}/{n_cases} cases, {pairs / el:.1f} pairs/s, {el:.0f}s")
    return scores, done


def _merged_scores(work: Path, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and done mask merged over ``name``'s unsharded file and every shard file."""
    scores, done = np.full(shape, np.nan, dtype=np.float32), np.zeros(shape[0], dtype=bool)
    for dpath in sorted(work.glob(f"{name}_done.npy")) + sorted(work.glob(f"{name}_s*of*_done.npy")):
        spath = dpath.with_name(dpath.name.replace("_done.npy", ".npy"))
        if spath.exists():
            d, sc = np.load(dpath), np.load(spath)
            scores[d] = sc[d]
            done |= d
    return scores, done


def time_depths(reranker: Any, cases: Cases, data: TrainData, top: np.ndarray, rows: np.ndarray, depths: list[int], repeats: int) -> dict[int, dict[str, float]]:
    """Median ms (and p90) of one ``score_candidates`` call per request at each depth (retriever cost not included)."""
    item_texts = reranker.render_items(data.items)
    hist_texts = reranker.history_texts(data.items)
    out: dict[int, dict[str, float]] = {}
    for d in depths:
        times = []
        for _ in range(repeats):
            for r in rows:
                sub = cases.take(np.array([r]))
                profiles = data.users[sub.users] if data.users is not None else None
                t = time.perf_counter()
                reranker.score_candidates([sub.history.row(0)], [top[r, :d]], item_texts, hist_texts, context=sub.context, profiles=profiles)
                times.append(1000.0 * (time.perf_counter() - t))
        if times:  # --timing-requests 0: quality only, no timing
            out[d] = {"ms_median": float(np.median(times)), "ms_p90": float(np.percentile(times, 90)), "n": len(times)}
    return out


def time_retriever(retriever: Any, cases: Cases, data: TrainData, rows: np.ndarray, depth: int, repeats: int) -> dict[str, float]:
    """Median ms of one request through the retriever: user tower, catalogue dot product and top ``depth``."""
    items = retriever.encode_items()
    times = []
    for _ in range(repeats):
        for r in rows:
            sub = cases.take(np.array([r]))
            profiles = data.users[sub.users] if (data.users is not None and retriever.args.use_profiles) else None
            t = time.perf_counter()
            u = retriever.encode_users(sub.history, sub.context, profiles)
            s = (u @ items.T)[0]
            np.argpartition(-s, depth)[:depth]
            times.append(1000.0 * (time.perf_counter() - t))
    return {"ms_median": float(np.median(times)) if times else None, "n": len(times)}


# ------------------------------------------------------------------------------------------------ metrics


def depth_ranks(
    prepared: np.ndarray, top: np.ndarray, rerank: np.ndarray, targets: np.ndarray, rows: np.ndarray, d: int, keys: np.ndarray,
    *, fuse: float | None = None, temperature: float = 0.07, served_weight: float | None = None,
) -> np.ndarray:
    """0-based protocol ranks of the targets when the retriever's top ``d`` of each case is reordered by the reranker
    and everything else keeps its retriever score (exclusions stay NaN).

    ``fuse`` = w orders the top ``d`` by ``cosine / temperature + w * logit`` instead of the logit alone (the
    retriever's own softmax logit plus the weighted cross-encoder logit; w -> infinity is the plain reranker)."""
    s = prepared[rows].copy()
    if d > 0:
        cand = top[rows, :d]
        r_idx = np.repeat(np.arange(len(rows)), d).reshape(len(rows), d)
        valid = cand >= 0
        new = rerank[rows, :d][valid].astype(np.float64)
        if fuse is not None:
            new = s[r_idx[valid], cand[valid]] / temperature + fuse * new
        elif served_weight:  # what the product serves: logit + w x cosine (Reranker.fuse)
            new = new + served_weight * s[r_idx[valid], cand[valid]]
        s[r_idx[valid], cand[valid]] = LIFT + new
    return M.target_ranks(s, targets[rows], keys)


def per_case_ndcg10(ranks: np.ndarray) -> np.ndarray:
    return np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)


def depth_table(
    prepared: np.ndarray, top: np.ndarray, rerank: np.ndarray, targets: np.ndarray, rows: np.ndarray, depths: list[int], offset: int, seed: int,
    timing: dict[int, dict[str, float]], *, fuse: float | None = None, temperature: float = 0.07, served_weight: float | None = None,
) -> list[dict[str, Any]]:
    keys = M.tie_keys(rows + offset, prepared.shape[1], seed)
    base = per_case_ndcg10(depth_ranks(prepared, top, rerank, targets, rows, 0, keys))
    table = []
    for d in depths:
        ranks = depth_ranks(prepared, top, rerank, targets, rows, d, keys, fuse=fuse, temperature=temperature, served_weight=served_weight)
        means, errs = M.ranking_metrics(ranks)
        diff = per_case_ndcg10(ranks) - base
        ms = timing.get(d, {}).get("ms_median", 0.0) if d else 0.0
        row = {
            "depth": d,
            "cases": int(len(rows)),
            "HR@10": means["HR@10"], "HR@10_se": errs["HR@10"],
            "NDCG@10": means["NDCG@10"], "NDCG@10_se": errs["NDCG@10"],
            "HR@20": means["HR@20"], "NDCG@20": means["NDCG@20"], "MRR@10": means["MRR@10"],
            "dNDCG@10": float(diff.mean()),
            "dNDCG@10_se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan"),
            "wins": int((diff > 0).sum()), "losses": int((diff < 0).sum()),
            "ms_per_request": ms,
            "gain_per_ms": float(diff.mean() / ms) if ms > 0 else None,
            "target_in_top_d": float(np.mean((top[rows, :d] == targets[rows, None]).any(axis=1))) if d else None,
        }
        table.append(row)
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    head = ["depth", "cases", "recall@d", "HR@10", "NDCG@10 ± se", "ΔNDCG@10 ± se", "win/loss", "ms/req", "ΔNDCG per s"]
    lines = []
    for r in table:
        gain = f"{1000 * r['gain_per_ms']:+.4f}" if r["gain_per_ms"] is not None else "–"
        lines.append([
            str(r["depth"]) if r["depth"] else "0 (retrieve only)", str(r["cases"]),
            f"{r['target_in_top_d']:.3f}" if r["target_in_top_d"] is not None else "–",
            f"{r['HR@10']:.4f}", f"{r['NDCG@10']:.4f} ± {r['NDCG@10_se']:.4f}",
            f"{r['dNDCG@10']:+.4f} ± {r['dNDCG@10_se']:.4f}" if r["depth"] else "–",
            f"{r['wins']}/{r['losses']}" if r["depth"] else "–",
            f"{r['ms_per_request']:.0f}" if r["depth"] else "–", gain,
        ])
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *[fmt(x) for x in lines]])


# ------------------------------------------------------------------------------------------------ AUC


def target_logits(work: Path, tag: str, split_name: str, reranker: Any, cases: Cases, data: TrainData, say: Any) -> np.ndarray:
    """The reranker's logit of every case's (user, target) pair (what the protocol's AUC reads for this model)."""
    path = work / f"{tag}_{split_name}_target_logits.npy"
    if path.exists():
        return np.load(path)
    start = time.perf_counter()
    profiles = data.users[cases.users] if data.users is not None else None
    out = reranker.score_candidates(
        [cases.history.row(i) for i in range(len(cases))], [np.array([t]) for t in cases.targets],
        reranker.render_items(data.items), reranker.history_texts(data.items), context=cases.context, profiles=profiles,
    )
    logits = np.concatenate(out).astype(np.float32)
    say(f"target logits: {len(logits)} pairs in {time.perf_counter() - start:.0f}s")
    _save_npy(path, logits)
    return logits


def fit_rating_head(work: Path, tag: str, reranker: Any, split: LeaveOneOutSplit, steps: int, say: Any) -> Any:
    """A rating head (rating / 5 regressed with BCE on the training positives, as ``fit_reranker`` does) for a
    reranker that was trained without one; saved next to it."""
    path = work / f"rating-{tag}-{steps}"
    from recsys.reranker.backbone import load_cross_encoder

    if path.is_dir():
        return load_cross_encoder(str(path), max_length=reranker.args.max_length)
    from datasets import Dataset
    from sentence_transformers.cross_encoder import losses

    from recsys.reranker.examples import Requests
    from recsys.reranker.training import _train

    a = reranker.args
    req = Requests(split.train, a.positives_per_user)
    profiles = split.train.users[req.users] if split.train.users is not None else None
    users = reranker.user_texts(req.histories, reranker.history_texts(split.train.items), context=req.context, profiles=profiles)
    item_texts = reranker.render_items(split.train.items)
    rmodel = load_cross_encoder(a.resolved_base_model, max_length=a.max_length, seed=a.seed + 1)
    train = Dataset.from_dict({"query": users, "document": [item_texts[p] for p in req.positives], "label": (np.clip(req.ratings, 0, 5) / 5.0).tolist()})
    info = _train(rmodel, train, losses.BinaryCrossEntropyLoss(rmodel), epochs=a.rating_epochs, max_steps=steps, a=a)
    say(f"rating head: {info}")
    rmodel.save(str(path))
    return rmodel


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/shared/data/movielens-100k")
    p.add_argument("--work", type=Path, default=Path("/tmp/q/pq"))
    p.add_argument("--split", choices=["validation", "test"], default="test")
    p.add_argument("--tag", default="a", help="names the reranker setting (its model and scores are cached by tag)")
    p.add_argument("--set", action="append", default=[], help="a RerankerTrainingArguments field: name=value (JSON)")
    p.add_argument("--depth", type=int, default=50, help="candidates scored per case (the deepest depth)")
    p.add_argument("--depths", default="0,5,10,20,30,50")
    p.add_argument("--users", type=int, default=None, help="score only this many cases (a seeded random subset)")
    p.add_argument("--seed", type=int, default=0, help="protocol tie-key seed and subset seed")
    p.add_argument("--chunk", type=int, default=8, help="cases per scoring call (progress is saved after each)")
    p.add_argument("--time-limit", type=float, default=None, help="stop scoring after this many seconds (results so far are reported)")
    p.add_argument("--timing-requests", type=int, default=5)
    p.add_argument("--timing-repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shard", default="0/1", help="i/n: score only chunks i, i+n, ... (run n processes, then one more to report)")
    p.add_argument("--score-only", action="store_true", help="score and exit (no timing, no report): for shard processes")
    p.add_argument("--inference", default="fp32", choices=["fp32", "onnx"], help="onnx: the same fp32 weights through onnxruntime (logits within 1e-4)")
    p.add_argument("--fuse-weights", default="0.05,0.1,0.2,0.5,1,2", help="weights w of the fused order (cos/temperature + w*logit) swept at the deepest depth")
    p.add_argument("--fuse", type=float, default=None, help="also report every depth for this fused weight (choose it on validation)")
    p.add_argument("--auc", action="store_true", help="also score every case's target pair (AUC of the reranker logit)")
    p.add_argument("--rating-steps", type=int, default=0, help="train a rating head for this many steps (0 = none)")
    a = p.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("sentence_transformers", "transformers", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(a.threads)
    from recsys.data.importers.movielens import import_movielens
    from recsys.evaluation.split import encode, leave_one_out

    say = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True)  # noqa: E731
    a.work.mkdir(parents=True, exist_ok=True)
    depths = sorted({int(x) for x in a.depths.split(",")} | {0})
    if max(depths) > a.depth:
        raise SystemExit(f"--depths go up to {max(depths)} but only --depth {a.depth} candidates are scored")
    overrides = {"threads": a.threads, "max_length": 128, **{k: _value(v) for k, v in (s.split("=", 1) for s in a.set)}}
    overrides.setdefault("candidates", 50)

    ds, _ = import_movielens(a.data)
    split = leave_one_out(encode(ds))
    retriever = load_or_fit_retriever(a.work, split, a.threads, say)
    cases, data, offset = case_set(split, a.split)
    targets = cases.targets.astype(np.int64)
    prepared, top = retriever_candidates(a.work, retriever, cases, data, a.split, offset, a.depth, a.seed)
    reranker = load_or_fit_reranker(a.work, a.tag, overrides, split, retriever, say)
    if a.inference != "fp32":
        reranker.use(a.inference, workdir=a.work / f"onnx-{a.tag}")
    order = np.random.default_rng(a.seed).permutation(len(cases))
    n = min(a.users or len(cases), len(cases))
    shard = tuple(int(x) for x in a.shard.split("/"))
    rerank, done = score_candidates(a.work, a.tag, a.split, reranker, cases, data, top, order, n, a.chunk, a.time_limit, say, shard)
    if a.score_only:
        return
    rows = np.flatnonzero(done)
    if len(rows) == 0:
        raise SystemExit("no case scored yet")

    tpath = a.work / f"{a.tag}_{a.split}_timing_{a.inference}.json"
    if tpath.exists():
        timing_json = json.loads(tpath.read_text())
    else:
        trows = order[: a.timing_requests]
        timing_json = {
            "reranker": {str(d): v for d, v in time_depths(reranker, cases, data, top, trows, [d for d in depths if d], a.timing_repeats).items()},
            "retriever": time_retriever(retriever, cases, data, trows, a.depth, a.timing_repeats),
            "load_average": os.getloadavg(),
        }
        _save_json(tpath, timing_json)
    timing = {int(d): v for d, v in timing_json["reranker"].items()}

    table = depth_table(prepared, top, rerank, targets, rows, depths, offset, a.seed, timing)
    # the best depth by NDCG@10 gain per ms; 0 (do not rerank) unless some depth gains at all
    best = max((r for r in table if r["gain_per_ms"] is not None and r["gain_per_ms"] > 0), key=lambda r: r["gain_per_ms"], default=table[0])
    report: dict[str, Any] = {
        "split": a.split, "tag": a.tag, "inference": a.inference, "reranker_settings": reranker.args.to_dict(), "reranker_training": reranker.history,
        "retriever_metrics": retriever.metrics, "cases_scored": int(len(rows)), "cases_total": len(cases),
        "subset": "all cases" if len(rows) == len(cases) else f"{len(rows)} cases, scored in the order of numpy default_rng({a.seed}).permutation({len(cases)}) until the time limit",
        "depths": table, "best_gain_per_ms_depth": best["depth"] if best else None, "timing": timing_json,
        "load_average_at_report": os.getloadavg(),
    }
    # retrieve-only over every case too (the number comparable with EVALUATION.md's table)
    all_rows = np.arange(len(cases))
    m_all, e_all = M.ranking_metrics(depth_ranks(prepared, top, rerank, targets, all_rows, 0, M.tie_keys(all_rows + offset, prepared.shape[1], a.seed)))
    report["retrieve_only_all_cases"] = {"NDCG@10": m_all["NDCG@10"], "NDCG@10_se": e_all["NDCG@10"], "HR@10": m_all["HR@10"]}
    temp = float(retriever.args.temperature)
    keys = M.tie_keys(rows + offset, prepared.shape[1], a.seed)
    sweep = []
    for w in [float(x) for x in a.fuse_weights.split(",") if x]:
        m, e = M.ranking_metrics(depth_ranks(prepared, top, rerank, targets, rows, max(depths), keys, fuse=w, temperature=temp))
        sweep.append({"weight": w, "depth": max(depths), "NDCG@10": m["NDCG@10"], "NDCG@10_se": e["NDCG@10"], "HR@10": m["HR@10"]})
    report["fuse_sweep"] = sweep
    print("fused order cos/T + w*logit at depth", max(depths), ":", ", ".join(f"w={r['weight']}: {r['NDCG@10']:.4f}" for r in sweep))
    if a.fuse is not None:
        report["fused"] = {"weight": a.fuse, "depths": depth_table(prepared, top, rerank, targets, rows, depths, offset, a.seed, timing, fuse=a.fuse, temperature=temp)}
        print(f"fused w={a.fuse}:")
        print(format_table(report["fused"]["depths"]))
    w_served = reranker.retrieval_weight
    if w_served:
        report["served"] = {"retrieval_weight": w_served, "fusion_choice": reranker.metrics.get("fusion"),
                            "depths": depth_table(prepared, top, rerank, targets, rows, depths, offset, a.seed, timing, served_weight=w_served)}
        print(f"served score (logit + {w_served:g} x cosine, the weight chosen on validation):")
        print(format_table(report["served"]["depths"]))
    deepest = table[-1]
    report["vs_sasrec"] = {
        "depth": deepest["depth"], "NDCG@10": deepest["NDCG@10"], "minus_sasrec": deepest["NDCG@10"] - SASREC_NDCG10,
        "in_sasrec_se": (deepest["NDCG@10"] - SASREC_NDCG10) / SASREC_SE,
    }

    if cases.ratings is not None:
        label = cases.ratings >= 4
        tgt = targets
        auc: dict[str, Any] = {"retriever_cosine_all_cases": M.roc_auc(prepared[np.arange(len(cases)), tgt], label)}
        # the pipeline's own target score at the deepest depth: LIFT + logit when the target was a candidate
        in_top = top[rows, : a.depth] == tgt[rows, None]
        pipe = prepared[rows, tgt[rows]].copy()
        hit = in_top.any(axis=1)
        pipe[hit] = LIFT + rerank[rows[hit], in_top[hit].argmax(axis=1)]
        auc[f"pipeline_depth{a.depth}_scored_cases"] = M.roc_auc(pipe, label[rows])
        auc["retriever_cosine_scored_cases"] = M.roc_auc(prepared[rows, tgt[rows]], label[rows])
        if a.auc:
            logits = target_logits(a.work, a.tag, a.split, reranker, cases, data, say)
            auc["reranker_logit_all_cases"] = M.roc_auc(logits, label)
        if a.rating_steps:
            from recsys.reranker.evaluation import rating_metrics

            reranker.rating_model = fit_rating_head(a.work, a.tag, reranker, split, a.rating_steps, say)
            auc["rating_head"] = {"steps": a.rating_steps, **rating_metrics(reranker, data, cases)}
        report["auc"] = auc

    _save_json(a.work / f"report-{a.tag}-{a.split}-{a.inference}.json", report)
    print(format_table(table))
    print(json.dumps({k: report[k] for k in ("subset", "best_gain_per_ms_depth", "retrieve_only_all_cases", "vs_sasrec", "timing")} | {"auc": report.get("auc")}, indent=1, default=float))


if __name__ == "__main__":
    main()
