"""FAISS item index: build, search (with per-query exclusions), update in place, save and load with a manifest."""

from recsys.index.backend import gpu_available, resolve_device
from recsys.index.faiss_index import (
    INDEX_KIND,
    MISSING_INT_ID,
    ItemIndex,
    add_items_to_saved_index,
    read_index_info,
    remove_items_from_saved_index,
)

__all__ = [
    "INDEX_KIND",
    "MISSING_INT_ID",
    "ItemIndex",
    "add_items_to_saved_index",
    "gpu_available",
    "read_index_info",
    "remove_items_from_saved_index",
    "resolve_device",
]
