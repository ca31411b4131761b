"""`recsys data download`: offline failure, and the download + checksum + unzip + import path on a synthetic archive.

Never touches the network or the real MovieLens data: archives are built here from a made-up ML-100K-format
directory and served from a local http.server or a file:// URL.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from recsys.data.importers import download as dl
from recsys.errors import RecsysError


def build_archive(src: Path, directory: Path, *, md5: str | None = None, top: str = "ml-100k") -> Path:
    """Zip ``src`` as ``top/...`` into ``directory/ml-100k.zip`` with a GroupLens-style ``.md5`` beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, f"{top}/{f.name}")
    digest = md5 or hashlib.md5(archive.read_bytes()).hexdigest()
    (directory / "ml-100k.zip.md5").write_text(f"MD5 (ml-100k.zip) = {digest}\n")
    return archive


@pytest.fixture
def http_server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/datasets/movielens/"
    server.shutdown()
    server.server_close()


def test_offline_fails_fast_with_instructions(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(dl, "BASE_URL", "http://127.0.0.1:9/datasets/movielens/")
    monkeypatch.delenv(dl.BASE_URL_ENV, raising=False)
    start = time.monotonic()
    with pytest.raises(RecsysError) as info:
        dl.download_movielens("movielens-100k", cache=tmp_path / "cache", timeout=5)
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert msg.startswith("cannot reach 127.0.0.1:9:")
    assert "download the archive yourself" in msg and "recsys data import movielens DIR" in msg
    assert "ml-100k.zip" in msg
    assert not any((tmp_path / "cache").iterdir())  # nothing half-written left behind


def test_real_url_names_grouplens() -> None:
    assert dl.archive_url("movielens-1m", dl.BASE_URL) == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert str(dl._offline_error(dl.archive_url("movielens-100k", dl.BASE_URL), "offline")).startswith(
        "cannot reach files.grouplens.org: offline; download the archive yourself"
    )


def test_unknown_dataset(tmp_path) -> None:
    with pytest.raises(RecsysError, match="movielens-100k, movielens-1m, movielens-latest-small"):
        dl.download_movielens("movielens-20m", cache=tmp_path)


def test_download_verify_unzip_import(http_server, synthetic_ml100k_dir, tmp_path) -> None:
    root, base = http_server
    archive = build_archive(synthetic_ml100k_dir, root / "datasets" / "movielens")
    cache = tmp_path / "cache"
    ds, source = dl.download_movielens("movielens-100k", cache=cache, base_url=base, timeout=5)
    assert ds.interactions.height == 10 and ds.items.height == 4 and ds.users is not None and ds.users.height == 5
    d = source["download"]
    assert d["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert d["md5"] == hashlib.md5(archive.read_bytes()).hexdigest()
    assert d["url"] == base + "ml-100k.zip" and d["cached"] is False
    assert source["name"] == "movielens-100k" and source["variant"] == "100k"
    saved = ds.save(tmp_path / "ds", source=source)
    assert saved.manifest["source"]["download"]["sha256"] == d["sha256"]
    assert (cache / "ml-100k.zip").is_file() and (cache / "ml-100k" / "u.data").is_file()

    # second run: the verified archive in the cache is reused without the network
    ds2, source2 = dl.download_movielens("movielens-100k", cache=cache, base_url="http://127.0.0.1:9/", timeout=5)
    assert source2["download"]["cached"] is True and ds2.interactions.equals(ds.interactions)


def test_checksum_mismatch_keeps_nothing(synthetic_ml100k_dir, tmp_path) -> None:
    mirror = tmp_path / "mirror"
    build_archive(synthetic_ml100k_dir, mirror, md5="0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(RecsysError, match="checksum mismatch.*00000000000000000000000000000000"):
        dl.download_movielens("movielens-100k", cache=cache, base_url=mirror.as_uri() + "/")
    assert sorted(p.name for p in cache.iterdir()) == []


def test_archive_without_expected_directory(synthetic_ml100k_dir, tmp_path) -> None:
    mirror = tmp_path / "mirror"
    build_archive(synthetic_ml100k_dir, mirror, top="something-else")
    with pytest.raises(RecsysError, match="top-level directory ml-100k/"):
        dl.download_movielens("movielens-100k", cache=tmp_path / "cache", base_url=mirror.as_uri() + "/")


def _cli(args: list[str], env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", **env_extra}
    return subprocess.run([sys.executable, "-m", "recsys", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_cli_download_offline_and_from_mirror(synthetic_ml100k_dir, tmp_path) -> None:
    offline = _cli(
        ["data", "download", "movielens-100k", "--cache", str(tmp_path / "c0"), "--timeout", "3"],
        {dl.BASE_URL_ENV: "http://127.0.0.1:9/"},
        tmp_path,
    )
    assert offline.returncode == 2
    assert offline.stderr.startswith("error: cannot reach 127.0.0.1:9") and "recsys data import movielens DIR" in offline.stderr
    assert "Traceback" not in offline.stderr

    mirror = tmp_path / "mirror"
    build_archive(synthetic_ml100k_dir, mirror)
    ok = _cli(
        ["data", "download", "movielens-100k", "--cache", str(tmp_path / "c1"), "--json"],
        {dl.BASE_URL_ENV: mirror.as_uri() + "/"},
        tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    manifest = json.loads(ok.stdout)
    assert manifest["counts"]["interactions"] == 10
    assert len(manifest["source"]["download"]["sha256"]) == 64
    assert (tmp_path / "data" / "movielens-100k" / "manifest.json").is_file()  # default --out is data/NAME
