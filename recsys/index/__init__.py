"""FAISS item index: build, search (with per-query exclusions), update in place, save and load with a manifest.

``item_index`` holds ``ItemIndex``; ``exclusions``, ``tuning``, ``factory``, ``vectors`` and ``storage`` its parts
(exclusion masks, recall tuning, the raw FAISS index per type, input checks, the directory format)."""

from recsys.index.backend import gpu_available, resolve_device
from recsys.index.item_index import MISSING_INT_ID, ItemIndex, add_items_to_saved_index, remove_items_from_saved_index
from recsys.index.storage import INDEX_KIND, parse_item_ids, read_index_info

__all__ = [
    "INDEX_KIND",
    "MISSING_INT_ID",
    "ItemIndex",
    "add_items_to_saved_index",
    "gpu_available",
    "parse_item_ids",
    "read_index_info",
    "remove_items_from_saved_index",
    "resolve_device",
]
