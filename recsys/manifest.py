"""Manifests, fingerprints and atomic writes shared by every artefact (dataset, model, index, candidates).

Every artefact directory holds a ``manifest.json``; loaders compare fingerprints and refuse mismatched pairs.
Artefact directories are written to a sibling temporary path and renamed into place, so a failure never leaves
a half-written or clobbered artefact behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recsys.errors import ManifestMismatchError, RecsysError

MANIFEST_NAME = "manifest.json"


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def fingerprint_bytes(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:16]


def fingerprint_json(obj: Any) -> str:
    return fingerprint_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def fingerprint_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour an artefact depends on."""
    return dict(_library_versions())


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict[str, str]:
    # looked up once a process: batch scoring rewrites its manifest after every chunk (~25 ms a lookup)
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("recsys", "numpy", "polars", "pyarrow", "torch", "sentence-transformers", "transformers", "faiss-cpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    body = {"created": utc_now(), "versions": library_versions(), **manifest}
    write_text_atomic(Path(directory) / MANIFEST_NAME, json.dumps(body, indent=2, sort_keys=True, default=str))


def read_manifest(directory: Path, kind: str | None = None) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        raise RecsysError(f"{directory} is not a recsys artefact: {MANIFEST_NAME} is missing")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RecsysError(f"{path} is not valid JSON: {exc}") from exc
    if kind is not None and manifest.get("kind") != kind:
        raise ManifestMismatchError(f"{directory} holds a '{manifest.get('kind')}' artefact, expected '{kind}'")
    return manifest


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(final: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``final``, on failure it is removed.

    An existing ``final`` survives any failure untouched.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise RecsysError(f"{final} already exists (pass --overwrite to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
