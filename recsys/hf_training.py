"""Arguments every sentence-transformers trainer run of ours shares (retriever text tower, cross-encoder).

In one place so both trainers seed, stay quiet and pick the device the same way: CPU unless CUDA is visible.
"""

from __future__ import annotations

from typing import Any


def trainer_defaults(seed: int, *, progress_bar: bool = False) -> dict[str, Any]:
    import torch

    return {
        "seed": seed,
        "data_seed": seed,
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_strategy": "no",
        "report_to": "none",
        "disable_tqdm": not progress_bar,
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_num_workers": 0,
    }
