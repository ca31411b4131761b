"""Typed settings: one dataclass per stage, loaded from a pipeline TOML, overridable by environment variables
(``RECSYS_<STAGE>__<FIELD>``) and by ``--set stage.field=value`` flags, in that order of precedence.

No global string-keyed dictionary: unknown sections or keys are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from recsys.errors import RecsysError

T = TypeVar("T")
S = TypeVar("S", bound="TomlSettings")


class SettingsError(RecsysError, ValueError):
    """A bad settings key or value: a clean CLI error, and still a ValueError for library callers."""


class TomlSettings:
    """Shared ``to_dict``/``from_dict``/``from_toml`` of the models' settings dataclasses.

    Unknown keys and invalid values are SettingsErrors naming the key, never a silent default or a traceback.
    """

    SETTINGS_NAME: ClassVar[str] = "settings"
    TOML_TABLE: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[S], d: Mapping[str, Any] | None) -> S:
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - known
        if unknown:
            raise SettingsError(f"unknown {cls.SETTINGS_NAME} settings: {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, SettingsError):
                raise
            raise SettingsError(f"{cls.SETTINGS_NAME} settings: {exc}") from None

    @classmethod
    def from_toml(cls: type[S], path: Path | str, table: Any = ...) -> S:
        """Read the class's table (``[retriever]``, ``[reranker]``, ``[text]``) or, with ``table=None``, the whole file."""
        data = load_toml(Path(path))
        table = cls.TOML_TABLE if table is ... else table
        return cls.from_dict(data.get(table, {}) if table else data)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where)
    if tp is Any:
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise RecsysError(f"setting {where} must be a list, got {value!r}")
        return [_coerce(v, args[0] if args else Any, f"{where}[]") for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecsysError(f"setting {where} must be a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise RecsysError(f"setting {where} must be true or false, got {value!r}")
    if tp in (int, float, str, Path):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise RecsysError(f"setting {where} must be {tp.__name__}, got {value!r}") from None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``data``, converting types and rejecting unknown keys."""
    if not isinstance(data, dict):
        raise RecsysError(f"[{where}] must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise RecsysError(f"unknown setting(s) {', '.join(sorted(unknown))} in [{where}]; known: {', '.join(sorted(names))}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()})


def load_toml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise RecsysError(f"settings file {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecsysError(f"{path} is not valid TOML: {exc}") from exc


def apply_overrides(raw: dict[str, Any], overrides: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Merge ``RECSYS_STAGE__FIELD`` environment variables, then ``stage.field=value`` overrides, into ``raw``."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    env = os.environ if env is None else env
    pairs: list[tuple[str, str, str]] = []
    for key, value in env.items():
        if key.startswith("RECSYS_") and "__" in key:
            stage, _, field = key[len("RECSYS_") :].partition("__")
            pairs.append((stage.lower().replace("_", "-"), field.lower(), value))
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise RecsysError(f"override {item!r} must look like stage.field=value")
        lhs, value = item.split("=", 1)
        stage, field = lhs.split(".", 1)
        pairs.append((stage, field, value))
    for stage, field, value in pairs:
        section = out.setdefault(stage, {})
        if not isinstance(section, dict):
            raise RecsysError(f"cannot override {stage}.{field}: [{stage}] is not a table")
        *parents, leaf = field.split(".")
        for p in parents:
            section = section.setdefault(p, {})
        section[leaf] = _parse_scalar(value)
    return out


def _parse_scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def as_dict(obj: Any) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(obj).items()}
