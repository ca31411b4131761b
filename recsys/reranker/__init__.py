"""Context-aware cross-encoder reranker: (user text with the request context, item text) -> relevance logit.

Import cost: sentence-transformers and torch load only when a model is loaded or trained.
"""

from recsys.reranker.config import RerankerTrainingArguments, default_base_model
from recsys.reranker.backbone import load_cross_encoder
from recsys.reranker.model import Reranker

__all__ = ["Reranker", "RerankerTrainingArguments", "default_base_model", "load_cross_encoder"]
