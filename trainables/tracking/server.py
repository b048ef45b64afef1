"""Where MLflow is: the tracking URI, whether its store answers, a fault in a few words, the git commit."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from trainables.errors import SpecError, redact, short

DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow's own default, made absolute where the sweep starts


def resolve_uri(uri: str | None) -> str:
    """tracking.uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db; local paths made absolute."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri[:10].lower() == "sqlite:///":  # Sqlite:///: a scheme is any case; SQLAlchemy takes only this one
        uri = "sqlite:///" + uri[10:]
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
    if m := re.search(r"too many (\d{3}) error responses", text):  # urllib3's retries ran out on HTTP errors
        return f"HTTP {m.group(1)} each time"
    for needle, words in (("WRONG_VERSION_NUMBER", "it does not speak TLS: use http://"),  # https:// to plain http
                          ("CERTIFICATE_VERIFY_FAILED", f"its TLS certificate is not trusted: {_TLS_HINT}"),
                          ("SSLError", f"TLS failed: {_TLS_HINT}"),
                          ("Connection refused", "connection refused"), ("timed out", "timed out"),
                          ("Name or service not known", "unknown host"), ("Failed to resolve", "unknown host"),
                          ("Connection aborted", "connection lost"), ("Connection reset", "connection lost"),
                          ("RemoteDisconnected", "connection lost"), ("Max retries exceeded", "no connection")):
        if needle in text:
            return words
    text = text.splitlines()[0] if text else type(e).__name__
    return redact(text)[:200]  # requests quotes the URL, credentials and all (cut after: the whole secret goes)


_TLS_HINT = "set MLFLOW_TRACKING_SERVER_CERT_PATH to its CA bundle, or MLFLOW_TRACKING_INSECURE_TLS=true"
_AUTH_HINT = ("set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to "
              "credentials it accepts")


RUN_HINT = "start the server, fix tracking.uri (or $MLFLOW_TRACKING_URI), or run with -o tracking.enabled=false"


def check_reachable(uri: str, *, file: str | None = None, timeout: float = 5.0, hint: str = RUN_HINT) -> None:
    """Raise SpecError unless the tracking store answers (http: GET /health; sqlite/file: a writable folder);
    hint: what to do about a store that does not."""
    scheme = urlparse(uri).scheme
    if "\x00" in uri:  # no path or URL holds one; MLflow spent 100 s retrying it
        raise SpecError(f"tracking.uri {redact(uri)!r} holds a NUL character", file=file, path="tracking.uri")
    if scheme in ("http", "https"):
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        try:  # MLflow's settings of the environment: a fault there is no server's
            creds = get_default_host_creds(uri)
        except Exception as e:  # noqa: BLE001 - a boolean it reads strictly, a CA bundle with insecure TLS
            raise SpecError(f"MLflow's settings: {short(str(e), 400)}", file=file, path="tracking.uri") from None
        for name, path in (("MLFLOW_TRACKING_SERVER_CERT_PATH", creds.server_cert_path),
                           ("MLFLOW_TRACKING_CLIENT_CERT_PATH", creds.client_cert_path)):
            if isinstance(path, str) and not os.path.isfile(path):
                raise SpecError(f"${name}={short(path)} is not a file", file=file, path="tracking.uri")
        try:
            # As MLflow itself asks (its credentials, TLS settings and headers from the environment), once.
            # The status line is the answer: a body sent a byte at a time is not waited for (timeout is per read).
            r = http_request(creds, "/health", "GET", max_retries=0, backoff_factor=0, timeout=timeout,
                             raise_on_status=False, stream=True)
            r.close()
        except Exception as e:  # noqa: BLE001 - MLflow wraps every requests fault in MlflowException
            raise SpecError(f"the MLflow tracking server at {redact(uri)} does not answer ({reason(e)}); {hint}",
                            file=file, path="tracking.uri") from None
        if r.status_code != 200:
            fix = _AUTH_HINT if r.status_code in (401, 403) else hint
            raise SpecError(f"the MLflow tracking server at {redact(uri)} answers /health with HTTP "
                            f"{r.status_code}; {fix}", file=file, path="tracking.uri")
        return
    if scheme in ("", "file") and not _file_store_allowed():  # what MLflow 3 raises once the sweep has started
        raise SpecError(f"tracking.uri {redact(uri)} is a folder, which MLflow refuses (its file store is in "
                        f"maintenance mode): use sqlite:///mlflow.db (`mlflow migrate-filestore` moves an mlruns "
                        f"folder into one), or set MLFLOW_ALLOW_FILE_STORE=true", file=file, path="tracking.uri")
    try:
        _check_local(uri, scheme, file, hint)
    except (OSError, ValueError) as e:  # a name too long, a NUL byte: the path cannot be one
        raise SpecError(f"cannot write MLflow runs at {redact(uri)!r}: {type(e).__name__}: {reason(e)}; {hint}",
                        file=file, path="tracking.uri") from None


def _file_store_allowed() -> bool:
    """Whether this MLflow opens a folder store: MLflow 3 only with MLFLOW_ALLOW_FILE_STORE=true; MLflow 2
    has no such switch and always does."""
    try:
        from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
    except ImportError:
        return True
    try:
        return MLFLOW_ALLOW_FILE_STORE.get()
    except ValueError:  # MLflow reads only true/false/1/0
        raise SpecError(f"MLFLOW_ALLOW_FILE_STORE={short(os.environ.get('MLFLOW_ALLOW_FILE_STORE'))} is not "
                        f"true or false") from None


def _check_local(uri: str, scheme: str, file: str | None, hint: str) -> None:
    if scheme == "sqlite":
        if uri.lower().rstrip("/") != "sqlite:" and not uri.lower().startswith("sqlite:///"):
            raise SpecError(f"tracking.uri {redact(uri)}: an SQLite URI is sqlite:///relative/file.db or "
                            f"sqlite:////absolute/file.db", file=file, path="tracking.uri")
        path = uri[len("sqlite:///"):]
        if not path or path.startswith(":memory:"):
            raise SpecError(f"tracking.uri {redact(uri)} is a database in memory: every run would be gone when "
                            f"`tune run` ends; name a file (sqlite:///mlflow.db)", file=file, path="tracking.uri")
        target = Path(path)
        folder = target.parent
        if target.is_dir() or (target.is_file() and target.stat().st_size and not _sqlite(target)):
            raise SpecError(f"cannot write MLflow runs at {redact(uri)}: {target} is not an SQLite database; {hint}",
                            file=file, path="tracking.uri")
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


def _sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def git_commit(folder: str) -> str | None:
    """HEAD of the git repository holding folder, or None (no git, not a repository)."""
    try:
        out = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
