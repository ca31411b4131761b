"""ServeSettings and load_serve_settings: typed, bounded limits from a TOML ``[serve]`` table, ``RECSYS_SERVE__FIELD``
environment variables and ``field=value`` overrides, in that order of precedence."""

from __future__ import annotations

import pytest

from recsys.serving.schemas import MAX_BODY_BYTES, MAX_CANDIDATES
from recsys.serving.settings import ServeSettings, load_serve_settings
from recsys.settings import SettingsError


def test_settings_are_typed_and_bounded():
    assert ServeSettings.from_dict({"max_candidates": 50}).max_candidates == 50
    for bad in ({"max_candidates": 0}, {"rerank_concurrency": 1.5}, {"request_timeout_s": float("inf")}, {"max_candidates": 5000}, {"nope": 1}):
        with pytest.raises(SettingsError):
            ServeSettings.from_dict(bad)


def test_defaults_are_the_schema_bounds():
    s = ServeSettings()
    assert s.max_body_bytes == MAX_BODY_BYTES and s.max_candidates <= MAX_CANDIDATES and s.rerank_concurrency == 1


def test_limits_from_a_toml_file_and_the_environment(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text("[serve]\nmax_candidates = 64\nrequest_timeout_s = 10\n")
    s = load_serve_settings(config, ["request_timeout_s=5"], env={"RECSYS_SERVE__RERANK_CONCURRENCY": "2"})
    assert (s.max_candidates, s.request_timeout_s, s.rerank_concurrency) == (64, 5, 2)


def test_precedence_toml_then_environment_then_overrides(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text("[serve]\nmax_candidates = 64\n[other]\nignored = 1\n")
    env = {"RECSYS_SERVE__MAX_CANDIDATES": "100", "RECSYS_OTHER__X": "1"}  # another stage's variable is not read here
    assert load_serve_settings(config, env=env).max_candidates == 100
    assert load_serve_settings(config, ["max_candidates=120"], env=env).max_candidates == 120
    assert load_serve_settings(None, env={}) == ServeSettings()


@pytest.mark.parametrize(
    "toml, overrides, env, names",
    [
        ("[serve]\nmax_candidate = 5\n", [], {}, "max_candidate"),  # a typo is refused, with the known keys
        ("", ["retry_after_s=1.5"], {}, "retry_after_s"),  # an integer setting
        ("", [], {"RECSYS_SERVE__REQUEST_TIMEOUT_S": "-1"}, "request_timeout_s"),
        ("", ["rerank_concurrency=true"], {}, "rerank_concurrency"),  # a bool is not a count
        ("", ["max_body_bytes=lots"], {}, "max_body_bytes"),
    ],
)
def test_bad_values_name_the_setting(tmp_path, toml, overrides, env, names):
    config = tmp_path / "serve.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError, match=names):
        load_serve_settings(config, overrides, env=env)
