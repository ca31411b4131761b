"""The serving limits as one typed settings object (``[serve]`` table of a TOML file, ``RECSYS_SERVE__FIELD``
environment variables or ``recsys serve --set field=value``). Reference: docs/serving.md, "Limits"."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from recsys.serving.schemas import MAX_BODY_BYTES, MAX_CANDIDATES
from recsys.settings import SettingsError, TomlSettings, apply_overrides, load_toml


@dataclass(frozen=True)
class ServeSettings(TomlSettings):
    """Bounds on what one request may cost the server.

    ``max_candidates``: most retrieved items one request may have reranked (its ``candidates``, or the server's
    rerank depth); more is a 422, and k never raises it (items below the depth follow in retrieval order).
    ``request_timeout_s``: a recommendation request's deadline; past it the request stops its work and answers 503.
    ``rerank_concurrency``: ranked requests computed at once; the others queue for at most ``rerank_queue_wait_s``
    and then get 503 with ``Retry-After: retry_after_s``. ``max_body_bytes``: larger bodies get 413 before parsing.
    """

    SETTINGS_NAME: ClassVar[str] = "serve"
    TOML_TABLE: ClassVar[str | None] = "serve"

    max_candidates: int = 200
    request_timeout_s: float = 30.0
    rerank_concurrency: int = 1
    rerank_queue_wait_s: float = 5.0
    retry_after_s: int = 2
    max_body_bytes: int = MAX_BODY_BYTES

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise SettingsError(f"serve setting {f.name} must be a positive number, got {value!r}")
            if f.type in ("int", int) and not isinstance(value, int):
                raise SettingsError(f"serve setting {f.name} must be an integer, got {value!r}")
        if self.max_candidates > MAX_CANDIDATES:
            raise SettingsError(f"serve setting max_candidates must be at most {MAX_CANDIDATES}, got {self.max_candidates}")


def load_serve_settings(config: Path | str | None = None, overrides: Sequence[str] = (), env: Mapping[str, str] | None = None) -> ServeSettings:
    """The ``[serve]`` table of ``config`` (a TOML file), then ``RECSYS_SERVE__FIELD`` environment variables, then
    ``field=value`` ``overrides``, in that order of precedence; unknown fields and bad values are SettingsErrors."""
    raw: dict[str, Any] = {"serve": dict(load_toml(Path(config)).get("serve", {}))} if config is not None else {}
    raw = apply_overrides(raw, [f"serve.{item}" for item in overrides], env=dict(os.environ if env is None else env))
    return ServeSettings.from_dict(raw.get("serve", {}))
