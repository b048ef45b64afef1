"""Where MLflow is: the tracking URI, whether its store answers, a fault in a few words, the git commit."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from trainables.errors import SpecError, redact

DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow's own default, made absolute where the sweep starts


def resolve_uri(uri: str | None) -> str:
    """tracking.uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db; local paths made absolute."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and not path.startswith(":memory:") and not os.path.isabs(path):
            return "sqlite:///" + os.path.abspath(path)
        return uri
    try:
        parsed = urlparse(uri)
    except ValueError as e:  # an unclosed [IPv6 host, ...: what every later step would trip on
        raise SpecError(f"{redact(uri)} is not a URI MLflow can open ({e})", path="tracking.uri") from None
    if parsed.scheme == "file":
        return Path(os.path.abspath(os.path.expanduser(parsed.path))).as_uri()
    if parsed.scheme == "":
        return os.path.abspath(os.path.expanduser(uri))
    return uri


# Tracking stores MLflow opens by URI scheme besides http(s), sqlite and files (+driver allowed).
DATABASES = ("postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")


def reason(e: BaseException) -> str:
    """A tracking error in a few words (requests' messages run to several hundred characters)."""
    text = str(e)
    for needle, short in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                          ("Name or service not known", "unknown host"), ("Failed to resolve", "unknown host"),
                          ("Connection aborted", "connection lost"), ("Connection reset", "connection lost"),
                          ("RemoteDisconnected", "connection lost"), ("Max retries exceeded", "no connection")):
        if needle in text:
            return short
    text = text.splitlines()[0] if text else type(e).__name__
    return redact(text)[:200]  # requests quotes the URL, credentials and all (cut after: the whole secret goes)


def check_reachable(uri: str, *, file: str | None = None, timeout: float = 5.0) -> None:
    """Raise SpecError unless the tracking store answers (http: GET /health; sqlite/file: a writable folder)."""
    scheme = urlparse(uri).scheme
    hint = "start the server, fix tracking.uri (or $MLFLOW_TRACKING_URI), or run with -o tracking.enabled=false"
    if scheme in ("http", "https"):
        import requests

        try:
            r = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        except requests.RequestException as e:
            raise SpecError(f"the MLflow tracking server at {redact(uri)} does not answer ({reason(e)}); {hint}",
                            file=file, path="tracking.uri") from None
        if r.status_code != 200:
            raise SpecError(f"the MLflow tracking server at {redact(uri)} answers /health with HTTP "
                            f"{r.status_code}; {hint}", file=file, path="tracking.uri")
        return
    if scheme == "sqlite":
        path = uri[len("sqlite:///"):]
        if path.startswith(":memory:"):
            return
        target = Path(path)
        folder = target.parent
    elif scheme in ("", "file"):
        target = Path(urlparse(uri).path if scheme == "file" else uri)
        folder = target
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    elif scheme.split("+")[0] in DATABASES:
        return  # the parent run's creation is the check
    else:
        raise SpecError(f"tracking.uri {redact(uri)}: MLflow has no tracking store for {scheme}://; use "
                        f"http(s)://HOST:PORT, sqlite:///FILE.db, a folder, or a database URI ({', '.join(DATABASES)})",
                        file=file, path="tracking.uri")
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise SpecError(f"cannot write MLflow runs at {redact(uri)}: {folder} is not a writable folder; {hint}",
                        file=file, path="tracking.uri")
    if target.is_file() and not os.access(target, os.W_OK):
        raise SpecError(f"cannot write MLflow runs at {redact(uri)}: {target} is read-only; {hint}",
                        file=file, path="tracking.uri")


def git_commit(folder: str) -> str | None:
    """HEAD of the git repository holding folder, or None (no git, not a repository)."""
    try:
        out = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
