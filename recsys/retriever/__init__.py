"""Two-tower retriever: MiniLM item text -> adaptor (+ ID embeddings); causal transformer user tower.

Import cost: torch and sentence-transformers load only when this package is imported.
"""

from recsys.retriever.config import RetrieverTrainingArguments, default_base_model
from recsys.retriever.model import TwoTowerRetriever, embed_texts, load_text_model, recency_weighted_mean

__all__ = [
    "RetrieverTrainingArguments",
    "TwoTowerRetriever",
    "default_base_model",
    "embed_texts",
    "load_text_model",
    "recency_weighted_mean",
]
