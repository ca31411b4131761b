"""MovieLens importer: 100K (``u.data``), 1M (``*.dat``) and latest/25M/32M (``*.csv``), auto-detected.

Source row order of the ratings file is kept (the protocol's tie-break). Titles are split into a clean
title ("Usual Suspects, The (1995)" -> "The Usual Suspects") and a year; genres become a list.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.errors import DataValidationError, RecsysError

ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer", "programmer",
    "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
    "unemployed", "writer",
]


def detect_variant(src: Path) -> str:
    if (src / "u.data").exists():
        return "100k"
    if (src / "ratings.dat").exists():
        return "1m"
    if (src / "ratings.csv").exists():
        return "latest"
    raise RecsysError(
        f"{src} is not a MovieLens directory: expected u.data (100K), ratings.dat (1M) or ratings.csv (latest/25M/32M)"
    )


def import_movielens(src: Path | str) -> tuple[Dataset, dict]:
    """Read a MovieLens directory; return the dataset (unsaved) and its source description."""
    src = Path(src)
    if not src.is_dir():
        raise RecsysError(f"MovieLens source {src} is not a directory")
    variant = detect_variant(src)
    reader = {"100k": _read_100k, "1m": _read_1m, "latest": _read_latest}[variant]
    inter, items, users, files = reader(src)
    source = {"name": f"movielens-{variant}", "format": "movielens", "variant": variant, "path": str(src.resolve()), "files": files}
    return Dataset(inter, items, users), source


def _decode(path: Path, encoding: str = "latin-1") -> str:
    if not path.exists():
        raise RecsysError(f"MovieLens file {path} is missing")
    return path.read_bytes().decode(encoding)


def _split_lines(path: Path, sep: str, names: list[str], encoding: str = "latin-1") -> pl.DataFrame:
    """Read a multi-character-separated file into string columns, checking the field count of every row."""
    text = _decode(path, encoding)
    lines = pl.DataFrame({"line": text.splitlines()}).filter(pl.col("line").str.strip_chars() != "")
    if lines.height == 0:
        raise DataValidationError("file is empty", file=str(path))
    parts = lines.with_columns(pl.col("line").str.split(sep).alias("parts"))
    bad = parts.with_row_index("r").filter(pl.col("parts").list.len() < len(names))
    if bad.height:
        raise DataValidationError(
            f"expected {len(names)} '{sep}'-separated fields", file=str(path), row=int(bad["r"][0]) + 1, value=bad["line"][0]
        )
    return parts.select([pl.col("parts").list.get(k).alias(n) for k, n in enumerate(names)])


def _to_int(frame: pl.DataFrame, cols: list[str], file: Path) -> pl.DataFrame:
    for c in cols:
        cast = frame[c].str.strip_chars().cast(pl.Int64, strict=False)
        if cast.is_null().any():
            r = int(cast.is_null().arg_max()) + 1
            raise DataValidationError("not an integer", file=str(file), column=c, row=r, value=frame[c][r - 1])
        frame = frame.with_columns(cast.alias(c))
    return frame


def _interactions(frame: pl.DataFrame, file: Path) -> pl.DataFrame:
    frame = _to_int(frame, [S.USER_ID, S.ITEM_ID, S.TIMESTAMP], file)
    rating = frame[S.RATING].str.strip_chars().cast(pl.Float64, strict=False)
    if rating.is_null().any():
        r = int(rating.is_null().arg_max()) + 1
        raise DataValidationError("not a number", file=str(file), column=S.RATING, row=r, value=frame[S.RATING][r - 1])
    return frame.select(
        S.USER_ID,
        S.ITEM_ID,
        pl.from_epoch(pl.col(S.TIMESTAMP), time_unit="s").dt.cast_time_unit("us").dt.replace_time_zone("UTC").alias(S.TIMESTAMP),
        rating.alias(S.RATING),
    )


def clean_titles(raw: pl.Expr) -> list[pl.Expr]:
    """'Usual Suspects, The (1995)' -> title 'The Usual Suspects', year 1995."""
    stripped = raw.str.strip_chars()
    year = stripped.str.extract(r"\((\d{4})\)\s*(?:\([^)]*\))?\s*$", 1).cast(pl.Int64, strict=False)
    base = stripped.str.replace(r"\s*\(\d{4}\)\s*(\([^)]*\))?\s*$", "").str.strip_chars()
    article = base.str.extract(r", (The|A|An)$", 1)
    title = pl.when(article.is_not_null()).then(
        pl.concat_str([article, pl.lit(" "), base.str.replace(r", (The|A|An)$", "")])
    ).otherwise(base)
    return [title.alias("title"), year.alias("year")]


def _read_100k(src: Path):
    f_data, f_item, f_user, f_genre = src / "u.data", src / "u.item", src / "u.user", src / "u.genre"
    inter = pl.read_csv(
        io.StringIO(_decode(f_data)), separator="\t", has_header=False,
        new_columns=[S.USER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP], schema_overrides=[pl.String] * 4,
    )
    inter = _interactions(inter, f_data)
    genres = [g.split("|")[0] for g in _decode(f_genre).splitlines() if g.strip()]
    raw = _split_lines(f_item, "|", ["item_id", "raw_title", "release_date", "video_date", "url", *genres])
    raw = _to_int(raw, ["item_id", *genres], f_item)
    flags = pl.concat_list([pl.when(pl.col(g) == 1).then(pl.lit(g)).otherwise(None) for g in genres]).list.drop_nulls()
    items = raw.select(S.ITEM_ID, *clean_titles(pl.col("raw_title")), flags.alias("genres"), pl.col("url").alias("imdb_url"))
    users = _split_lines(f_user, "|", [S.USER_ID, "age", "gender", "occupation", "zip_code"])
    users = _to_int(users, [S.USER_ID, "age"], f_user)
    files = {"interactions": str(f_data), "items": str(f_item), "users": str(f_user)}
    return inter, items, users, files


def _read_1m(src: Path):
    f_r, f_m, f_u = src / "ratings.dat", src / "movies.dat", src / "users.dat"
    inter = _interactions(_split_lines(f_r, "::", [S.USER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP]), f_r)
    movies = _to_int(_split_lines(f_m, "::", [S.ITEM_ID, "raw_title", "genres"]), [S.ITEM_ID], f_m)
    items = movies.select(S.ITEM_ID, *clean_titles(pl.col("raw_title")), pl.col("genres").str.split("|").alias("genres"))
    users = None
    files = {"interactions": str(f_r), "items": str(f_m)}
    if f_u.exists():
        users = _to_int(_split_lines(f_u, "::", [S.USER_ID, "gender", "age", "occupation", "zip_code"]), [S.USER_ID, "age", "occupation"], f_u)
        occ = pl.Series(ML1M_OCCUPATIONS)
        users = users.with_columns(pl.col("occupation").map_elements(lambda k: occ[k] if 0 <= k < len(occ) else "other", return_dtype=pl.String))
        files["users"] = str(f_u)
    return inter, items, users, files


def _read_latest(src: Path):
    f_r, f_m, f_t = src / "ratings.csv", src / "movies.csv", src / "tags.csv"
    r = pl.read_csv(f_r, schema_overrides={"userId": pl.String, "movieId": pl.String, "rating": pl.String, "timestamp": pl.String})
    inter = _interactions(r.rename({"userId": S.USER_ID, "movieId": S.ITEM_ID}), f_r)
    m = pl.read_csv(f_m, schema_overrides={"movieId": pl.Int64, "title": pl.String, "genres": pl.String})
    items = m.select(
        pl.col("movieId").alias(S.ITEM_ID), *clean_titles(pl.col("title")),
        pl.when(pl.col("genres") == "(no genres listed)").then(pl.lit("")).otherwise(pl.col("genres")).str.split("|").list.eval(pl.element().filter(pl.element() != "")).alias("genres"),
    )
    files = {"interactions": str(f_r), "items": str(f_m)}
    if f_t.exists():
        tags = pl.read_csv(f_t, schema_overrides={"userId": pl.Int64, "movieId": pl.Int64, "tag": pl.String, "timestamp": pl.Int64})
        folded = (
            tags.drop_nulls("tag")
            .with_columns(pl.col("tag").str.strip_chars().str.to_lowercase())
            .group_by(["movieId", "tag"]).len()
            .sort(["movieId", "len", "tag"], descending=[False, True, False])
            .group_by("movieId", maintain_order=True).agg(pl.col("tag").head(20).alias("tags"))
            .rename({"movieId": S.ITEM_ID})
        )
        items = items.join(folded, on=S.ITEM_ID, how="left", maintain_order="left")
        files["tags"] = str(f_t)
    return inter, items, None, files
