"""Retriever quality on MovieLens 100K under the offline protocol (EVALUATION.md), one configuration per run.

    python benchmarks/retriever_quality.py --data ../shared/data/movielens-100k --set use_context=true --cold --out retriever.jsonl

Fit on train with the validation cases (early stopping), rank the test targets (the early-stopped model used as is,
like SASRec), then (``--cold``) fit on the cold-start split's training data for the best validation epoch and rank
the cold cases. Ranking, tie keys and metrics are the protocol's own.

Results: docs/results.md ("retriever settings").
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from recsys.data.importers.movielens import import_movielens
from recsys.evaluation import metrics as M
from recsys.evaluation.protocol import COLD_OFFSET, TEST_OFFSET, VALIDATION_OFFSET, rank_cases
from recsys.evaluation.split import cold_start, encode, leave_one_out
from recsys.models.retriever import RetrieverRecommender, ZeroShotRecommender


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _metrics(res, n_items: int | None = None) -> dict:
    means, errs = M.ranking_metrics(res.ranks)
    out = {k: round(float(v), 5) for k, v in means.items()}
    out.update({f"{k}_se": round(float(v), 5) for k, v in errs.items() if k in ("HR@10", "NDCG@10")})
    if n_items:
        out["coverage@10"] = round(len(np.unique(res.top10[res.top10 >= 0])) / n_items, 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="/work/shared/data/movielens-100k")
    p.add_argument("--model", default="retriever", choices=["retriever", "zero-shot"])
    p.add_argument("--set", action="append", default=[], help="a RetrieverTrainingArguments field: name=value (JSON)")
    p.add_argument("--cold", action="store_true", help="also run the cold-start item split")
    p.add_argument("--cold-epochs", type=int, default=None, help="epochs for the cold fit (default: best validation epoch)")
    p.add_argument("--out", type=Path, default=None, help="append the result as one JSON line")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    params = {k: _value(v) for k, v in (s.split("=", 1) for s in a.set)}
    ds, _ = import_movielens(a.data)
    enc = encode(ds)
    split = leave_one_out(enc)
    cls = RetrieverRecommender if a.model == "retriever" else ZeroShotRecommender
    say = lambda m: print(m, flush=True)  # noqa: E731

    model = cls(**params)
    t = time.perf_counter()
    model.fit(split.train, split.validation)
    fit_s = time.perf_counter() - t
    row: dict = {"model": a.model, "params": params, "fit_seconds": round(fit_s, 1)}
    if a.model == "retriever":
        row["training"] = model.model_.metrics
    row["validation"] = _metrics(rank_cases(model, split.validation, case_offset=VALIDATION_OFFSET))
    res = rank_cases(model, split.test, case_offset=TEST_OFFSET)
    row["test"] = _metrics(res, enc.n_items)
    row["score_seconds"] = round(res.seconds, 2)
    say(json.dumps(row))
    if a.cold:
        cs = cold_start(enc)
        cold_params = dict(params)
        if a.model == "retriever":
            cold_params["epochs_without_validation"] = a.cold_epochs or int(model.model_.metrics.get("best_epoch", 30))
        cm = cls(**cold_params)
        t = time.perf_counter()
        cm.fit(cs.train, None)
        row["cold_fit_seconds"] = round(time.perf_counter() - t, 1)
        row["cold"] = _metrics(rank_cases(cm, cs.cases, case_offset=COLD_OFFSET))
        say(json.dumps({"cold": row["cold"], "cold_fit_seconds": row["cold_fit_seconds"]}))
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
