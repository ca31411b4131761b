"""Context ablation of the cross-encoder reranker on the demo data: the same reranker trained with and without the
request context (time of day, weekday, device) rendered into the user text.

    PYTHONPATH=. python benchmarks/experiments/rerank_context.py --work DIR [--smoke] [--item-context --first-stage plain]

(``PYTHONPATH=.``: the arm subprocesses run this script by path, so this checkout's ``recsys`` must come first.)
Stages are cached under ``--work``: a rerun with other evaluation sizes reuses the trained models.

1. demo data (``--item-context``: items with a device-favoured format), the protocol's leave-one-out split, one
   two-tower retriever (context-aware, or context-free with ``--first-stage plain``);
2. two rerankers identical but for ``use_context``, trained in two single-thread processes side by side;
3. per reranker: the fusion weight chosen on validation, ``evaluate_reranker`` on test cases, the logits of the
   retriever's top 20 for a seeded subset of test cases;
4. the report: NDCG@10 / HR@10 at depth 20 with paired differences; a counterfactual with the context swapped (does
   the top 10 move toward the categories the generator boosts?); the device -> format section; an oracle that
   reorders the top 20 by the generator's own context rule (the room any reranker has).

Results: docs/experiments/context-ablation.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.evaluation import metrics as M
from recsys.evaluation.protocol import _TEST
from recsys.data.types import Cases
from recsys.evaluation.split import LeaveOneOutSplit
from recsys.manifest import atomic_file, write_text_atomic

#: reranked candidates score LIFT + new score: retriever cosines stay within [-1, 1]
LIFT = 1000.0
DEPTH = 20
ARMS = ("ctx", "noctx")
DEVICE_SWAP = {"mobile": "desktop", "desktop": "tv", "tv": "mobile"}

#: the reranker tests' fast retriever (tests/reranker/conftest.py), with room to early-stop on validation
RETRIEVER = dict(d_model=32, layers=1, heads=2, max_len=20, batch_size=32, lr=5e-3, epochs=40, patience=3, use_context=True, time_budget_s=600)


def templates(item_context: bool = False) -> Any:
    """Short texts (as the tests): user = bio, context, 3 newest titles; item = title and category (~60 tokens a pair)."""
    from recsys.text import TextTemplates

    fields = ["title", "category", *(["format"] if item_context else [])]
    return TextTemplates(history_max_items=3, history_max_chars=150, profile_template="{bio}", item_fields=fields)


def reranker_settings(smoke: bool, item_context: bool = False) -> dict[str, Any]:
    """Identical for both arms except ``use_context``."""
    return dict(
        max_length=72, batch_size=16, max_steps=4 if smoke else 160, lr=1e-4, positives_per_user=2, negatives_per_positive=3,
        hard_negative_fraction=0.67, candidates=20, fusion_cases=10 if smoke else 100, fusion_depth=DEPTH, seed=0,
        progress_bar=False, templates=templates(item_context),
    )


def _overrides(a: argparse.Namespace) -> dict[str, Any]:
    """``--set name=value`` (JSON values) for both arms alike."""
    out = {}
    for item in a.set:
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def label_prior_entropy(negatives: float) -> float:
    """BCE of always predicting the positive share 1 / (1 + negatives): what a model that learned nothing scores."""
    p = 1.0 / (1.0 + negatives)
    return float(-(p * math.log(p) + (1 - p) * math.log(1 - p)))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _save_text(path: Path, text: str) -> None:
    write_text_atomic(path, text)


def _say(tag: str) -> Any:
    return lambda m: print(f"[{time.strftime('%H:%M:%S')}] {tag}: {m}", flush=True)


# ------------------------------------------------------------------------------------------------ shared stages


def load_split(a: argparse.Namespace) -> LeaveOneOutSplit:
    from recsys.data.demo import generate_demo
    from recsys.evaluation.split import encode, leave_one_out

    ds, _ = generate_demo(
        users=a.users, items=a.items, seed=a.seed, interactions_per_user=a.interactions_per_user, item_context=getattr(a, "item_context", False)
    )
    return leave_one_out(encode(ds))


def load_or_fit_retriever(work: Path, split: LeaveOneOutSplit, threads: int, say: Any, use_context: bool = True, name: str = "retriever") -> Any:
    """The fast-settings two-tower retriever cached under ``work / name`` (fitted with seed 0 when absent)."""
    import torch

    from recsys.retriever import TwoTowerRetriever

    path = work / name
    if path.is_dir():
        return TwoTowerRetriever.load(path)
    torch.manual_seed(0)
    start = time.perf_counter()
    retriever = TwoTowerRetriever(**{**RETRIEVER, "use_context": use_context}, threads=threads).fit(split.train, split.validation)
    fit_s = time.perf_counter() - start
    say(f"retriever fitted in {fit_s:.0f}s: {retriever.metrics}")
    retriever.save(path, extra_manifest={"fit_seconds": round(fit_s, 1)})
    return retriever


def swapped_context(context: pl.DataFrame) -> pl.DataFrame:
    """The counterfactual request: device rotated, hour moved by 12 h within the same day (weekday unchanged)."""
    ts = pl.col(S.TIMESTAMP)
    shifted = pl.when(ts.dt.hour() < 12).then(ts + pl.duration(hours=12)).otherwise(ts - pl.duration(hours=12))
    return context.with_columns(shifted.alias(S.TIMESTAMP), pl.col("device").replace_strict(DEVICE_SWAP, return_dtype=pl.String))


def candidates(work: Path, retriever: Any, split: LeaveOneOutSplit, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The retriever's protocol scores on the test cases (NaN = excluded) and their top ``DEPTH`` (cached)."""
    spath, tpath = work / "test_retriever_scores.npy", work / f"test_top{DEPTH}.npy"
    if spath.exists() and tpath.exists():
        return np.load(spath), np.load(tpath)
    prepared = _prepared(retriever, split.test)
    top = M.top_k(prepared, M.tie_keys(np.arange(len(split.test)) + _TEST, prepared.shape[1], seed), DEPTH)
    _save_npy(spath, prepared)
    _save_npy(tpath, top)
    return prepared, top


