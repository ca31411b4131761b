"""``recsys evaluate``: the offline protocol of EVALUATION.md, baselines side by side."""
