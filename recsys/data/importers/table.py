"""Generic table importer: interactions, items and optional users from CSV/TSV or parquet files.

Over 450 lines because mapping, id typing, timestamp parsing and their row-level error messages share one pass over the files.

Rules (also in docs/cli.md, "import table"):

* Format by extension: ``.csv`` (comma), ``.tsv``/``.tab`` (tab), ``.parquet``/``.pq``. CSV must be UTF-8 (a BOM is
  accepted); empty fields are missing values. Row numbers in messages are 1-based data rows (the header is not
  counted), so "row 3" is the fourth line of a CSV file.
* ``mapping`` renames source columns to canonical names: ``{"user_id": "uid", "item_id": "movie"}``. A key may be
  scoped to one file with a prefix, ``{"items.item_id": "id"}``; an unscoped key applies to every file that has the
  source column. Any target name is allowed (``title=name`` renames an item attribute).
* Ids: an id column becomes ``Int64`` when it is integer-typed in every file it appears in (CSV: every value is an
  integer without leading zeros; parquet: an integer column, or a float column whose values are all whole numbers);
  otherwise it is ``String`` in every file, so interactions and items/users always share one id type. Surrounding
  whitespace of string ids is stripped.
* Timestamps become ``Datetime("us", "UTC")``:
    - numbers are unix epoch times; the unit is chosen per column from the largest absolute value:
      below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds, otherwise nanoseconds
      (1e11 s is the year 5138; 1e11 ms is March 1973, so real data is never ambiguous);
    - strings are ISO 8601 (``2024-05-01``, ``2024-05-01T12:30``, ``2024-05-01 12:30:00.25``, with an optional ``Z`` or
      ``+02:00`` offset; no offset means UTC), or parsed with ``timestamp_format`` (a strftime pattern such as
      ``%d/%m/%Y %H:%M``) when given;
    - parquet datetimes are converted to UTC (naive ones are taken as UTC), dates become midnight UTC.
* Without a timestamp column, time is synthesised and the source rows are never re-ordered:
    - ``order_column`` (numeric): timestamp = 1970-01-01 UTC + (dense rank of the value - 1) seconds, so equal
      values tie and the order is kept; the order column itself is then dropped;
    - otherwise row order: timestamp = 1970-01-01 UTC + (row - 1) seconds.
  The manifest's ``source.timestamps.synthetic`` is then true.
* ``rating`` and ``weight`` become Float64. Other CSV columns are Int64 when every value is an integer (no leading
  zeros), Float64 when every value is a number (no leading zeros), otherwise String, so codes such as zip
  ``02138`` survive.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.data.validate import validate_dataset
from recsys.errors import DataValidationError, RecsysError

TABLES = ("interactions", "items", "users")
CSV_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")

_INT_RE = r"^[+-]?(0|[1-9][0-9]*)$"
_NUM_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_PLAIN_NUM_RE = r"^[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"  # no leading zeros ("02138")
_ISO_RE = (
    r"^\s*([0-9]{4}-[0-9]{2}-[0-9]{2})"  # 1 date
    r"(?:[T ]([0-9]{2}:[0-9]{2})(:[0-9]{2})?(\.[0-9]{1,9})?)?"  # 2 hh:mm, 3 :ss, 4 .fraction
    r"\s*(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)?\s*$"  # 5 offset
)
#: (largest absolute value below which, unit) for numeric timestamps.
EPOCH_UNITS = ((1e11, "s"), (1e14, "ms"), (1e17, "us"), (float("inf"), "ns"))
_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}


# --------------------------------------------------------------------------------------------------- public API


def parse_mapping(specs: str | list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """Parse ``"user_id=uid,item_id=movie"`` (or several such strings) into ``{"user_id": "uid", ...}``."""
    if specs is None:
        return {}
    if isinstance(specs, str):
        specs = [specs]
    out: dict[str, str] = {}
    for spec in specs:
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            target, sep, source = part.partition("=")
            target, source = target.strip(), source.strip()
            if not sep or not target or not source:
                raise RecsysError(f"--map entry {part!r} is not of the form CANONICAL=COLUMN (e.g. user_id=customer)")
            if target in out:
                raise RecsysError(f"--map names {target!r} twice")
            out[target] = source
    return out


def import_table(
    interactions: Path | str,
    items: Path | str,
    users: Path | str | None = None,
    mapping: dict[str, str] | None = None,
    order_column: str | None = None,
    timestamp_format: str | None = None,
) -> tuple[Dataset, dict[str, Any]]:
    """Read interaction/item/user tables into a validated (unsaved) Dataset and its source description.

    Raises DataValidationError naming file, column (as named in the source file), 1-based row and value.
    """
    paths = {"interactions": Path(interactions), "items": Path(items)}
    if users is not None:
        paths["users"] = Path(users)
    mapping = dict(mapping or {})
    files = {t: str(p) for t, p in paths.items()}

    raw = {t: _read(p) for t, p in paths.items()}
    labels: dict[str, dict[str, str]] = {}  # table -> canonical -> source column name
    frames: dict[str, pl.DataFrame] = {}
    for table, frame in raw.items():
        frames[table], labels[table] = _apply_mapping(frame, table, mapping, files[table])
    _check_mapping_used(mapping, raw, files)
    for table, frame in frames.items():
        if frame.height == 0:
            raise DataValidationError(f"the {table} file has a header but no data rows", file=files[table])
    is_csv = {t: _is_csv(p) for t, p in paths.items()}

    def lab(table: str, col: str) -> str:
        return labels[table].get(col, col)

    # required columns (before anything else, so the message lists what was found)
    required = {"interactions": (S.USER_ID, S.ITEM_ID), "items": (S.ITEM_ID,), "users": (S.USER_ID,)}
    for table, frame in frames.items():
        for col in required[table]:
            if col not in frame.columns:
                raise DataValidationError(
                    f"required column is missing from the {table} file (found: {', '.join(frame.columns)}); "
                    f"rename it or pass --map {col}=COLUMN",
                    file=files[table],
                    column=col,
                )

    # ids: one type per id across the files it appears in
    for col, tables in ((S.USER_ID, [t for t in ("interactions", "users") if t in frames]), (S.ITEM_ID, ["interactions", "items"])):
        kinds = {t: _id_kind(frames[t][col], is_csv[t]) for t in tables}
        as_int = all(k == "int" for k in kinds.values())
        for t in tables:
            frames[t] = frames[t].with_columns(_cast_id(frames[t][col], kinds[t], as_int).alias(col))

    # time
    inter = frames["interactions"]
    f_int = files["interactions"]
    if S.TIMESTAMP in inter.columns:
        if order_column is not None:
            raise RecsysError(
                f"--order-column is only for files without a timestamp column, but {f_int} has "
                f"'{lab('interactions', S.TIMESTAMP)}'"
            )
        ts, time_info = _timestamps(inter[S.TIMESTAMP], timestamp_format, f_int, lab("interactions", S.TIMESTAMP))
        inter = inter.with_columns(ts.alias(S.TIMESTAMP))
    elif order_column is not None:
        if _given(timestamp_format):
            raise RecsysError("--timestamp-format needs a timestamp column; with --order-column there is none")
        # the option names a column as it is called in the source file (a canonical name after --map also works)
        renamed = {s: c for c, s in labels["interactions"].items()}
        name = renamed.get(order_column, order_column)
        if name not in inter.columns or name in (S.USER_ID, S.ITEM_ID):
            raise DataValidationError(
                f"--order-column is not a column of the interactions file (found: {', '.join(raw['interactions'].columns)})",
                file=f_int,
                column=order_column,
            )
        order = _numeric(inter[name], f_int, lab("interactions", name), "number (--order-column must be numeric)")
        ts = _epoch_us(order.rank("dense").cast(pl.Int64) - 1, 1_000_000)
        inter = inter.with_columns(ts.alias(S.TIMESTAMP)).drop(name)
        time_info = {"from": "order_column", "column": lab("interactions", name), "synthetic": True,
                     "rule": "1970-01-01 UTC + (dense rank of the order value - 1) seconds"}
    else:
        if _given(timestamp_format):
            raise RecsysError(
                f"--timestamp-format needs a timestamp column, but {f_int} has none "
                f"(found: {', '.join(raw['interactions'].columns)}); pass --map timestamp=COLUMN"
            )
        row_index = pl.int_range(0, inter.height, dtype=pl.Int64, eager=True)
        inter = inter.with_columns(_epoch_us(row_index, 1_000_000).alias(S.TIMESTAMP))
        time_info = {"from": "row_order", "synthetic": True, "rule": "1970-01-01 UTC + (row - 1) seconds"}

    # feedback columns
    for col in (S.RATING, S.WEIGHT):
        if col in inter.columns:
            inter = inter.with_columns(_numeric(inter[col], f_int, lab("interactions", col), "number").alias(col))

    # remaining columns of CSV files get types
    core = {S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.RATING, S.WEIGHT}
    frames["interactions"] = inter
    for table, frame in frames.items():
        if is_csv[table]:
            frames[table] = frame.with_columns([_infer(frame[c]) for c in frame.columns if c not in core])

    # canonical column order: ids, time, feedback, then the rest as in the source
    inter = frames["interactions"]
    lead = [c for c in (S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.RATING, S.WEIGHT) if c in inter.columns]
    inter = inter.select(lead + [c for c in inter.columns if c not in lead])
    items_f = frames["items"].select([S.ITEM_ID] + [c for c in frames["items"].columns if c != S.ITEM_ID])
    users_f = None
    if "users" in frames:
        users_f = frames["users"].select([S.USER_ID] + [c for c in frames["users"].columns if c != S.USER_ID])

    try:
        validate_dataset(inter, items_f, users_f, origin=files)
    except DataValidationError as exc:
        table = next((t for t, f in files.items() if f == exc.file), None)
        raise _relabel(exc, labels.get(table, {})) from None

    source = {
        "name": paths["interactions"].stem,
        "format": "table",
        "files": files,
        "mapping": mapping,
        "timestamps": time_info,
    }
    return Dataset(inter, items_f, users_f), source


def _given(fmt: str | None) -> bool:
    return fmt is not None and fmt != ""


# --------------------------------------------------------------------------------------------------- reading


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() in CSV_SEPARATORS


def _read(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in CSV_SEPARATORS and suffix not in PARQUET_SUFFIXES:
        raise RecsysError(f"{path}: unknown file type '{suffix}' (expected .csv, .tsv or .parquet)")
    if not path.is_file():
        raise RecsysError(f"{path} does not exist")
    if suffix in PARQUET_SUFFIXES:
        if path.stat().st_size == 0:
            raise DataValidationError("file is empty", file=str(path))
        try:
            return pl.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - polars/arrow raise many types
            raise DataValidationError(f"not a readable parquet file: {_first_line(exc)}", file=str(path)) from None
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise DataValidationError("file is empty (no header, no rows)", file=str(path))
    sep = CSV_SEPARATORS[suffix]
    try:
        return pl.read_csv(io.BytesIO(data), separator=sep, infer_schema=False)
    except Exception as exc:  # noqa: BLE001 - locate the problem only once polars has failed
        _check_utf8(data, path)
        row, line = _ragged_row(data, sep)
        where = f"; row {row} has more fields than the header" if row is not None else ""
        raise DataValidationError(f"cannot parse as CSV: {_first_line(exc)}{where}", file=str(path), row=row, value=line) from None


def _check_utf8(data: bytes, path: Path) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        end = data.find(b"\n", exc.start)
        line = data[start : end if end != -1 else len(data)].rstrip(b"\r").decode("utf-8", errors="replace")
        raise DataValidationError(
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at line {line_no} "
            f"({'the header' if line_no == 1 else 'data row ' + str(line_no - 1)}); "
            "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)",
            file=str(path),
            row=line_no - 1 if line_no > 1 else None,
            value=line[:200],
        ) from None


def _ragged_row(data: bytes, sep: str) -> tuple[int | None, str | None]:
    """Best effort: the first data row with more separators than the header (quoted text ignored)."""
    lines = pl.Series(data.decode("utf-8").split("\n")).str.strip_chars_end("\r")
    fields = lines.str.replace_all(r'"[^"]*"', "").str.count_matches(sep, literal=True)
    bad = (fields > fields[0]) & (lines.str.strip_chars() != "")
    if not bad.any():
        return None, None
    k = int(bad.arg_max())
    return k, lines[k][:200]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _apply_mapping(frame: pl.DataFrame, table: str, mapping: dict[str, str], file: str) -> tuple[pl.DataFrame, dict[str, str]]:
    renames: dict[str, str] = {}
    for key, src in mapping.items():
        scope, _, target = key.rpartition(".")
        if scope and scope not in TABLES:
            raise RecsysError(f"--map key {key!r}: the prefix must be one of {', '.join(TABLES)}")
        if scope and scope != table:
            continue
        if src not in frame.columns:
            if scope:
                raise DataValidationError(
                    f"column named in --map {key}={src} is not in the {table} file (found: {', '.join(frame.columns)})",
                    file=file,
                    column=src,
                )
            continue
        if target in frame.columns and target != src:
            raise DataValidationError(
                f"--map {key}={src} would rename it to '{target}', but the file already has a '{target}' column",
                file=file,
                column=src,
            )
        renames[src] = target
    if len(set(renames.values())) != len(renames):
        raise RecsysError(f"--map renames two columns of {file} to the same name: {renames}")
    return frame.rename(renames), {t: s for s, t in renames.items()}


def _check_mapping_used(mapping: dict[str, str], raw: dict[str, pl.DataFrame], files: dict[str, str]) -> None:
    for key, src in mapping.items():
        if "." in key:
            continue  # scoped keys were checked against their file
        if not any(src in f.columns for f in raw.values()):
            found = "; ".join(f"{files[t]}: {', '.join(f.columns)}" for t, f in raw.items())
            raise RecsysError(f"--map {key}={src}: no file has a column '{src}' (found {found})")


def _relabel(exc: DataValidationError, labels: dict[str, str]) -> DataValidationError:
    """Re-issue a validation error with the column named as in the source file."""
    src = labels.get(exc.column or "")
    if not src:
        return exc
    prefix = str(DataValidationError("", file=exc.file, column=exc.column, row=exc.row, value=exc.value))
    text = str(exc)
    bare = text[len(prefix):] if text.startswith(prefix) else text
    return DataValidationError(bare, file=exc.file, column=src, row=exc.row, value=exc.value)


# --------------------------------------------------------------------------------------------------- typing


def _id_kind(s: pl.Series, from_csv: bool) -> str:
    dtype = s.dtype
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        v = s.drop_nulls()
        return "int" if (v.is_finite() & (v == v.floor())).all() else "str"
    if dtype == pl.String and from_csv:
        v = s.drop_nulls().str.strip_chars()
        if v.len() == 0:
            return "str"
        if v.str.contains(_INT_RE).all() and v.cast(pl.Int64, strict=False).null_count() == 0:
            return "int"
    return "str"


def _cast_id(s: pl.Series, kind: str, as_int: bool) -> pl.Series:
    if as_int:
        if s.dtype == pl.String:
            return s.str.strip_chars().cast(pl.Int64)
        return s.cast(pl.Int64)
    if kind == "int":
        return s.cast(pl.Int64).cast(pl.String)
    if s.dtype != pl.String:
        s = s.cast(pl.String)
    return s.str.strip_chars()


def _infer(s: pl.Series) -> pl.Series:
    """Type a CSV string column: Int64, Float64 or String (see the module docstring)."""
    v = s.drop_nulls().str.strip_chars()
    if v.len() == 0:
        return s
    if v.str.contains(_INT_RE).all():
        as_int = s.str.strip_chars().cast(pl.Int64, strict=False)
        if as_int.null_count() == s.null_count():
            return as_int
    if v.str.contains(_PLAIN_NUM_RE).all():
        return s.str.strip_chars().cast(pl.Float64, strict=False)
    return s


def _first_failure(raw: pl.Series, parsed: pl.Series) -> tuple[int, object] | None:
    bad = parsed.is_null() & raw.is_not_null()
    if not bad.any():
        return None
    i = int(bad.arg_max())
    return i + 1, raw[i]


def _check_nulls(s: pl.Series, file: str, column: str, what: str) -> None:
    if s.null_count():
        raise DataValidationError(f"{what} is missing", file=file, column=column, row=int(s.is_null().arg_max()) + 1)


def _numeric(s: pl.Series, file: str, column: str, what: str) -> pl.Series:
    _check_nulls(s, file, column, what)
    if s.dtype.is_numeric():
        out = s.cast(pl.Float64)
    elif s.dtype == pl.String:
        out = s.str.strip_chars().cast(pl.Float64, strict=False)
    else:
        raise DataValidationError(f"must be numeric, found type {s.dtype}", file=file, column=column)
    fail = _first_failure(s, out)
    if fail:
        raise DataValidationError(f"not a {what}", file=file, column=column, row=fail[0], value=fail[1])
    return out


def _epoch_us(values: pl.Series | pl.Expr, us_per_unit: float) -> Any:
    """Integer or float epoch values times ``us_per_unit`` -> Datetime(us, UTC)."""
    if us_per_unit != 1:
        values = (values * us_per_unit).round(0)
    return pl.from_epoch(values.cast(pl.Int64), time_unit="us").dt.replace_time_zone("UTC")


def _timestamps(s: pl.Series, fmt: str | None, file: str, column: str) -> tuple[pl.Series, dict[str, Any]]:
    _check_nulls(s, file, column, "timestamp")
    dtype = s.dtype
    info: dict[str, Any] = {"from": "column", "column": column, "synthetic": False}
    if isinstance(dtype, pl.Datetime):
        out = s.dt.cast_time_unit("us")
        out = out.dt.convert_time_zone("UTC") if dtype.time_zone else out.dt.replace_time_zone("UTC")
        return out, {**info, "type": "datetime"}
    if dtype == pl.Date:
        return s.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), {**info, "type": "date"}
    if _given(fmt):
        if dtype != pl.String:
            s = s.cast(pl.String)
        try:
            out = s.str.strip_chars().str.strptime(pl.Datetime("us"), fmt, strict=False)
        except Exception as exc:  # noqa: BLE001 - an invalid pattern
            raise RecsysError(f"--timestamp-format {fmt!r} is not a valid strftime pattern: {_first_line(exc)}") from None
        out = out.dt.convert_time_zone("UTC") if out.dtype.time_zone else out.dt.replace_time_zone("UTC")  # type: ignore[union-attr]
        fail = _first_failure(s, out)
        if fail:
            raise DataValidationError(
                f"timestamp does not match --timestamp-format {fmt!r}", file=file, column=column, row=fail[0], value=fail[1]
            )
        return out, {**info, "type": "string", "format": fmt}
    if dtype == pl.String and s.str.strip_chars().str.contains(_NUM_RE).all():
        is_int = s.str.strip_chars().str.contains(_INT_RE).all()
        text, s = s, s.str.strip_chars().cast(pl.Int64 if is_int else pl.Float64, strict=False)
        fail = _first_failure(text, s)
        if fail:
            raise DataValidationError("epoch timestamp is out of range", file=file, column=column, row=fail[0], value=fail[1])
        dtype = s.dtype
    if dtype.is_numeric():
        biggest = s.abs().max()
        unit = next(u for limit, u in EPOCH_UNITS if float(biggest) < limit)  # type: ignore[arg-type]
        if dtype.is_integer():
            out = pl.from_epoch(s.cast(pl.Int64), time_unit=unit).dt.cast_time_unit("us").dt.replace_time_zone("UTC")
        else:
            out = _epoch_us(s, _US_PER[unit])
        return out.alias(s.name), {**info, "type": "epoch", "unit": unit}
    if dtype != pl.String:
        raise DataValidationError(f"cannot use type {dtype} as a timestamp", file=file, column=column)
    out = _parse_iso(s)
    fail = _first_failure(s, out)
    if fail:
        raise DataValidationError(
            "cannot parse the timestamp: expected unix seconds or ISO 8601 such as 2024-05-01T12:30:00Z "
            "(pass --timestamp-format for other layouts)",
            file=file,
            column=column,
            row=fail[0],
            value=fail[1],
        )
    return out, {**info, "type": "iso8601"}


def _parse_iso(s: pl.Series) -> pl.Series:
    """Vectorised ISO 8601 parsing: normalise every accepted layout to one, then strptime it."""
    g = pl.DataFrame({"s": s}).select(pl.col("s").str.extract(_ISO_RE, k).alias(f"g{k}") for k in range(1, 6))
    off = pl.col("g5").str.to_uppercase().replace("Z", "+00:00").fill_null("+00:00").str.replace(":", "")
    off = pl.when(off.str.len_chars() == 3).then(off + pl.lit("00")).otherwise(off)
    canonical = pl.concat_str(
        [pl.col("g1"), pl.lit("T"), pl.col("g2").fill_null("00:00"), pl.col("g3").fill_null(":00"),
         pl.col("g4").fill_null(".0"), off]
    )
    parsed = g.select(canonical.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f%z", strict=False).alias("t"))["t"]
    return parsed.dt.convert_time_zone("UTC").alias(s.name)