def _prepared(retriever: Any, cases: Cases) -> np.ndarray:
    raw = retriever.score(cases).astype(np.float32)
    excl = cases.exclude
    return M.prepare_scores(raw, np.repeat(np.arange(len(cases)), excl.lengths), excl.items, cases.targets)


def case_rows(n_cases: int, n: int, seed: int) -> np.ndarray:
    """The scored test cases: the first ``n`` of a seeded permutation (a fixed random subset, sorted)."""
    return np.sort(np.random.default_rng(seed).permutation(n_cases)[:n])


# ------------------------------------------------------------------------------------------------ one arm


def run_arm(a: argparse.Namespace, arm: str) -> None:
    """Train (or load) one reranker, choose its fusion weight, evaluate it, score the candidates; write arm-<arm>.json."""
    import torch

    from recsys.reranker import Reranker, RerankerTrainingArguments
    from recsys.reranker.evaluation import choose_retrieval_weight, evaluate_reranker

    torch.set_num_threads(a.threads)
    say = _say(arm)
    work = a.work
    t_all = time.perf_counter()
    split = load_split(a)
    retriever = load_or_fit_retriever(work, split, a.threads, say, a.first_stage == "context")
    prepared, top = candidates(work, retriever, split, a.seed)
    out: dict[str, Any] = {"arm": arm, "load_average_start": os.getloadavg(), "threads": a.threads}

    path = work / f"reranker-{arm}"
    settings = {**reranker_settings(a.smoke, a.item_context), **_overrides(a), "use_context": arm == "ctx", "threads": a.threads}
    if path.is_dir():
        reranker = Reranker.load(path)
        reranker.args.retrieval_weight = None
    else:
        start = time.perf_counter()
        reranker = Reranker(RerankerTrainingArguments(**settings)).fit(split.train, retriever, progress=say)
        say(f"trained in {time.perf_counter() - start:.0f}s: {reranker.history}")
        reranker.save(path)
    out["training"] = reranker.history
    if a.inference != "fp32":  # the same fp32 weights through onnxruntime: logits within 1e-4, ~1.9x faster here
        reranker.use(a.inference, workdir=work / f"onnx-{arm}", threads=a.threads)
    out["inference"] = reranker.inference
    ranking = next((h for h in reranker.history if h.get("stage") == "ranking"), {})
    negatives = reranker.args.negatives_per_positive
    if ranking.get("examples") and ranking.get("positives"):  # context-swapped negatives change the label mix
        negatives = ranking["examples"] / ranking["positives"] - 1
    out["label_prior_entropy"] = label_prior_entropy(negatives)

    start = time.perf_counter()
    fusion = choose_retrieval_weight(reranker, split.train, split.validation, retriever, max_cases=a.fusion_cases, seed=a.seed)
    out["fusion"] = fusion
    out["fusion_seconds"] = round(time.perf_counter() - start, 1)
    say(f"fusion weight {fusion['retrieval_weight']:g} ({out['fusion_seconds']}s): {fusion['fusion_NDCG@10']}")

    start = time.perf_counter()
    out["evaluate"] = evaluate_reranker(reranker, split.train_full, split.test, retriever, max_cases=a.eval_cases, seed=a.seed)
    out["evaluate_seconds"] = round(time.perf_counter() - start, 1)
    say(f"evaluate_reranker ({out['evaluate_seconds']}s): {out['evaluate']}")

    rows = case_rows(len(split.test), a.cases, a.seed)
    data, cases = split.train_full, split.test.take(rows)
    start = time.perf_counter()
    logits = _score(reranker, data, cases, top[rows], cases.context, say, "test top 20")
    _save_npy(work / f"logits-{arm}.npy", logits)
    out["score_seconds"] = round(time.perf_counter() - start, 1)

    cf = cases.take(np.arange(min(a.counterfactual_cases, len(cases))))
    swapped = swapped_context(cf.context)
    hist_texts = reranker.history_texts(data.items)
    profiles = data.users[cf.users] if data.users is not None else None
    histories = [cf.history.row(i) for i in range(len(cf))]
    same = reranker.user_texts(histories, hist_texts, context=cf.context, profiles=profiles) == reranker.user_texts(
        histories, hist_texts, context=swapped, profiles=profiles
    )
    out["counterfactual_text_identical"] = bool(same)
    if arm == "ctx":
        start = time.perf_counter()
        cf_logits = _score(reranker, data, cf, top[rows[: len(cf)]], swapped, say, "counterfactual")
        _save_npy(work / f"logits-{arm}-swapped.npy", cf_logits)
        out["counterfactual_seconds"] = round(time.perf_counter() - start, 1)
    out["seconds"] = round(time.perf_counter() - t_all, 1)
    out["load_average_end"] = os.getloadavg()
    _save_text(work / f"arm-{arm}.json", json.dumps(out, indent=1, default=float))
    say(f"done in {out['seconds']}s")


