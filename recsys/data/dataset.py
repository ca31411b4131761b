"""The dataset directory: interactions, items, optional users, and a manifest.

Interactions keep the order of their source rows: the evaluation protocol breaks timestamp ties by it, so
nothing here ever re-sorts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recsys.data import schema as S
from recsys.data.validate import validate_dataset
from recsys.errors import RecsysError
from recsys.manifest import atomic_directory, fingerprint_file, read_manifest, write_manifest

DATASET_KIND = "dataset"


@dataclass
class Dataset:
    """In-memory dataset; ``path`` is set when it was loaded from or saved to disk."""

    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: False when loaded with ``with_interactions=False``: ``interactions`` is then an empty frame with the schema.
    interactions_loaded: bool = True

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("fingerprint", "unsaved"))

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else str(self.manifest.get("source", {}).get("name", "dataset"))

    @property
    def context_columns(self) -> list[str]:
        """Interaction columns beyond ids, time and feedback: request context such as device."""
        core = {S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.RATING, S.WEIGHT}
        return [c for c in self.interactions.columns if c not in core]

    @property
    def synthetic_timestamps(self) -> bool:
        """True when the importer made the timestamps up from row or column order: only their order means anything,
        so no model may read a time of day or a weekday from them."""
        return timestamps_synthetic(self.manifest)

    def user_id_from_text(self, raw: str) -> int | str:
        """Turn a command-line user id into the dataset's id type."""
        return _parse_id(raw, self.interactions.schema[S.USER_ID], "user")

    def item_id_from_text(self, raw: str) -> int | str:
        return _parse_id(raw, self.items.schema[S.ITEM_ID], "item")

    def save(self, path: Path, *, source: dict[str, Any], overwrite: bool = False, extra: dict[str, Any] | None = None) -> "Dataset":
        """Validate, then write atomically: a failed save leaves any existing dataset at ``path`` untouched.

        ``path`` may hold a dataset (replaced); another kind of artefact only with ``overwrite``; never anything else."""
        validate_dataset(self.interactions, self.items, self.users, origin=source.get("files", {}))
        path = Path(path)
        with atomic_directory(path, DATASET_KIND, overwrite=overwrite) as tmp:
            self.interactions.write_parquet(tmp / S.INTERACTIONS_FILE, statistics=True)
            self.items.write_parquet(tmp / S.ITEMS_FILE)
            if self.users is not None:
                self.users.write_parquet(tmp / S.USERS_FILE)
            files = [S.INTERACTIONS_FILE, S.ITEMS_FILE] + ([S.USERS_FILE] if self.users is not None else [])
            file_fps = {f: fingerprint_file(tmp / f) for f in files}
            manifest = {
                "kind": DATASET_KIND,
                "source": source,
                "fingerprint": _content_fingerprint(self.interactions, self.items, self.users),
                "files": file_fps,
                "counts": {
                    "interactions": self.interactions.height,
                    "items": self.items.height,
                    "users": self.interactions[S.USER_ID].n_unique(),
                    "profiles": self.users.height if self.users is not None else 0,
                },
                "schema": {
                    "interactions": {k: str(v) for k, v in self.interactions.schema.items()},
                    "items": {k: str(v) for k, v in self.items.schema.items()},
                    "users": {k: str(v) for k, v in self.users.schema.items()} if self.users is not None else None,
                },
                **(extra or {}),
            }
            write_manifest(tmp, manifest)
        return Dataset.load(path)

    @property
    def interactions_file(self) -> Path:
        """The interactions parquet on disk, for readers that scan it instead of holding it in memory."""
        if self.path is None:
            raise RecsysError("this dataset was never saved, so it has no interactions file to scan")
        return self.path / S.INTERACTIONS_FILE

    @classmethod
    def load(cls, path: Path | str, *, with_interactions: bool = True) -> "Dataset":
        """Load a dataset directory. ``with_interactions=False`` reads only the interactions' schema (batch scoring
        scans the file per chunk instead, so memory does not grow with the log)."""
        path = Path(path)
        if not path.is_dir():
            raise RecsysError(f"dataset directory {path} does not exist (create one with `recsys data demo` or `recsys data import`)")
        manifest = read_manifest(path, kind=DATASET_KIND)
        if with_interactions:
            inter = pl.read_parquet(path / S.INTERACTIONS_FILE)
        else:
            inter = pl.DataFrame(schema=pl.read_parquet_schema(path / S.INTERACTIONS_FILE))
        items = pl.read_parquet(path / S.ITEMS_FILE)
        users = pl.read_parquet(path / S.USERS_FILE) if (path / S.USERS_FILE).exists() else None
        return cls(inter, items, users, manifest, path, interactions_loaded=with_interactions)


def timestamps_synthetic(manifest: dict[str, Any]) -> bool:
    """Whether a dataset manifest says its timestamps were synthesised (``source.timestamps.synthetic``)."""
    return bool(((manifest.get("source") or {}).get("timestamps") or {}).get("synthetic", False))


def _content_fingerprint(inter: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame | None) -> str:
    """Order-sensitive hash of the content (row order matters: it is the tie-break order)."""
    import hashlib

    h = hashlib.sha256()
    for frame in (inter, items, users):
        if frame is None:
            h.update(b"-")
            continue
        h.update(str(frame.schema).encode())
        h.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return h.hexdigest()[:16]


def _parse_id(raw: str, dtype: pl.DataType, what: str) -> int | str:
    if dtype == pl.Int64:
        try:
            return int(raw)
        except ValueError:
            raise RecsysError(f"{what} id {raw!r} is not an integer, but this dataset's {what} ids are integers") from None
    return str(raw)
