"""The one error type for bad input: it names the file, the key path and, where known, the line."""
from __future__ import annotations


class SpecError(Exception):
    """Bad input. The CLI prints it as one line (or a short list) and exits with code 2."""

    def __init__(self, message: str, *, file: str | None = None, path: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message, self.file, self.path, self.line = message, file, path, line

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f", line {self.line}" if where else f"line {self.line}"
        head = ": ".join(s for s in (where, self.path) if s)
        return f"{head}: {self.message}" if head else self.message
