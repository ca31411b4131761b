"""Manifests, fingerprints and atomic writes shared by every artefact (dataset, model, index, candidates).

Every artefact directory holds a ``manifest.json``; loaders compare fingerprints and refuse mismatched pairs.
Artefact directories are written to a sibling temporary path and renamed into place, so a failure never leaves
a half-written or clobbered artefact behind; a writer only ever replaces an artefact of its own kind (another kind
with ``overwrite``), never a directory recsys did not write. Files go through ``atomic_file`` the same way.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recsys.errors import ManifestMismatchError, RecsysError

MANIFEST_NAME = "manifest.json"
CACHE_ENV = "RECSYS_CACHE"


def cache_dir(*parts: str) -> Path:
    """Where recsys keeps files it can rebuild (downloads, ONNX exports, prepared histories): ``$RECSYS_CACHE``,
    else ``$XDG_CACHE_HOME/recsys``, else ``~/.cache/recsys``; ``parts`` name a sub-directory."""
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recsys"
    return root.joinpath(*parts)


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
    # looked up once a process: batch scoring rewrites its manifest after every chunk, and a lookup is slow
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("recsys", "numpy", "polars", "pyarrow", "torch", "sentence-transformers", "transformers", "faiss-cpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    body = {"created": utc_now(), "versions": library_versions(), **manifest}
    write_json_atomic(Path(directory) / MANIFEST_NAME, body, sort_keys=True)


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


def _tmp_sibling(path: Path) -> Path:
    """A hidden, unique sibling name for work in progress (same filesystem, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_file(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces ``path``, on failure it is removed.

    The one way recsys writes a file: a reader never sees a torn file and a failure leaves ``path`` as it was. The
    file gets the process umask's permissions (``tempfile.mkstemp`` would make it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path | str, obj: Any, **dumps: Any) -> None:
    """``obj`` as JSON (``dumps`` go to ``json.dumps``; default: indent 2, ``default=str``)."""
    write_text_atomic(path, json.dumps(obj, **{"indent": 2, "default": str, **dumps}))


def write_parquet_atomic(path: Path | str, frame: Any, **options: Any) -> None:
    """A polars DataFrame as parquet (``options`` go to ``DataFrame.write_parquet``)."""
    with atomic_file(path) as tmp:
        frame.write_parquet(tmp, **options)


def check_replaceable(path: Path | str, kind: str, *, overwrite: bool = False) -> bool:
    """May a writer of a ``kind`` artefact put its output at ``path``? True when something is there to replace.

    Free: a missing path or an empty directory. Replaced: an artefact of the same kind (its ``manifest.json`` says
    so); with ``overwrite``, an artefact of another kind too. Never replaced: a file, or a directory that is not a
    recsys artefact (no or unreadable manifest), since recsys never deletes what it did not write.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_dir() or path.is_symlink():
        raise RecsysError(f"{path} is a file, not a recsys {kind} directory; refusing to replace it (choose another path)")
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return True
    try:
        found = json.loads((path / MANIFEST_NAME).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        found = None
    if found is None:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise RecsysError(
            f"{path} is not a recsys artefact (it holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: {shown}; "
            f"no valid {MANIFEST_NAME}); refusing to replace it{' even with --overwrite' if overwrite else ''}: "
            "recsys never deletes files it did not write (choose another path, or empty it)"
        )
    if found != kind and not overwrite:
        raise RecsysError(f"{path} holds a recsys '{found}' artefact, not a '{kind}' one; pass --overwrite to replace it")
    return True


@contextlib.contextmanager
def atomic_directory(final: Path | str, kind: str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``final``, on failure it is removed.

    ``final`` must be free or replaceable by a ``kind`` artefact (``check_replaceable``; checked before any work and
    again before the swap). An existing ``final`` survives any failure untouched.
    """
    final = Path(final)
    check_replaceable(final, kind, overwrite=overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(final)
    tmp.mkdir()  # umask permissions (tempfile.mkdtemp would make it 0700)
    try:
        yield tmp
        if check_replaceable(final, kind, overwrite=overwrite):
            old = _tmp_sibling(final.with_name(f"{final.name}.old"))
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
