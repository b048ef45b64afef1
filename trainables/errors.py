"""The one error type for bad input: it names the file, the key path and, where known, the line; and the
settings read from the environment, checked as input."""
from __future__ import annotations


class SpecError(Exception):
    """Bad input. The CLI prints it as one line (or a short list) and exits with code 2."""

    def __init__(self, message: str, *, file: str | None = None, path: str | None = None, line: int | None = None,
                 column: int | None = None):
        super().__init__(message)
        self.message, self.file, self.path, self.line, self.column = message, file, path, line, column

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f", line {self.line}" if where else f"line {self.line}"
            if self.column is not None:
                where += f", column {self.column}"
        head = ": ".join(s for s in (where, self.path) if s)
        return f"{head}: {self.message}" if head else self.message


def did_you_mean(word, options) -> str:
    """'; did you mean X?' for the option nearest to word, or ''."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def short(value, limit: int = 60) -> str:
    """repr(value), cut to a short prefix: an error message never quotes a whole huge value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact(text: str) -> str:
    """Text with the credentials of every URI in it elided: user:password@ and secret query values
    (token=, key=, password=, ...) become ***. For anything printed, logged or saved."""
    import re

    # user:password@ where the password, unencoded, holds a space (and maybe @): up to the @ after its words
    # (a port, user:5000 followed by words, is no password) ...
    text = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:'\"]+:(?!\d+(?:[/\s]|$))\S*\s[^@\n]*@", r"\1***@", text)
    # ... then user:password@ up to the last @ of the URI: a secret may hold / or @ (AWS secret keys do)
    text = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/\"<>@]*:[^\s/\"<>@]*@", r"\1***@", text)  # pa'ss: a quote
    text = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s'\"<>]*@", r"\1***@", text)
    return re.sub(r"(?i)([?&;#](?:[a-z_-]*token|[a-z_-]*key|password|passwd|pass|pwd|[a-z_-]*secret|signature|sig|"
                  r"auth[a-z_-]*|"
                  r"credential|x-amz-[a-z-]+)=)[^&\s'\"]+", r"\1***", text)


# Seconds read from the environment, and their defaults (README: Environment).
SECONDS = {"TRAINABLES_MLFLOW_WAIT": 300.0,  # the end of a sweep waits this long for an absent MLflow server
           "TRAINABLES_RESOURCE_TIMEOUT": 3600.0,  # trials that cannot start for this long end the sweep (0: never)
           "TRAINABLES_PROGRESS_SECONDS": 30.0,  # between plain progress lines
           "TRAINABLES_PROBE_TIMEOUT": 120.0}  # a joined cluster that runs no task for this long is refused
ZERO_ALLOWED = {"TRAINABLES_MLFLOW_WAIT", "TRAINABLES_RESOURCE_TIMEOUT", "TRAINABLES_PROGRESS_SECONDS"}


def env_seconds(name: str) -> float:
    """$name as seconds (a finite number >= 0), its default when unset or empty; SpecError otherwise (a typo
    there was a ValueError traceback, some at the end of a sweep)."""
    import math
    import os

    raw = os.environ.get(name, "").strip()
    if not raw:
        return SECONDS[name]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    least = 0 if name in ZERO_ALLOWED else 0.001  # a probe of 0 s would refuse every cluster
    if not math.isfinite(value) or not least <= value <= 1e7:  # 1e306 s overflowed Ray's int(timeout * 1000)
        shown = ">= 0" if least == 0 else "> 0"
        raise SpecError(f"${name}={short(raw)} is not a number of seconds {shown} and <= 1e7 "
                        f"(unset: {SECONDS[name]:g})")
    return value
