"""Typed settings: TOML loading, env-var and flag overrides, clear errors for unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.errors import RecsysError
from recsys.workflow import load_pipeline


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.toml"
    p.write_text(text)
    return p


def test_types_are_converted(tmp_path):
    p = _write(tmp_path, '[data]\nsource = "demo"\nout = "x"\nusers = 50\n[evaluate]\nmodels = ["popularity"]\n')
    s = load_pipeline(p, env={})
    assert s.data.users == 50 and isinstance(s.data.out, Path)
    assert s.evaluate.models == ["popularity"]


def test_flag_overrides_beat_env_which_beat_toml(tmp_path):
    p = _write(tmp_path, '[data]\nusers = 50\nitems = 20\n')
    s = load_pipeline(p, ["data.users=70"], env={"RECSYS_DATA__USERS": "60", "RECSYS_DATA__ITEMS": "30"})
    assert s.data.users == 70
    assert s.data.items == 30


def test_list_override_from_comma_string(tmp_path):
    p = _write(tmp_path, '[evaluate]\nmodels = ["popularity"]\n')
    s = load_pipeline(p, ["evaluate.models=popularity,ease"], env={})
    assert s.evaluate.models == ["popularity", "ease"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[data]\nuserz = 3\n", "unknown setting(s) userz in [data]"),
        ("[trian]\nx = 1\n", "unknown stage(s) trian"),
        ('[data]\nusers = "many"\n', "data.users must be int"),
        ("[data\n", "not valid TOML"),
    ],
)
def test_bad_settings_name_the_problem(tmp_path, text, needle):
    with pytest.raises(RecsysError, match=None) as err:
        load_pipeline(_write(tmp_path, text), env={})
    assert needle in str(err.value)


def test_shipped_pipelines_load():
    root = Path(__file__).resolve().parents[1]
    for p in sorted((root / "pipelines").glob("*.toml")):
        assert load_pipeline(p, env={}).data is not None
