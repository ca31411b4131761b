"""Exception types: every user-facing failure is a RecsysError so the CLI can print it and exit non-zero."""

from __future__ import annotations


class RecsysError(Exception):
    """Base of every error the CLI reports as a clean message (exit code 2)."""


class DataValidationError(RecsysError):
    """Input data is malformed; the message names file, column, row and value where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
        value: object | None = None,
    ) -> None:
        parts = []
        if file is not None:
            parts.append(f"file {file}")
        if column is not None:
            parts.append(f"column '{column}'")
        if row is not None:
            parts.append(f"row {row}")
        if value is not None:
            parts.append(f"value {value!r}")
        where = (", ".join(parts) + ": ") if parts else ""
        super().__init__(where + message)
        self.file, self.column, self.row, self.value = file, column, row, value


class ManifestMismatchError(RecsysError):
    """Two artefacts that must belong together (model and index, run and dataset) do not."""
