"""The text cross-encoder (``recsys.reranker``) on MovieLens 100K under ../shared/EVALUATION.md.

    python benchmarks/cross_encoder.py train --run /tmp/cross/run [--budget 1200] [--json out.json]
    python benchmarks/cross_encoder.py ltr --variant without --variant 'trained={"cross_encoder": {"run": "/tmp/cross/run"}}'
                                           [--variant 'cosine={"cross_encoder": {"max_steps": 0}}'] [--out /tmp/cross/ltr]

``train``: the cross-encoder is fitted on the ranker's label fold (the protocol's train split without each user's
last 3 interactions, ``recsys.ltr.ranker.holdout_split``) with hard negatives from EASE (l2 100) fitted on the same
data, under a process-CPU budget; it reports the validation NDCG@10 of the cross-encoder ordering a fixed
candidate list (EASE fitted on the train split, its top 20 and top 50 of each validation case) at step 0 (= the
MiniLM bi-encoder cosine) and after training, with EASE's own order of the same lists, paired differences with
standard errors, CPU and wall seconds. ``ltr``: the learned ranker (default cheap sources) once per variant: without the
``cross_encoder`` feature, with the model trained above (``{"run": RUN}``, checked to be trained on the label fold),
with the untrained one (``{"max_steps": 0}``: the bi-encoder cosine); NDCG@10 on all 943 test users, each
variant's paired difference to ``without`` with its standard error. Results: docs/experiments/cross-encoder.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ltr_cache import caching_factory, movielens_dataset  # noqa: E402

from recsys.data.dataset import Dataset  # noqa: E402
from recsys.evaluation import metrics as M  # noqa: E402
from recsys.evaluation.protocol import rank_cases  # noqa: E402
from recsys.evaluation.split import encode, leave_one_out  # noqa: E402
from recsys.ltr.ranker import LearnedRanker, LTRSettings, holdout_split  # noqa: E402
from recsys.models.ease import EASE  # noqa: E402
from recsys.reranker.config import CrossEncoderArguments  # noqa: E402
from recsys.reranker.evaluation import candidate_lists, list_ndcg, rerank_ndcg  # noqa: E402
from recsys.reranker.model import CrossEncoder  # noqa: E402
from recsys.reranker.training import fit_cross_encoder  # noqa: E402

TEST_OFFSET = 1 << 40  # the protocol's tie-key offset of test cases (recsys.evaluation.protocol)
HOLDOUT = 3


def mean_se(x: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(x.mean()), 4), "se": round(float(x.std(ddof=1) / np.sqrt(len(x))), 4)}


def split_of(path: Path | None):
    return leave_one_out(encode(Dataset.load(movielens_dataset(path))))


def train(args: argparse.Namespace) -> dict[str, Any]:
    split = split_of(args.ml)
    data_a, _ = holdout_split(split.train, HOLDOUT)
    val = split.validation
    serving = EASE(l2=100.0).fit(split.train)
    lists = {d: candidate_lists(val, serving.score, d) for d in (20, 50)}
    targets = np.asarray(val.targets)
    fresh = CrossEncoder(CrossEncoderArguments(threads=args.threads)).index_catalogue(split.train.items)
    out: dict[str, Any] = {"validation_cases": len(val), "lists": {}}
    step0 = {d: rerank_ndcg(fresh, val, lst) for d, lst in lists.items()}
    del fresh
    cross_args = CrossEncoderArguments(cpu_budget_s=args.budget, threads=args.threads, **json.loads(args.settings))
    model = CrossEncoder(cross_args)
    label_ease = EASE(l2=100.0).fit(data_a)
    fit_cross_encoder(model, data_a, label_ease.score, progress=lambda m: print(m, file=sys.stderr, flush=True))
    model.save(args.run)
    for d, lst in lists.items():
        ease_order = list_ndcg(lst, [-np.arange(len(x), dtype=np.float64) for x in lst], targets)
        trained = rerank_ndcg(model, val, lst)
        out["lists"][f"EASE top {d}"] = {
            "target_in_list": round(float(np.mean([t in x for t, x in zip(targets, lst)])), 4),
            "EASE order": mean_se(ease_order), "step 0 (bi-encoder cosine)": mean_se(step0[d]), "trained": mean_se(trained),
            "trained - step 0 (paired)": mean_se(trained - step0[d]), "trained - EASE order (paired)": mean_se(trained - ease_order),
        }  # fmt: skip
    out["training"] = model.history
    out["settings"] = cross_args.to_dict()
    return out


def ltr(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the ranker once per ``--variant NAME=JSON`` (LTRSettings overrides), save each variant's per-user NDCG@10
    under ``--out``, and pair every variant with ``without`` (computed here or by an earlier call)."""
    split = split_of(args.ml)
    test = split.test
    factory = caching_factory(args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, Any] = {}
    for variant in args.variant:
        name, _, extra = variant.partition("=")
        cpu, wall = time.process_time(), time.perf_counter()
        settings = {"threads": args.threads, **json.loads(extra or "{}")}
        ranker = LearnedRanker(LTRSettings.from_dict(settings), source_factory=factory).fit(split.train, split.validation)
        r = rank_cases(type("S", (), {"score": staticmethod(ranker.score)})(), test, case_offset=TEST_OFFSET).ranks
        np.save(args.out / f"{name}.npy", np.where(r < 10, 1.0 / np.log2(r + 2.0), 0.0))
        m, e = M.ranking_metrics(r)
        imp = dict(zip(ranker.booster_.feature_name(), ranker.booster_.feature_importance("gain").tolist()))
        rows[name] = {"settings": settings, "NDCG@10": round(m["NDCG@10"], 4), "se": round(e["NDCG@10"], 4), "HR@10": round(m["HR@10"], 4),
                      "best_iteration": ranker.best_iteration_, "validation_ndcg": ranker.validation_ndcg_,
                      "cross_encoder gain share": round(imp.get("cross_encoder", 0.0) / (sum(imp.values()) or 1.0), 4),
                      "fit_cpu_s": round(time.process_time() - cpu, 1), "fit_wall_s": round(time.perf_counter() - wall, 1)}  # fmt: skip
        print(json.dumps({name: rows[name]}, default=str), file=sys.stderr, flush=True)
    paired = {}
    if (args.out / "without.npy").is_file():
        base = np.load(args.out / "without.npy")
        for f in sorted(args.out.glob("*.npy")):
            if f.stem != "without":
                paired[f"{f.stem} - without"] = mean_se(np.load(f) - base)
    return {"test_cases": len(test), "rows": rows, "paired": paired}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["train", "ltr"])
    p.add_argument("--ml", type=Path, default=None, help="an imported MovieLens 100K dataset (default: import ../shared/data)")
    p.add_argument("--run", type=Path, default=Path("/tmp/cross/run"), help="train: where the trained cross-encoder is saved")
    p.add_argument("--budget", type=float, default=1200.0, help="process CPU seconds of the cross-encoder fit")
    p.add_argument("--settings", default="{}", help="JSON overrides of CrossEncoderArguments")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", type=Path, default=Path("/tmp/ltr/cache"))
    p.add_argument("--variant", action="append", default=[], help="ltr: NAME=JSON of LTRSettings overrides (NAME 'without' = the base)")
    p.add_argument("--out", type=Path, default=Path("/tmp/cross/ltr"), help="ltr: per-user NDCG@10 of each variant (NAME.npy)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    result = train(args) if args.phase == "train" else ltr(args)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
