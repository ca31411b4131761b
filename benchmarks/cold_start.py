"""Cold-start table: warm NDCG@10 and cold-item HR@10 / NDCG@10 of zero-shot MiniLM and the two-tower retriever
before (``cold_start = "off"``: cold items by the item tower's text path on the tower's scale) and after
(``cold_start = "text"``, the default: cold items by the anchored pretrained-text channel; and ``"adaptor"``: the
same channel carrying the item tower's text path), under ../shared/EVALUATION.md.

    python benchmarks/cold_start.py data/amazon-office data/ml-100k data/demo --out /tmp/cold_start.json

Per dataset: zero-shot's decay is tuned on validation NDCG@10 (its grid), then ranked on the test and cold cases;
the retriever is trained once per pass (validation pass: early-stopped; cold pass: ``epochs_without_validation``
epochs, as ``recsys evaluate`` does) and its towers are scored both ways, because the channel changes only how items
without interactions are scored (``--separate`` trains "before" and "after" apart, at twice the cost). Ranking,
tie keys and metrics are the protocol's own (``recsys.evaluation.protocol.rank_cases``). Results: docs/cold-start.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys.data.dataset import Dataset
from recsys.evaluation import metrics as M
from recsys.evaluation.protocol import _COLD, _TEST, _VALIDATION, rank_cases
from recsys.evaluation.split import cold_start, encode, leave_one_out
from recsys.models.retriever import RetrieverRecommender, ZeroShotRecommender

BEFORE = {"cold_start": "off", "cold_neighbours": 0}
AFTER = {"cold_start": "text"}
ADAPTOR = {"cold_start": "adaptor"}


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


def _scored_as(model: RetrieverRecommender, settings: dict[str, Any]) -> RetrieverRecommender:
    for k, v in settings.items():
        setattr(model.model_.args, k, v)
        setattr(model.args, k, v)
    model.model_.net.cold_neighbours = model.model_.args.cold_neighbours
    model.model_._table_cache = None
    return model


def run_dataset(path: Path, params: dict[str, Any], separate: bool, say: Any, save: Path | None = None) -> dict[str, Any]:
    enc = encode(Dataset.load(path))
    split, cold = leave_one_out(enc), cold_start(enc)
    out: dict[str, Any] = {"dataset": str(path), "users": enc.n_users, "items": enc.n_items, "cold_cases": len(cold.cases)}
    best = max(
        ((ZeroShotRecommender(**g).fit(split.train), g) for g in ZeroShotRecommender.grid),
        key=lambda mg: _metrics(mg[0], split.validation, _VALIDATION)["NDCG@10"],
    )
    zs = ZeroShotRecommender(**best[1]).fit(split.train)
    out["zero-shot"] = {"params": best[1], "warm": _metrics(zs, split.test, _TEST), "cold": _metrics(zs.fit(cold.train), cold.cases, _COLD, cold.cold_items)}
    say(f"{path.name} zero-shot {out['zero-shot']}")
    arms = [("before", BEFORE), ("after", AFTER), ("after (adaptor)", ADAPTOR)]
    trained: dict[str, Any] = {}
    for name, settings in arms[:2] if separate else arms[:1]:
        t0 = time.perf_counter()
        warm = RetrieverRecommender(**{**params, **settings}).fit(split.train, split.validation)
        coldm = RetrieverRecommender(**{**params, **settings, **warm.params_without_validation()}).fit(cold.train, None)
        trained[name] = (warm, coldm, round(time.perf_counter() - t0, 1))
        if save is not None:  # to re-score the same towers with other settings
            warm.model_.save(save / path.name / name / "warm")
            coldm.model_.save(save / path.name / name / "cold")
    for name, settings in arms:
        warm, coldm, secs = trained.get(name) or trained["before"]
        warm, coldm = _scored_as(warm, settings), _scored_as(coldm, settings)
        out[f"retriever {name}"] = {
            "settings": settings, "fit_seconds": secs, "val": warm.model_.metrics,
            "warm": _metrics(warm, split.test, _TEST), "cold": _metrics(coldm, cold.cases, _COLD, cold.cold_items),
        }
        say(f"{path.name} retriever {name} {out[f'retriever {name}']}")
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | model | warm NDCG@10 | cold HR@10 | cold NDCG@10 | cold items in top 10 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for m in ("zero-shot", "retriever before", "retriever after", "retriever after (adaptor)"):
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
    a = p.parse_args()
    params = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}
    results = []
    for path in a.datasets:
        res = run_dataset(path, params, a.separate, lambda m: print(m, flush=True), a.save)
        results.append(res)
        if a.out:
            with a.out.open("a") as f:
                f.write(json.dumps(res) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
