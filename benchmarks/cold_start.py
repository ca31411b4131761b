"""Cold-start table: warm NDCG@10 and cold-item HR@10 / NDCG@10 of zero-shot MiniLM and the two-tower retriever
before (``cold_start = "off"``: cold items by the item tower's text path on the tower's scale), with the earlier
default (``cold_start = "text"``, ``cold_text_shift = 0``) and after (the defaults: ``cold_start = "auto"``, the
probe's choice of channel, ``cold_text_shift = 0.25``), under ../shared/EVALUATION.md; plus the warm cost of the
channel (warm test targets ranked with the protocol's cold items made cold in the warm model, against the same
ranking without them).

    python benchmarks/cold_start.py data/amazon-office data/ml-100k data/demo --out /tmp/cold_start.json

Per dataset: zero-shot's decay is tuned on validation NDCG@10 (its grid), then ranked on the test and cold cases;
the retriever is trained once per pass (validation pass: early-stopped; cold pass: ``epochs_without_validation``
epochs, as ``recsys evaluate`` does) and its towers are scored every way, because the channel changes only how items
without interactions are scored (``--separate`` trains "before" and "after" apart, at twice the cost; ``--load DIR``
re-scores towers saved by ``--save DIR``). ``"auto"`` runs the probe (``recsys.retriever.cold_probe``) on the same
training data ``fit`` would (the pass's own TrainData), and its process CPU seconds are reported. Ranking, tie keys
and metrics are the protocol's own (``recsys.evaluation.protocol.rank_cases``). Results: docs/cold-start.md.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from recsys.data.dataset import Dataset
from recsys.data.types import train_data_fingerprint
from recsys.evaluation import metrics as M
from recsys.evaluation.protocol import COLD_OFFSET, TEST_OFFSET, VALIDATION_OFFSET, rank_cases
from recsys.evaluation.split import cold_start, encode, leave_one_out
from recsys.models.retriever import RetrieverRecommender, ZeroShotRecommender
from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever
from recsys.retriever.cold_probe import choose_cold_channel

BEFORE = {"cold_start": "off", "cold_neighbours": 0}
TEXT = {"cold_start": "text", "cold_text_shift": 0.0}
AFTER = {"cold_start": "auto", "cold_text_shift": 0.25}
ARMS = [("before", BEFORE), ("text, shift 0", TEXT), ("after", AFTER), ("text, shift 0.25", {"cold_start": "text", "cold_text_shift": 0.25}),
        ("adaptor, shift 0.25", {"cold_start": "adaptor", "cold_text_shift": 0.25})]
WARM_COST_SHIFTS = (0.0, 0.25, 0.5)


def _metrics(model: Any, cases: Any, offset: int, cold_items: np.ndarray | None = None) -> dict[str, float]:
    """HR@10, NDCG@10 (+ standard errors); with ``cold_items`` also their share of the top-10 slots (their share of
    the catalogue is what a ranking that neither favours nor buries them would give)."""
    res = rank_cases(model, cases, case_offset=offset)
    means, errs = M.ranking_metrics(res.ranks)
    out = {k: means[k] for k in ("HR@10", "NDCG@10")} | {f"{k}_se": errs[k] for k in ("HR@10", "NDCG@10")}
    if cold_items is not None:
        top = res.top10[res.top10 >= 0]
        out["cold_share_top10"] = float(np.isin(top, cold_items).mean())
    return out


def _scored_as(model: RetrieverRecommender, settings: dict[str, Any], data: Any = None, probes: dict | None = None) -> RetrieverRecommender:
    """The same towers scored with other cold-start settings; ``"auto"`` resolved by the probe on ``data`` (the
    training data of that pass, what ``fit`` would probe), once per pass (cached in ``probes``)."""
    for k, v in settings.items():
        setattr(model.model_.args, k, v)
        setattr(model.args, k, v)
    if settings.get("cold_start") == "auto":
        key = id(data)
        if probes is not None and key not in probes:
            c0 = time.process_time()
            choice = choose_cold_channel(TwoTowerRetriever, RetrieverTrainingArguments.from_dict(model.model_.args.to_dict()), data, print)
            probes[key] = {**choice, "cpu_seconds": round(time.process_time() - c0, 1)}
        model.model_.args.cold_start = probes[key]["cold_start"] if probes is not None else "text"
    model.model_.net.cold_neighbours = model.model_.args.cold_neighbours
    model.model_._table_cache = None
    return model


def _ndcg10(model: Any, cases: Any) -> np.ndarray:
    ranks = rank_cases(model, cases, case_offset=TEST_OFFSET).ranks
    return np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)


def warm_cost(warm: RetrieverRecommender, cases: Any, cold_items: np.ndarray) -> dict[str, Any]:
    """Warm NDCG@10 of the test cases whose target is not one of ``cold_items``, in the warm model with those items
    made cold (no ID embedding, not calibration anchors: scored as any new item): without them in the catalogue, with
    them scored as before the channel (``"off"``), and through the model's channel at each ``WARM_COST_SHIFTS``
    shift; each against shift 0 as a paired difference ± its standard error. What cold items cost warm targets by
    taking top-10 slots, which neither protocol pass charges for."""
    r = warm.model_
    net = r.net
    keep = ~np.isin(cases.targets, cold_items)
    sub = cases.take(np.flatnonzero(keep))
    known = net.known.clone()
    channel, shift = r.args.cold_start, r.args.cold_text_shift
    out: dict[str, Any] = {"cases": int(keep.sum()), "channel": channel}

    class Without:
        def score(self, c: Any) -> np.ndarray:
            s = warm.score(c)
            s[:, cold_items] = np.nan
            return s

    per: dict[str, np.ndarray] = {}
    try:
        net.known[cold_items] = False
        r._table_cache = None
        per["without"] = _ndcg10(Without(), sub)
        r.args.cold_start = "off"
        per["off"] = _ndcg10(warm, sub)
        out["off_share"] = _metrics(warm, sub, TEST_OFFSET, cold_items)["cold_share_top10"]
        r.args.cold_start = channel
        for sh in WARM_COST_SHIFTS:
            r.args.cold_text_shift = sh
            per[f"shift {sh}"] = _ndcg10(warm, sub)
            out[f"shift {sh} share"] = _metrics(warm, sub, TEST_OFFSET, cold_items)["cold_share_top10"]
    finally:
        net.known.copy_(known)
        r.args.cold_start, r.args.cold_text_shift = channel, shift
        r._table_cache = None
    base = per["shift 0.0"]
    for k, v in per.items():
        d = v - base
        out[k] = {"NDCG@10": float(v.mean()), "NDCG@10_se": float(v.std(ddof=1) / np.sqrt(len(v))),
                  "diff": float(d.mean()), "diff_se": float(d.std(ddof=1) / np.sqrt(len(d)))}
    return out


def _loaded(directory: Path, data: Any, params: dict[str, Any]) -> RetrieverRecommender:
    m = RetrieverRecommender(**params)
    m.model_, m.users_ = TwoTowerRetriever.load(directory), data.users
    if m.model_.data_fingerprint != train_data_fingerprint(data, m.model_.item_texts):
        raise SystemExit(f"{directory} was not trained on this pass's training data (data fingerprints differ)")
    return m


def run_dataset(
    path: Path, params: dict[str, Any], separate: bool, say: Any, save: Path | None = None, load: Path | None = None
) -> dict[str, Any]:
    enc = encode(Dataset.load(path))
    split, cold = leave_one_out(enc), cold_start(enc)
    out: dict[str, Any] = {"dataset": str(path), "users": enc.n_users, "items": enc.n_items, "cold_cases": len(cold.cases)}
    best = max(
        ((ZeroShotRecommender(**g).fit(split.train), g) for g in ZeroShotRecommender.grid),
        key=lambda mg: _metrics(mg[0], split.validation, VALIDATION_OFFSET)["NDCG@10"],
    )
    zs = ZeroShotRecommender(**best[1]).fit(split.train)
    out["zero-shot"] = {"params": best[1], "warm": _metrics(zs, split.test, TEST_OFFSET), "cold": _metrics(zs.fit(cold.train), cold.cases, COLD_OFFSET, cold.cold_items)}
    say(f"{path.name} zero-shot {out['zero-shot']}")
    trained: dict[str, Any] = {}
    for name, settings in [arm for arm in ARMS if arm[0] in ("before", "after")] if separate else ARMS[:1]:
        t0 = time.perf_counter()
        if load is not None:
            warm = _loaded(load / path.name / name / "warm", split.train, params)
            coldm = _loaded(load / path.name / name / "cold", cold.train, params)
        else:
            warm = RetrieverRecommender(**{**params, **settings}).fit(split.train, split.validation)
            coldm = RetrieverRecommender(**{**params, **settings, **warm.params_without_validation()}).fit(cold.train, None)
        trained[name] = (warm, coldm, round(time.perf_counter() - t0, 1))
        if save is not None:  # to re-score the same towers with other settings
            warm.model_.save(save / path.name / name / "warm")
            coldm.model_.save(save / path.name / name / "cold")
    probes: dict[int, Any] = {}
    for name, settings in ARMS:
        warm, coldm, secs = trained.get(name) or trained["before"]
        if name not in trained or name == "before":
            warm, coldm = _scored_as(warm, settings, split.train, probes), _scored_as(coldm, settings, cold.train, probes)
        out[f"retriever {name}"] = {
            "settings": settings, "fit_seconds": secs, "val": warm.model_.metrics, "channel": [warm.model_.channel, coldm.model_.channel],
            "warm": _metrics(warm, split.test, TEST_OFFSET), "cold": _metrics(coldm, cold.cases, COLD_OFFSET, cold.cold_items),
        }
        if settings is AFTER:
            in_fit = lambda m: next((h for h in m.model_.history if h.get("stage") == "cold_probe"), None)  # noqa: E731
            out[f"retriever {name}"]["probe"] = {"warm pass": probes.get(id(split.train)) or in_fit(warm), "cold pass": probes.get(id(cold.train)) or in_fit(coldm)}
            out[f"retriever {name}"]["warm_cost"] = warm_cost(warm, split.test, cold.cold_items)
        say(f"{path.name} retriever {name} {out[f'retriever {name}']}")
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | model | warm NDCG@10 | cold HR@10 | cold NDCG@10 | cold items in top 10 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for m in ("zero-shot", *(f"retriever {name}" for name, _ in ARMS)):
            if m not in r:
                continue
            w, c = r[m]["warm"], r[m]["cold"]
            lines.append(
                f"| {Path(r['dataset']).name} | {m} | {w['NDCG@10']:.4f} ± {w['NDCG@10_se']:.4f} | "
                f"{c['HR@10']:.4f} ± {c['HR@10_se']:.4f} | {c['NDCG@10']:.4f} ± {c['NDCG@10_se']:.4f} | "
                f"{c.get('cold_share_top10', float('nan')):.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="+", type=Path, help="dataset directories (recsys data import / data demo)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="retriever setting, e.g. time_budget_s=600")
    p.add_argument("--separate", action="store_true", help="train 'before' and 'after' separately")
    p.add_argument("--out", type=Path, help="append one JSON line per dataset here")
    p.add_argument("--save", type=Path, help="save the trained retrievers under DIR/<dataset>/<arm>/{warm,cold}")
    p.add_argument("--load", type=Path, help="score retrievers saved by --save DIR instead of training them")
    a = p.parse_args()
    params = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}
    results = []
    for path in a.datasets:
        res = run_dataset(path, params, a.separate, lambda m: print(m, flush=True), a.save, a.load)
        results.append(res)
        if a.out:
            with a.out.open("a") as f:
                f.write(json.dumps(res) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
