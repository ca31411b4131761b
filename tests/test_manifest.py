"""``recsys.manifest``: a writer replaces only an artefact of its own kind, never a directory it did not write;
atomic files and directories get the umask's permissions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import polars as pl
import pytest

from recsys.errors import RecsysError
from recsys.manifest import (
    MANIFEST_NAME,
    atomic_directory,
    atomic_file,
    check_replaceable,
    write_json_atomic,
    write_manifest,
    write_parquet_atomic,
    write_text_atomic,
)


def _artefact(path: Path, kind: str, payload: str = "old") -> Path:
    path.mkdir(parents=True)
    (path / "payload.txt").write_text(payload)
    write_manifest(path, {"kind": kind})
    return path


def _write(final: Path, kind: str, **kw) -> None:
    with atomic_directory(final, kind, **kw) as tmp:
        (tmp / "payload.txt").write_text("new")
        write_manifest(tmp, {"kind": kind})


def test_a_directory_recsys_did_not_write_survives_even_with_overwrite(tmp_path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    for overwrite in (False, True):
        with pytest.raises(RecsysError, match=r"precious is not a recsys artefact .*notes\.txt"):
            _write(precious, "dataset", overwrite=overwrite)
        assert (precious / "notes.txt").read_text() == "keep"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # no temporary left behind


def test_a_file_at_the_path_is_never_replaced(tmp_path) -> None:
    target = tmp_path / "out"
    target.write_text("mine")
    with pytest.raises(RecsysError, match="is a file"):
        _write(target, "index", overwrite=True)
    assert target.read_text() == "mine"


def test_an_unreadable_manifest_is_not_an_artefact(tmp_path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(RecsysError, match="not a recsys artefact"):
        _write(target, "index", overwrite=True)
    assert (target / MANIFEST_NAME).read_text() == "{not json"


def test_same_kind_is_replaced_another_kind_only_with_overwrite(tmp_path) -> None:
    same = _artefact(tmp_path / "same", "index")
    _write(same, "index")
    assert (same / "payload.txt").read_text() == "new"

    other = _artefact(tmp_path / "other", "dataset")
    with pytest.raises(RecsysError, match="holds a recsys 'dataset' artefact, not a 'index' one; pass --overwrite"):
        _write(other, "index")
    assert (other / "payload.txt").read_text() == "old"
    _write(other, "index", overwrite=True)
    assert json.loads((other / MANIFEST_NAME).read_text())["kind"] == "index"


def test_missing_path_and_empty_directory_are_free(tmp_path) -> None:
    assert check_replaceable(tmp_path / "missing", "index") is False
    empty = tmp_path / "empty"
    empty.mkdir()
    _write(empty, "index")
    assert (empty / "payload.txt").read_text() == "new"


def test_a_failed_write_leaves_the_old_artefact_and_no_temporary(tmp_path) -> None:
    old = _artefact(tmp_path / "idx", "index")
    with pytest.raises(RuntimeError):
        with atomic_directory(old, "index") as tmp:
            (tmp / "payload.txt").write_text("half")
            raise RuntimeError("killed")
    assert (old / "payload.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_a_path_that_became_foreign_during_the_write_is_not_replaced(tmp_path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RecsysError, match="not a recsys artefact"):
        with atomic_directory(target, "index") as tmp:
            (tmp / "payload.txt").write_text("new")
            target.mkdir()
            (target / "notes.txt").write_text("keep")
    assert (target / "notes.txt").read_text() == "keep"


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_directories_and_files_get_umask_permissions(tmp_path, umask_022) -> None:
    _write(tmp_path / "idx", "index")
    write_text_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "b.json", {"a": 1})
    write_parquet_atomic(tmp_path / "c.parquet", pl.DataFrame({"a": [1]}))
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "idx") == 0o755
    assert mode(tmp_path / "idx" / MANIFEST_NAME) == 0o644
    for name in ("a.txt", "b.json", "c.parquet"):
        assert mode(tmp_path / name) == 0o644, name


def test_atomic_file_writers_round_trip_and_a_failure_keeps_the_old_file(tmp_path) -> None:
    write_json_atomic(tmp_path / "b.json", {"a": 1})
    assert json.loads((tmp_path / "b.json").read_text()) == {"a": 1}
    write_parquet_atomic(tmp_path / "c.parquet", pl.DataFrame({"a": [1, 2]}))
    assert pl.read_parquet(tmp_path / "c.parquet")["a"].to_list() == [1, 2]
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "b.json") as tmp:
            tmp.write_text("{torn")
            raise RuntimeError("killed")
    assert json.loads((tmp_path / "b.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "c.parquet"]
