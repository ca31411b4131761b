"""Column names and types of the on-disk dataset format (see docs/dataset-format.md)."""

from __future__ import annotations

import polars as pl

INTERACTIONS_FILE = "interactions.parquet"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"

USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"
RATING = "rating"
WEIGHT = "weight"

TIMESTAMP_DTYPE = pl.Datetime("us", "UTC")
ID_DTYPES = (pl.Int64, pl.String)

#: Item columns that the text renderer reads by default when present, in this order (MovieLens: title, genres, year;
#: Amazon: title, categories, description, features). When none is there, every text column is read.
ITEM_TEXT_FIELDS = ("title", "genres", "categories", "year", "description", "features", "tags")
