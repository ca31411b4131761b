"""recsys: pretrained-language-model recommendation (two-tower retrieval, cross-encoder reranking).

The library is the product; the ``recsys`` CLI is a thin layer over it.
"""

__version__ = "0.1.0"
