"""The text cross-encoder, a feature of the learned ranker (``recsys.ltr.cross``): (user text, item text) -> a
score that starts at the MiniLM bi-encoder cosine and is fine-tuned with a listwise softmax over hard negatives.

Import cost: torch and transformers load only when a model is built or loaded.
"""

from recsys.reranker.config import CrossEncoderArguments, default_base_model

__all__ = ["CrossEncoderArguments", "default_base_model"]