def _score(reranker: Any, data: Any, cases: Cases, top: np.ndarray, context: pl.DataFrame, say: Any, what: str, chunk: int = 25) -> np.ndarray:
    """(n, DEPTH) logits of each case's candidates under ``context`` (NaN at pads)."""
    item_texts = reranker.render_items(data.items)
    hist_texts = reranker.history_texts(data.items)
    out = np.full(top.shape, np.nan, dtype=np.float32)
    start = time.perf_counter()
    for lo in range(0, len(cases), chunk):
        rows = np.arange(lo, min(lo + chunk, len(cases)))
        sub = cases.take(rows)
        profiles = data.users[sub.users] if data.users is not None else None
        cands = [top[r][top[r] >= 0] for r in rows]
        scores = reranker.score_candidates(
            [sub.history.row(i) for i in range(len(sub))], cands, item_texts, hist_texts, context=context[rows], profiles=profiles
        )
        for r, c, s in zip(rows, cands, scores):
            out[r, : len(c)] = s
        say(f"{what}: {rows[-1] + 1}/{len(cases)} cases, {time.perf_counter() - start:.0f}s")
    return out


# ------------------------------------------------------------------------------------------------ report


def ranks_reordered(prepared: np.ndarray, top: np.ndarray, new: np.ndarray | None, targets: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """0-based protocol ranks when each case's top ``DEPTH`` is reordered by ``new`` (None = retriever order)."""
    s = prepared.copy()
    if new is not None:
        valid = top >= 0
        r_idx = np.broadcast_to(np.arange(len(top))[:, None], top.shape)
        s[r_idx[valid], top[valid]] = LIFT + new[valid].astype(np.float64)
    return M.target_ranks(s, targets, keys)


def ndcg10(ranks: np.ndarray) -> np.ndarray:
    return np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _md(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _top10_boost(top: np.ndarray, scores: np.ndarray, category: np.ndarray, device: list[str], tod: list[str]) -> dict[str, np.ndarray]:
    """Per case: the mean generator boost of the top 10 (of the candidates, ordered by ``scores``) under the given
    context, and the shares of the top 10 in the context's device- and time-preferred categories."""
    from recsys.data.demo import CATEGORIES, CATEGORY_CONTEXT, context_boost

    boost, dev_share, tod_share = np.zeros(len(top)), np.zeros(len(top)), np.zeros(len(top))
    for r in range(len(top)):
        valid = top[r] >= 0
        order = np.argsort(-np.where(np.isnan(scores[r]), -np.inf, scores[r])[valid], kind="stable")[:10]
        cats = category[top[r][valid][order]]
        boost[r] = np.mean([context_boost(CATEGORIES[c], device[r], tod[r]) for c in cats])
        dev_share[r] = np.mean([CATEGORY_CONTEXT[CATEGORIES[c]][0] == device[r] for c in cats])
        tod_share[r] = np.mean([CATEGORY_CONTEXT[CATEGORIES[c]][1] == tod[r] for c in cats])
    return {"boost": boost, "device_share": dev_share, "time_share": tod_share}


def format_rule(formats: np.ndarray, top: np.ndarray, scorings: list[tuple[str, np.ndarray, list[str]]]) -> list[list[str]]:
    """Item-context demo only: did a ranking pick up the generator's device -> format rule? Per scoring (name, scores
    over the candidates, the device each case is judged against; ``formats`` indexed by item id): the fitting share
    of the candidates (the baseline), of the top 10 by the scores, and the per-list gap between the mean scores of
    fitting and non-fitting candidates (near 0 for a model that ignores the rule, whatever its accuracy)."""
    from recsys.data.demo import FORMATS

    fmt = np.asarray(formats)
    body = []
    for name, scores, devices in scorings:
        n = len(scores)
        t = top[:n]
        fits = (t >= 0) & (fmt[np.maximum(t, 0)] == np.array([FORMATS[d] for d in devices])[:, None])
        share, gap = np.zeros(n), np.full(n, np.nan)
        for r in range(n):
            valid = (t[r] >= 0) & ~np.isnan(scores[r])
            sc = scores[r][valid]
            order = np.argsort(-sc, kind="stable")[:10]
            share[r] = fits[r][valid][order].mean()
            f = fits[r][valid]
            if f.any() and (~f).any():
                gap[r] = sc[f].mean() - sc[~f].mean()
        g = gap[~np.isnan(gap)]
        body.append([name, f"{fits.sum() / (t >= 0).sum():.3f}", f"{share.mean():.3f} ± {_se(share):.3f}",
                     f"{g.mean():+.4f} ± {_se(g):.4f}" if len(g) > 1 else "–"])
    return body


ORACLE_WEIGHTS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def context_oracle(a: argparse.Namespace, split: LeaveOneOutSplit, retriever: Any, say: Any) -> tuple[list[list[str]], float, float]:
    """Upper bound of what reading the context can add at rerank time: each test case's retriever top ``DEPTH``
    reordered by cosine + lambda x log(demo.context_boost(category, the case's true device and time of day)), i.e. by the
    generator's own truth, for the context-aware retriever and for one trained without context (cached under
    ``--work``), every test case. The best lambda is chosen on the test cases themselves (an optimistic bound)."""
    from recsys.context import time_of_day
    from recsys.data.demo import FORMAT_BOOST, FORMATS, context_boost

    main_ctx = bool(retriever.args.use_context)
    other = load_or_fit_retriever(a.work, split, a.threads, say, not main_ctx, name="retriever-other")  # use_context flipped
    aware, plain = (retriever, other) if main_ctx else (other, retriever)
    device_of_format = {v: k for k, v in FORMATS.items()}
    formats = split.train_full.items["format"].to_list() if "format" in split.train_full.items.columns else None
    cases = split.test
    rows = np.arange(len(cases))
    cats = split.train_full.items["category"].to_list()
    ctx = cases.context.to_dicts()
    targets = cases.targets.astype(np.int64)
    body, base = [], {}
    for name, model in (("context-aware retriever", aware), ("context-free retriever", plain)):
        prepared = _prepared(model, cases)
        keys = M.tie_keys(rows + _TEST, prepared.shape[1], a.seed)
        top = M.top_k(prepared, keys, DEPTH)
        cos = prepared[rows[:, None], np.maximum(top, 0)]
        log_boost = np.array([[np.log(context_boost(cats[j], c["device"], time_of_day(c[S.TIMESTAMP].hour))) for j in t] for t, c in zip(top, ctx)])
        if formats is not None:  # the item-level rule of the item_context variant
            log_boost += np.array([[np.log(FORMAT_BOOST) * (device_of_format[formats[j]] == c["device"]) for j in t] for t, c in zip(top, ctx)])
        ref = ndcg10(ranks_reordered(prepared, top, None, targets, keys))
        base[name] = ref
        best = max(((lam, ndcg10(ranks_reordered(prepared, top, cos + lam * log_boost, targets, keys))) for lam in ORACLE_WEIGHTS), key=lambda x: x[1].mean())
        d = best[1] - ref
        body.append([name, f"{ref.mean():.4f} ± {_se(ref):.4f}", f"{best[0]:g}", f"{best[1].mean():.4f}", f"{d.mean():+.4f} ± {_se(d):.4f}"])
    d = base["context-aware retriever"] - base["context-free retriever"]
    body.append(["context-aware minus context-free retriever", f"{d.mean():+.4f} ± {_se(d):.4f}", "–", "–", "–"])
    # how much the context says about the target at all: its category's boost against a category drawn at random
    def boost(cat: str, c: dict[str, Any]) -> float:
        return context_boost(cat, c["device"], time_of_day(c[S.TIMESTAMP].hour))

    target_boost = float(np.mean([boost(cats[t], c) for t, c in zip(targets, ctx)]))
    uniform = float(np.mean([np.mean([boost(cat, c) for cat in set(cats)]) for c in ctx]))
    return body, target_boost, uniform


def report(a: argparse.Namespace, seconds: float, load_start: tuple[float, ...]) -> str:
    from recsys.context import time_of_day_expr
    from recsys.data.demo import CATEGORIES
    from recsys.retriever import TwoTowerRetriever

    work = a.work
    split = load_split(a)
    retriever = TwoTowerRetriever.load(work / "retriever")
    prepared_all, top_all = candidates(work, retriever, split, a.seed)
    rows = case_rows(len(split.test), a.cases, a.seed)
    prepared, top = prepared_all[rows], top_all[rows]
    targets = split.test.targets[rows].astype(np.int64)
    keys = M.tie_keys(rows + _TEST, prepared.shape[1], a.seed)
    arms = {arm: json.loads((work / f"arm-{arm}.json").read_text()) for arm in ARMS}
    logits = {arm: np.load(work / f"logits-{arm}.npy") for arm in ARMS}
    cos = np.where(top >= 0, prepared[np.arange(len(rows))[:, None], np.maximum(top, 0)], np.nan)
    weights = {arm: float(arms[arm]["fusion"]["retrieval_weight"]) for arm in ARMS}
    fused = {arm: logits[arm] + weights[arm] * np.nan_to_num(cos) for arm in ARMS}

    settings = {k: v for k, v in json.loads((work / "reranker-ctx" / "config.json").read_text()).items() if k != "templates"}
    out = [f"reranker settings (both arms but use_context): {settings}", f"demo data: {a.users} users x {a.items} items (seed {a.seed}, {a.interactions_per_user} interactions per user"
           f"{', item_context' if a.item_context else ''}); first stage: {'context-aware' if retriever.args.use_context else 'context-free'}; "
           f"retriever: {retriever.metrics}"]
    # --- evaluate_reranker
    head = ["reranker", "train BCE (mean of run)", "label-prior entropy", "score std (collapsed < 0.01)", "win rate", "HR@1", "MRR", "cases", "fusion w (validation)", "train s"]
    body = []
    for arm in ARMS:
        tr, ev = arms[arm]["training"][0], arms[arm]["evaluate"]
        body.append([
            "with context" if arm == "ctx" else "without context", f"{tr['loss']:.4f}", f"{arms[arm]['label_prior_entropy']:.4f}",
            f"{tr['score_std']:.4f}" if "score_std" in tr else f"{float(np.nanstd(logits[arm], axis=1).mean()):.4f} (within lists)",
            f"{ev['win_rate']:.4f}", f"{ev['HR@1']:.4f}", f"{ev['MRR']:.4f}", str(ev["cases"]), f"{weights[arm]:g}", f"{tr['seconds']:.0f}",
        ])
    out += ["", "Target vs 10 retriever hard negatives (evaluate_reranker, test cases, histories from train_full):", "", _md(head, body)]

    # --- depth-20 pipeline
    base_ranks = ranks_reordered(prepared, top, None, targets, keys)
    base = ndcg10(base_ranks)
    variants = [("retrieve only", None)]
    for arm in ("noctx", "ctx"):
        label = "with context" if arm == "ctx" else "without context"
        variants.append((f"CE alone (w = 0), {label}", logits[arm]))
    for arm in ("noctx", "ctx"):
        label = "with context" if arm == "ctx" else "without context"
        variants.append((f"served fused (w = {weights[arm]:g}), {label}", fused[arm]))
    per_case: dict[str, np.ndarray] = {}
    body = []
    for name, new in variants:
        ranks = ranks_reordered(prepared, top, new, targets, keys)
        means, errs = M.ranking_metrics(ranks)
        g = ndcg10(ranks)
        per_case[name] = g
        d = g - base
        body.append([
            name, f"{means['HR@10']:.4f}", f"{means['NDCG@10']:.4f} ± {errs['NDCG@10']:.4f}",
            "–" if new is None else f"{d.mean():+.4f} ± {_se(d):.4f}", "–" if new is None else f"{(d > 0).sum()}/{(d < 0).sum()}",
        ])
    recall = float(np.mean((top == targets[:, None]).any(axis=1)))
    out += ["", f"Retrieve + rerank at depth {DEPTH} ({len(rows)} test cases, target in the top {DEPTH}: {recall:.3f}):", "",
            _md(["ranking", "HR@10", "NDCG@10 ± se", "Δ NDCG@10 vs retrieve only ± se", "win/loss"], body)]
    names = [n for n, _ in variants]
    pairs = [(names[2], names[1]), (names[4], names[3])]
    body = []
    for with_ctx, without in pairs:
        d = per_case[with_ctx] - per_case[without]
        body.append([with_ctx.split(",")[0], f"{d.mean():+.4f} ± {_se(d):.4f}", f"{(d > 0).sum()}/{(d < 0).sum()}", f"{d.mean() / _se(d):+.1f}"])
    out += ["", "Paired per-case NDCG@10 difference, with minus without context:", "",
            _md(["score", "Δ NDCG@10 ± se", "win/loss", "Δ / se"], body)]

    # --- counterfactual
    cf_logits = np.load(work / "logits-ctx-swapped.npy")
    n_cf = len(cf_logits)
    cf_cases = split.test.take(rows[:n_cf])
    true_ctx = cf_cases.context.select(pl.col("device"), time_of_day_expr().alias("tod"))
    swap_ctx = swapped_context(cf_cases.context).select(pl.col("device"), time_of_day_expr().alias("tod"))
    category = split.train_full.items["category"].replace_strict(CATEGORIES, list(range(len(CATEGORIES))), return_dtype=pl.Int64).to_numpy()
    t_top, t_cos = top[:n_cf], cos[:n_cf]
    w = weights["ctx"]
    # the retriever's own response: the whole catalogue re-retrieved under the swapped context
    swapped_cases = dataclasses.replace(cf_cases, context=swapped_context(cf_cases.context))
    s_prep = _prepared(retriever, swapped_cases)
    s_top = M.top_k(s_prep, keys[:n_cf], DEPTH)
    s_cos = np.where(s_top >= 0, s_prep[np.arange(n_cf)[:, None], np.maximum(s_top, 0)], np.nan)
    rankings = [
        ("retriever top 10 (re-retrieved)", "true", t_top, t_cos), ("retriever top 10 (re-retrieved)", "swapped", s_top, s_cos),
        ("CE alone with context, same 20 candidates", "true", t_top, logits["ctx"][:n_cf]),
        ("CE alone with context, same 20 candidates", "swapped", t_top, cf_logits),
        (f"served fused (w = {w:g}) with context, same candidates", "true", t_top, fused["ctx"][:n_cf]),
        (f"served fused (w = {w:g}) with context, same candidates", "swapped", t_top, cf_logits + w * np.nan_to_num(t_cos)),
    ]
    dev_s, tod_s = swap_ctx["device"].to_list(), swap_ctx["tod"].to_list()
    dev_t, tod_t = true_ctx["device"].to_list(), true_ctx["tod"].to_list()
    body, prev = [], None
    for name, given, tp, sc in rankings:
        under_swap = _top10_boost(tp, sc, category, dev_s, tod_s)
        under_true = _top10_boost(tp, sc, category, dev_t, tod_t)
        shift = "–"
        if given == "swapped" and prev is not None:
            d = under_swap["boost"] - prev["boost"]
            shift = f"{d.mean():+.3f} ± {_se(d):.3f}"
        body.append([
            name, given, f"{under_true['boost'].mean():.3f}", f"{under_swap['boost'].mean():.3f}", shift,
            f"{under_swap['device_share'].mean():.3f}", f"{under_swap['time_share'].mean():.3f}",
        ])
        prev = under_swap
    out += ["", f"Counterfactual ({n_cf} test cases; context given to the model = the true one or the swapped one: device "
            "rotated mobile->desktop->tv->mobile, hour ±12 h). Mean generator boost (demo.context_boost) of the top 10 "
            "under the true and under the swapped context; shift = paired change of the swapped-context boost; shares of "
            "the top 10 in the swapped context's preferred device / time categories:", "",
            _md(["ranking", "context given", "boost (true ctx)", "boost (swapped ctx)", "shift ± se", "device-preferred share", "time-preferred share"], body)]
    if a.item_context:
        from recsys.data.demo import FORMAT_BOOST

        dev_true = split.test.context["device"].to_numpy()[rows].tolist()
        scorings = [("retriever cosine", cos, dev_true)]
        scorings += [(f"CE alone, {'with' if arm == 'ctx' else 'without'} context", logits[arm], dev_true) for arm in ("noctx", "ctx")]
        scorings += [(f"served fused, {'with' if arm == 'ctx' else 'without'} context", fused[arm], dev_true) for arm in ("noctx", "ctx")]
        scorings += [("CE alone with context, given the swapped context (judged against it)", cf_logits, dev_s)]
        out += ["", f"Device -> format rule (item-context demo; the device favours one format x{FORMAT_BOOST:g} within a "
                "category): fitting share of the candidates, of the top 10, and the score gap fitting minus not (per list, "
                "mean ± se over cases):", "",
                _md(["scoring", "fitting share of the 20 candidates", "fitting share of the top 10", "score gap fitting - not"],
                    format_rule(split.train_full.items["format"].to_numpy(), top, scorings))]
    oracle, target_boost, uniform = context_oracle(a, split, retriever, _say("oracle"))
    out += ["", f"Oracle bound (all {len(split.test)} test cases): the retriever's top {DEPTH} reordered by cosine + lambda x "
            "log(context_boost), the generator's own context rule known exactly for each case's true context, best lambda of "
            f"{', '.join(f'{x:g}' for x in ORACLE_WEIGHTS)} chosen on these same cases (optimistic). Mean boost of the "
            f"target's category {target_boost:.3f}, of a category drawn at random {uniform:.3f}:", "",
            _md(["first stage", "retrieve only NDCG@10 ± se", "oracle lambda", "oracle NDCG@10", "Δ ± se"], oracle)]
    same = arms["noctx"]["counterfactual_text_identical"]
    out += ["", f"Without context the reranker's user text is {'identical' if same else 'NOT identical (bug)'} under both contexts, "
            "so its top 10 cannot move."]
    load_end = os.getloadavg()
    out += ["", f"Wall {seconds:.0f}s (arms: " + ", ".join(f"{arm} {arms[arm]['seconds']:.0f}s" for arm in ARMS)
            + f"); torch threads {a.threads} per arm process, the two arms side by side; load average "
            f"{load_start[0]:.1f} at start, {load_end[0]:.1f} at the end (1-min); scoring through "
            f"{arms['ctx'].get('inference', 'fp32')}; fusion weight chosen on {a.fusion_cases} validation cases."]
    text = "\n".join(out)
    _save_text(work / "report.md", text + "\n")
    return text


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/ctx"))
    p.add_argument("--users", type=int, default=1500)
    p.add_argument("--items", type=int, default=400)
    p.add_argument("--interactions-per-user", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", type=int, default=150, help="test cases whose top 20 is reranked (seeded random subset)")
    p.add_argument("--eval-cases", type=int, default=100, help="test cases of evaluate_reranker")
    p.add_argument("--counterfactual-cases", type=int, default=60)
    p.add_argument("--fusion-cases", type=int, default=60, help="validation cases the fusion weight is chosen on")
    p.add_argument("--inference", choices=["fp32", "onnx"], default="onnx", help="scoring after training (onnx: same weights)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per arm process (two run side by side)")
    p.add_argument("--set", action="append", default=[], help="a RerankerTrainingArguments field for both arms: name=value (JSON)")
    p.add_argument("--arm", choices=ARMS, default=None, help="internal: run one arm and exit")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--item-context", action="store_true", help="demo variant whose device favours items of its format (generate_demo(item_context=True))")
    p.add_argument("--first-stage", choices=["context", "plain"], default="context", help="the retriever reads the context, or not (plain)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code path in a few minutes")
    a = p.parse_args()
    if a.smoke:
        a.users, a.items, a.cases, a.eval_cases, a.counterfactual_cases, a.fusion_cases = 200, 120, 12, 10, 6, 10
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    logging.basicConfig(level=logging.WARNING)
    a.work.mkdir(parents=True, exist_ok=True)
    if a.arm:
        run_arm(a, a.arm)
        return
    say = _say("main")
    start, load_start = time.perf_counter(), os.getloadavg()
    if not a.report_only:
        import torch

        torch.set_num_threads(a.threads)
        split = load_split(a)
        retriever = load_or_fit_retriever(a.work, split, a.threads, say, a.first_stage == "context")
        candidates(a.work, retriever, split, a.seed)
        args = [sys.executable, __file__, "--work", str(a.work), "--users", str(a.users), "--items", str(a.items),
                "--interactions-per-user", str(a.interactions_per_user), "--seed", str(a.seed), "--cases", str(a.cases),
                "--eval-cases", str(a.eval_cases), "--counterfactual-cases", str(a.counterfactual_cases), "--threads", str(a.threads),
                "--fusion-cases", str(a.fusion_cases), "--inference", a.inference, "--first-stage", a.first_stage,
                *(["--item-context"] if a.item_context else []), *[f"--set={x}" for x in a.set]]
        procs = [subprocess.Popen([*args, "--arm", arm, *(["--smoke"] if a.smoke else [])]) for arm in ARMS]
        codes = [proc.wait() for proc in procs]
        if any(codes):
            raise SystemExit(f"arm processes exited with {codes}")
    print(report(a, time.perf_counter() - start, load_start))


if __name__ == "__main__":
    main()
