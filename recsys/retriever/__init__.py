"""Two-tower retriever: MiniLM item text -> adaptor (+ ID embeddings); causal transformer user tower.

Modules: ``config`` (settings), ``features`` (text embeddings, context indices, padded histories), ``model`` (the
network and ``TwoTowerRetriever``), ``training`` (the two training stages), ``losses`` (in-batch losses of the
text fine-tune), ``run`` (a trained model saved with its catalogue). Imports go one way: config <- features <-
training <- model <- run.

Import cost: torch and sentence-transformers load only when this package is imported.
"""

from recsys.retriever.config import RetrieverTrainingArguments, default_base_model
from recsys.retriever.features import embed_texts, load_text_model, recency_weighted_mean
from recsys.retriever.model import TwoTowerRetriever

__all__ = [
    "RetrieverTrainingArguments",
    "TwoTowerRetriever",
    "default_base_model",
    "embed_texts",
    "load_text_model",
    "recency_weighted_mean",
]
