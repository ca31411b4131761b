"""Amazon review dumps (McAuley lab, UCSD) -> dataset: the 2018 and the 2023 releases, read as a stream.

Rules:

* Files: JSON lines (``.json`` or ``.jsonl``), gzipped or not (detected from the first bytes, not the name). The
  format is told by the first record's keys:
    - 2018: reviews ``reviewerID, asin, overall, unixReviewTime`` (seconds); meta ``asin, title, description,
      brand, category`` (or the 2014 ``categories``, a list of lists), ``feature``;
    - 2023: reviews ``user_id, parent_asin`` (else ``asin``), ``rating``, ``timestamp`` (milliseconds); meta
      ``parent_asin, title, description, features, categories, store`` (the store is the brand).
* Streamed: whole lines are read in batches of about ``batch_bytes`` (decompressed) and parsed into polars frames
  (no per-line Python work) that keep only the ids,
  the time and the rating, so memory follows the kept columns, never the size of the review text. The review text
  itself is not imported (it is what the user wrote after the fact: neither item text nor request context).
* Ratings: ``overall`` (2018) / ``rating`` (2023); the rare record without one gets the file's mean rating, and a
  file without any has no rating column.
* Duplicates of (user, item, time) are dropped (the first is kept) and counted; source order is kept otherwise.
* k-core (``min_user``/``min_item`` > 1): users and items with fewer interactions are removed, repeatedly, until
  every remaining user and item has enough (a fixed point).
* Items: every item of the kept interactions, in order of first appearance; with ``meta`` their ``title``,
  ``brand``, ``categories`` (list), ``description`` (paragraphs joined, HTML tags removed) and ``features``
  (list). Meta records of other items are skipped as they stream past; an item without one has empty text.
* A missing id or time, or a line that is not JSON, names the file and its 1-based line (the error's "row").
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import polars as pl

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.errors import DataValidationError, RecsysError

#: bytes of whole lines parsed at a time (bounds the parsing memory, whatever the file's length)
BATCH_BYTES = 16 * 2**20


@dataclass(frozen=True)
class ReviewFormat:
    name: str
    user: str
    items: tuple[str, ...]  # first present wins
    rating: str
    time: str
    time_unit: str
    meta_id: str


FORMATS = {
    "2018": ReviewFormat("2018", "reviewerID", ("asin",), "overall", "unixReviewTime", "s", "asin"),
    "2023": ReviewFormat("2023", "user_id", ("parent_asin", "asin"), "rating", "timestamp", "ms", "parent_asin"),
}


# ------------------------------------------------------------------------------------------------ reading


def _open(path: Path) -> IO[bytes]:
    if not path.is_file():
        raise RecsysError(f"{path} does not exist")
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else path.open("rb")  # type: ignore[return-value]


def _chunks(path: Path, batch_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(1-based number of its first line, a batch of whole lines of about ``batch_bytes``): no per-line Python work."""
    line_no, rest = 1, b""
    with _open(path) as f:
        while block := f.read(batch_bytes):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # no line end yet: a line longer than the batch
                rest = data
                continue
            chunk, rest = data[:cut], data[cut:]
            yield line_no, chunk
            line_no += chunk.count(b"\n")
    if rest.strip():
        yield line_no, rest + b"\n"


def _lines(first: int, chunk: bytes) -> list[tuple[int, bytes]]:
    """(line number, line) of the non-blank lines of a batch; only used to locate an error."""
    return [(first + k, line) for k, line in enumerate(chunk.split(b"\n")) if line.strip()]


def _show(line: bytes) -> str:
    return line[:200].decode(errors="replace").rstrip()


def _first_record(path: Path) -> dict[str, Any]:
    for first, chunk in _chunks(path, 1 << 16):
        line_no, line = _lines(first, chunk)[0] if chunk.strip() else (first, b"")
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataValidationError(f"not a JSON line: {exc}", file=str(path), row=line_no, value=_show(line)) from None
        if not isinstance(record, dict):
            raise DataValidationError("not a JSON object", file=str(path), row=line_no)
        return record
    raise DataValidationError("file is empty", file=str(path))


