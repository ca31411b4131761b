"""Download an official GroupLens MovieLens archive, verify it, unpack it into a cache and import it.

The archive's MD5 is checked against the ``.zip.md5`` file GroupLens publishes next to it; its SHA-256 and MD5
are recorded in the dataset manifest (``source.download``). A verified archive in the cache is reused without
network access. The server is contacted with a short timeout, so an offline machine fails within seconds with a
message that says how to import a manually downloaded copy instead.

``RECSYS_MOVIELENS_BASE_URL`` overrides the base URL (a mirror, or a local copy as ``file:///dir/``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import shutil
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from recsys.data.dataset import Dataset
from recsys.data.importers.movielens import detect_variant, import_movielens
from recsys.errors import RecsysError
from recsys.manifest import atomic_file, cache_dir, write_text_atomic

BASE_URL = "https://files.grouplens.org/datasets/movielens/"
BASE_URL_ENV = "RECSYS_MOVIELENS_BASE_URL"
DEFAULT_TIMEOUT_S = 10.0

#: dataset name -> (archive file name, top-level directory inside it, MovieLens variant detected by the importer)
ARCHIVES: dict[str, tuple[str, str, str]] = {
    "movielens-100k": ("ml-100k.zip", "ml-100k", "100k"),
    "movielens-1m": ("ml-1m.zip", "ml-1m", "1m"),
    "movielens-latest-small": ("ml-latest-small.zip", "ml-latest-small", "latest"),
}

_MD5_RE = re.compile(r"\b([0-9a-fA-F]{32})\b")


def default_cache_dir() -> Path:
    return cache_dir()


def archive_url(name: str, base_url: str | None = None) -> str:
    base = base_url or os.environ.get(BASE_URL_ENV) or BASE_URL
    if not base.endswith("/"):
        base += "/"
    return urllib.parse.urljoin(base, _archive(name)[0])


def download_movielens(
    name: str,
    *,
    cache: Path | str | None = None,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> tuple[Dataset, dict[str, Any]]:
    """Fetch (or reuse from ``cache``), verify, unpack and import a MovieLens release; return (dataset, source)."""
    zip_name, top_dir, variant = _archive(name)
    cache = Path(cache) if cache is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    url = archive_url(name, base_url)
    md5_url = url + ".md5"
    zip_path, md5_path = cache / zip_name, cache / (zip_name + ".md5")

    cached = zip_path.is_file() and md5_path.is_file() and _digests(zip_path)[0] == _expected_md5(md5_path.read_text(), md5_url)
    if not cached:
        md5_text = _fetch(md5_url, timeout).decode("utf-8", errors="replace")
        expected = _expected_md5(md5_text, md5_url)
        with atomic_file(zip_path) as tmp:  # kept only once its checksum matches
            _fetch_to_file(url, tmp, timeout)
            got_md5, _ = _digests(tmp)
            if got_md5 != expected:
                raise RecsysError(
                    f"checksum mismatch for {url}: MD5 {got_md5}, but {md5_url} says {expected}; "
                    "the download is corrupt or was tampered with (nothing was kept; try again)"
                )
        write_text_atomic(md5_path, md5_text)
    md5, sha256 = _digests(zip_path)

    src = _unpack(zip_path, cache, top_dir, md5)
    found = detect_variant(src)
    if found != variant:
        raise RecsysError(f"{zip_path} unpacked to a MovieLens '{found}' directory, expected '{variant}' for {name}")
    ds, source = import_movielens(src)
    source = {
        **source,
        "name": name,
        "download": {"url": url, "md5_url": md5_url, "md5": md5, "sha256": sha256, "archive": str(zip_path), "cached": cached},
    }
    return ds, source


# --------------------------------------------------------------------------------------------------- helpers


def _archive(name: str) -> tuple[str, str, str]:
    if name not in ARCHIVES:
        raise RecsysError(f"unknown dataset {name!r}; choose one of {', '.join(ARCHIVES)}")
    return ARCHIVES[name]


def _offline_error(url: str, reason: object) -> RecsysError:
    parsed = urllib.parse.urlparse(url)
    where = parsed.netloc or url
    return RecsysError(
        f"cannot reach {where}: {reason}; download the archive yourself ({url}), "
        "unzip it and run `recsys data import movielens DIR`"
    )


def _resolve(host: str, port: int, timeout: float) -> None:
    """Name resolution ignores socket timeouts; bound it so an offline machine fails fast."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(socket.getaddrinfo, host, port).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise OSError(f"name resolution timed out after {timeout:g}s") from None
    finally:
        pool.shutdown(wait=False)


def _open(url: str, timeout: float):
    parsed = urllib.parse.urlparse(url)
    try:
        if parsed.scheme in ("http", "https") and parsed.hostname:
            _resolve(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), timeout)
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - fixed GroupLens URL or an explicit override
    except urllib.error.HTTPError as exc:
        raise RecsysError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _offline_error(url, exc.reason) from None
    except (OSError, TimeoutError) as exc:
        raise _offline_error(url, exc) from None


def _fetch(url: str, timeout: float) -> bytes:
    with _open(url, timeout) as resp:
        try:
            return resp.read()
        except (OSError, TimeoutError) as exc:
            raise _offline_error(url, exc) from None


def _fetch_to_file(url: str, path: Path, timeout: float) -> None:
    try:
        with open(path, "wb") as out, _open(url, timeout) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (OSError, TimeoutError) as exc:
        raise _offline_error(url, exc) from None


def _expected_md5(text: str, where: str) -> str:
    """GroupLens .md5 files look like ``MD5 (ml-100k.zip) = <hex>``; accept ``<hex>  file`` too."""
    m = _MD5_RE.search(text)
    if not m:
        raise RecsysError(f"{where} does not contain an MD5 checksum")
    return m.group(1).lower()


def _digests(path: Path) -> tuple[str, str]:
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def _unpack(zip_path: Path, cache: Path, top_dir: str, md5: str) -> Path:
    """Extract into ``cache/top_dir`` (reused when it was extracted from an archive with the same MD5)."""
    dest = cache / top_dir
    stamp = dest / ".recsys-archive-md5"
    if stamp.is_file() and stamp.read_text().strip() == md5:
        return dest
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{top_dir}.tmp-"))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                root = tmp.resolve()
                for member in zf.namelist():
                    target = (tmp / member).resolve()
                    if root != target and root not in target.parents:
                        raise RecsysError(f"{zip_path}: refusing to extract {member!r} outside the cache")
                zf.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise RecsysError(f"{zip_path} is not a valid zip archive: {exc}") from None
        inner = tmp / top_dir
        if not inner.is_dir():
            raise RecsysError(f"{zip_path} does not contain the expected top-level directory {top_dir}/")
        (inner / stamp.name).write_text(md5)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(inner, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
