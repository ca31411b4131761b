"""Starting points of a cross-encoder on the context ablation's cases: does the untrained bundled MiniLM, run as a
cross-encoder, already order the retriever's top 20 when a pair is scored by the cosine of its two segments'
mean-pooled token states? That is where a proposed hybrid head (classifier(CLS) + scale x segment cosine) would start.

Needs a finished ``benchmarks/experiments/rerank_context.py --work DIR`` (its cached ``test_retriever_scores.npy``
and ``test_top20.npy``), same demo sizes and seed:

    PYTHONPATH=. python benchmarks/experiments/rerank_init_probe.py --work DIR

Results: docs/experiments/context-ablation.md ("Linear probe and starting points").
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/ctx"))
    ap.add_argument("--threads", type=int, default=2)
    cli = ap.parse_args()
    torch.set_num_threads(cli.threads)
    import rerank_context as RC
    from recsys.reranker import Reranker
    from sentence_transformers import SentenceTransformer
    from recsys.reranker.config import default_base_model
    a = argparse.Namespace(users=1500, items=400, seed=0, interactions_per_user=20)
    split = RC.load_split(a)
    prepared, top = np.load(cli.work / "test_retriever_scores.npy"), np.load(cli.work / "test_top20.npy")
    rows = RC.case_rows(len(split.test), 150, 0)
    data, cases = split.train_full if hasattr(split, "train_full") else split.train, split.test.take(rows)
    r = Reranker(**RC.reranker_settings(False))
    item_texts, hist_texts = r.render_items(data.items), r.history_texts(data.items)
    profiles = data.users[cases.users] if data.users is not None else None
    users = r.user_texts([cases.history.row(i) for i in range(len(cases))], hist_texts, context=cases.context, profiles=profiles)
    tp = top[rows]
    st = SentenceTransformer(default_base_model(), device="cpu")
    U = st.encode(users, normalize_embeddings=True); I = st.encode(item_texts, normalize_embeddings=True)
    bi = np.stack([I[t[t >= 0]] @ U[k] for k, t in enumerate(tp)])
    bert = r.model.model.bert if hasattr(r.model.model, "bert") else r.model.model.base_model
    tok = r.model.tokenizer
    joint = np.zeros(tp.shape, np.float32)
    with torch.inference_mode():
        for k, t in enumerate(tp):
            enc = tok([users[k]] * len(t), [item_texts[j] for j in t], padding=True, truncation=True, max_length=72, return_tensors="pt")
            h = bert(**enc).last_hidden_state
            m = enc["attention_mask"].bool()
            seg_b = (enc["token_type_ids"] == 1) & m
            seg_a = (enc["token_type_ids"] == 0) & m
            ma = (h * seg_a[..., None]).sum(1) / seg_a.sum(1, keepdim=True)
            mb = (h * seg_b[..., None]).sum(1) / seg_b.sum(1, keepdim=True)
            joint[k] = torch.nn.functional.cosine_similarity(ma, mb).numpy()
    from recsys.evaluation import metrics as M
    from recsys.evaluation.protocol import _TEST
    keys = M.tie_keys(rows + _TEST, prepared.shape[1], 0)
    targets = split.test.targets[rows]
    def nd(new):
        rk = RC.ranks_reordered(prepared[rows], tp, new, targets, keys)
        v = RC.ndcg10(rk); return f"{v.mean():.4f} ± {v.std(ddof=1)/np.sqrt(len(v)):.4f}"
    rng = np.random.default_rng(0)
    print("retrieve only", nd(None))
    print("random order of top 20", nd(rng.random(tp.shape).astype(np.float32)))
    print("bi-encoder cosine (separate encodes)", nd(bi.astype(np.float32)))
    print("joint-forward segment cosine (untrained CE body)", nd(joint))
    print("within-list std: bi %.4f joint %.4f" % (bi.std(1).mean(), joint.std(1).mean()))


if __name__ == "__main__":
    main()