def _parse(path: Path, first: int, chunk: bytes, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    try:
        return pl.read_ndjson(io.BytesIO(chunk), schema=schema)
    except Exception as exc:  # noqa: BLE001 - locate the bad line only once polars has failed
        lines = _lines(first, chunk)
        for line_no, line in lines:
            try:
                json.loads(line)
            except json.JSONDecodeError as err:
                raise DataValidationError(f"not a JSON line: {err}", file=str(path), row=line_no, value=_show(line)) from None
        span = f"{lines[0][0]}-{lines[-1][0]}" if lines else str(first)
        raise DataValidationError(f"cannot read the JSON lines {span}: {str(exc).splitlines()[0]}", file=str(path)) from None


def detect_format(path: Path | str) -> ReviewFormat:
    """The release of a reviews file, from its first record's keys."""
    keys = set(_first_record(Path(path)))
    for fmt in FORMATS.values():
        if fmt.user in keys and any(k in keys for k in fmt.items):
            return fmt
    raise DataValidationError(
        f"not an Amazon reviews file: expected reviewerID/asin (2018) or user_id/parent_asin (2023), found keys {', '.join(sorted(keys))}",
        file=str(path),
    )


# ------------------------------------------------------------------------------------------------ reviews


def read_reviews(path: Path | str, fmt: ReviewFormat | None = None, *, batch_bytes: int = BATCH_BYTES) -> tuple[pl.DataFrame, int]:
    """(interactions user_id, item_id, timestamp, rating in file order, number of records read)."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    schema: dict[str, pl.DataType] = {fmt.user: pl.String, **{k: pl.String for k in fmt.items}, fmt.rating: pl.Float64, fmt.time: pl.Int64}
    frames, n = [], 0
    for first, chunk in _chunks(path, batch_bytes):
        raw = _parse(path, first, chunk, schema)
        item = pl.coalesce([pl.col(k) for k in fmt.items])
        frame = raw.select(
            pl.col(fmt.user).alias(S.USER_ID), item.alias(S.ITEM_ID), pl.col(fmt.time).alias("__t"), pl.col(fmt.rating).alias(S.RATING)
        )
        for col, source in ((S.USER_ID, fmt.user), (S.ITEM_ID, "/".join(fmt.items)), ("__t", fmt.time)):
            missing = frame[col].is_null()
            if missing.any():
                line_no, line = _lines(first, chunk)[int(missing.arg_max())]  # type: ignore[arg-type]
                raise DataValidationError(f"{source} is missing", file=str(path), column=source, row=line_no, value=_show(line))
        frames.append(frame)
        n += frame.height
    if not frames:
        raise DataValidationError("file has no reviews", file=str(path))
    inter = pl.concat(frames, rechunk=True)
    ts = pl.from_epoch(pl.col("__t"), time_unit=fmt.time_unit).dt.cast_time_unit("us").dt.replace_time_zone("UTC")
    inter = inter.with_columns(ts.alias(S.TIMESTAMP)).select(S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.RATING)
    if inter[S.RATING].null_count() == inter.height:
        inter = inter.drop(S.RATING)
    elif inter[S.RATING].null_count():
        inter = inter.with_columns(pl.col(S.RATING).fill_null(strategy="mean"))
    return inter, n


def drop_duplicates(inter: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Keep the first of every (user, item, time); return the rest's count."""
    kept = inter.filter(pl.struct(S.USER_ID, S.ITEM_ID, S.TIMESTAMP).is_first_distinct())
    return kept, inter.height - kept.height


def k_core(inter: pl.DataFrame, min_user: int = 1, min_item: int = 1) -> tuple[pl.DataFrame, int]:
    """Remove users with < ``min_user`` and items with < ``min_item`` interactions until none is left; (kept, rounds)."""
    rounds = 0
    while min_user > 1 or min_item > 1:
        kept = inter.filter((pl.len().over(S.USER_ID) >= min_user) & (pl.len().over(S.ITEM_ID) >= min_item))
        rounds += 1
        if kept.height == inter.height:
            break
        inter = kept
    return inter, rounds


# ------------------------------------------------------------------------------------------------ meta


def _text(col: str) -> pl.Expr:
    """A JSON string or a JSON-serialised list of strings (as polars reads either into a String) -> plain text."""
    return _strip_html(pl.col(col).str.strip_chars())


def _strip_html(e: pl.Expr) -> pl.Expr:
    e = e.str.replace_all(r"<[^>]*>", " ").str.replace_all("&amp;", "&", literal=True).str.replace_all("&quot;", '"', literal=True)
    e = e.str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(e.str.len_chars() > 0).then(e).otherwise(None)


def _as_list(col: str) -> pl.Expr:
    """String holding text or a (nested) JSON array of strings -> list of strings (nested lists flattened)."""
    e = pl.col(col)
    quoted = e.str.extract_all(r'"(?:[^"\\]|\\.)*"').list.eval(
        _strip_html(pl.element().str.strip_prefix('"').str.strip_suffix('"').str.replace_all(r'\"', '"', literal=True))
    )
    listed = pl.when(e.str.starts_with("[")).then(quoted).otherwise(pl.concat_list(_strip_html(e))).list.drop_nulls()
    return pl.when(listed.list.len() > 0).then(listed)  # empty -> null, so coalesce reaches the other release's field


def read_meta(path: Path | str, item_ids: pl.Series, *, batch_bytes: int = BATCH_BYTES) -> pl.DataFrame:
    """Item text of the ``item_ids`` found in the meta file (first record per item wins); other records are skipped."""
    path = Path(path)
    keys = set(_first_record(path))
    id_key = next((k for k in ("parent_asin", "asin") if k in keys), None)
    if id_key is None:
        raise DataValidationError(f"not an Amazon meta file: no parent_asin or asin (found keys {', '.join(sorted(keys))})", file=str(path))
    fields = [id_key, "title", "brand", "store", "category", "categories", "description", "feature", "features"]
    schema: dict[str, pl.DataType] = {f: pl.String for f in fields}
    wanted = item_ids.implode()
    frames = []
    for first, chunk in _chunks(path, batch_bytes):
        raw = _parse(path, first, chunk, schema).filter(pl.col(id_key).is_in(wanted))
        if raw.height == 0:
            continue
        frames.append(
            raw.select(
                pl.col(id_key).alias(S.ITEM_ID),
                _text("title").alias("title"),
                pl.coalesce(_text("brand"), _text("store")).alias("brand"),
                pl.coalesce(_as_list("category"), _as_list("categories")).alias("categories"),
                _as_list("description").list.join(" ").alias("description"),
                pl.coalesce(_as_list("feature"), _as_list("features")).alias("features"),
            )
        )
    schema_out = {S.ITEM_ID: pl.String, "title": pl.String, "brand": pl.String, "categories": pl.List(pl.String),
                  "description": pl.String, "features": pl.List(pl.String)}
    if not frames:
        return pl.DataFrame(schema=schema_out)
    meta = pl.concat(frames).with_columns(pl.col("description").replace("", None))
    return meta.filter(pl.col(S.ITEM_ID).is_first_distinct()).cast(schema_out)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ import


def import_amazon(
    reviews: Path | str,
    meta: Path | str | None = None,
    *,
    min_user: int = 1,
    min_item: int = 1,
    batch_bytes: int = BATCH_BYTES,
) -> tuple[Dataset, dict[str, Any]]:
    """Read an Amazon reviews file (+ its meta file) into an unsaved Dataset and its source description."""
    if min_user < 1 or min_item < 1:
        raise RecsysError(f"--min-user and --min-item must be at least 1 (got {min_user} and {min_item})")
    if batch_bytes < 1:
        raise RecsysError(f"batch_bytes must be at least 1, not {batch_bytes}")
    reviews = Path(reviews)
    fmt = detect_format(reviews)
    inter, n_records = read_reviews(reviews, fmt, batch_bytes=batch_bytes)
    inter, duplicates = drop_duplicates(inter)
    before_core = inter.height
    inter, rounds = k_core(inter, min_user, min_item)
    if inter.height == 0:
        raise RecsysError(f"no interaction is left after the {min_user}/{min_item}-core filter: lower --min-user/--min-item")
    item_ids = inter[S.ITEM_ID].unique(maintain_order=True)
    items = pl.DataFrame({S.ITEM_ID: item_ids})
    meta_info: dict[str, Any] | None = None
    if meta is not None:
        found = read_meta(meta, item_ids, batch_bytes=batch_bytes)
        items = items.join(found, on=S.ITEM_ID, how="left", maintain_order="left")
        meta_info = {"file": str(meta), "items_with_meta": found.height, "items_without_meta": items.height - found.height}
    name = reviews.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    files = {"interactions": str(reviews), "items": str(meta) if meta is not None else str(reviews)}
    source = {
        "name": name,
        "format": f"amazon-{fmt.name}",
        "files": files,
        "records": n_records,
        "duplicates_dropped": duplicates,
        "k_core": {"min_user": min_user, "min_item": min_item, "rounds": rounds, "interactions_removed": before_core - inter.height},
        "meta": meta_info,
        "timestamps": {"from": "column", "column": fmt.time, "synthetic": False, "unit": fmt.time_unit},
    }
    return Dataset(inter, items), source


__all__ = ["FORMATS", "ReviewFormat", "detect_format", "drop_duplicates", "import_amazon", "k_core", "read_meta", "read_reviews"]
