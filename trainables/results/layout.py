"""The sweep folder's layout: where sweeps live, the names of the files we keep there, atomic writes.

A sweep folder is `<storage>/<name>/`. Ray Tune owns its experiment state and trial folders;
this module owns everything trainables adds beside them. Every write here is atomic (a
temporary file renamed over the old one), so a command killed mid-write leaves the previous
version, never half a file. On remote storage (s3://, gs://) only Ray writes the folder.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from trainables.core.numbers import finite
from trainables.errors import SpecError, redact
from trainables.results.storage import MAX_READ, is_remote, join, names, read_text, write_text
from trainables.spec.schema import Spec

DEFAULT_STORAGE = "results"
SPEC_FILE = "spec.yaml"  # the resolved spec, kept beside Ray's experiment state
RUN_FILE = "mlflow_run.json"  # which MLflow parent run is this sweep's
RETRAIN_FILE = "retrain.json"  # the retrained best model's record ...
MODEL_FILE = "best_model.pt"  # ... its weights (a state_dict) ...
MODEL_DIR = "best_model"  # ... and the model as an MLflow model folder (mlflow.pytorch.load_model takes it)
STUDY_FILE = "optuna.db"  # the optuna search's study (SQLite): `optuna-dashboard sqlite:///<sweep>/optuna.db`
TUNER_FILE = "tuner.pkl"  # Ray Tune's: a sweep's Tuner, pickled (never read here: only its presence)
SKIPPED_FILE = "skipped.jsonl"  # configurations never trained: they violate `constraints:` (one JSON line each)


def storage_root(storage: str | None) -> str:
    """Where experiments live: a URI (s3://, gs://, ...) as given, a local path made absolute."""
    storage = storage or os.environ.get("TRAINABLES_STORAGE") or DEFAULT_STORAGE
    return storage if is_remote(storage) else str(Path(storage).expanduser().resolve())


def experiment_dir(spec: Spec, storage: str | None) -> str:
    return join(storage_root(storage), spec.name)


def study_url(sweep_path: str) -> str | None:
    """The SQLite URL of the sweep's Optuna study; None on remote storage (the study stays in memory)."""
    return None if is_remote(sweep_path) else f"sqlite:///{Path(sweep_path).resolve() / STUDY_FILE}"


def record_skipped(sweep_path: str | None, config: dict[str, Any], violations: list[float]) -> None:
    """A configuration the constraints kept from training, appended to the sweep's skipped.jsonl (a line
    at a time: a kill mid-write costs at most that line, which the reader leaves out)."""
    if not sweep_path or is_remote(sweep_path):
        return
    Path(sweep_path).mkdir(parents=True, exist_ok=True)
    with open(Path(sweep_path) / SKIPPED_FILE, "a") as f:
        f.write(json.dumps({"config": config, "violations": violations}, default=str) + "\n")


def read_skipped(sweep_path: str) -> list[dict[str, Any]]:
    """The configurations the constraints skipped (none on remote storage, or before any)."""
    if is_remote(sweep_path):
        return []
    out = []
    for line in (read_small(Path(sweep_path) / SKIPPED_FILE) or "").splitlines():
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(entry, dict) and isinstance(entry.get("config"), dict) and isinstance(
                entry.get("violations"), list) and all(finite(v) is not None for v in entry["violations"]):
            out.append(entry)
    return out


def read_small(path: Path) -> str | None:
    """The text of a regular file of at most MAX_READ bytes; None otherwise (absent, unreadable, a FIFO
    that would block the read forever, /dev/zero behind a link that would fill the memory)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_READ:
            return None
        with open(path, "rb") as f:
            return f.read(MAX_READ).decode("utf-8", errors="replace")
    except OSError:
        return None


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to path through a temporary file renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a write that failed (a full disk) leaves no half file behind


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2))


def read_json(path: Path) -> Any:
    """The JSON at path, or None when it is absent or unreadable."""
    text = read_small(path)
    try:
        return None if text is None else json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past Python's stack
        return None


def check_fresh(spec: Spec, path: str) -> None:
    """A new sweep never writes into an existing one's folder. A folder without Ray Tune's state (a start
    that ended before any trial, leaving only our own files) holds no sweep yet. Remote storage is asked
    (a SpecError when it does not answer)."""
    if not is_remote(path) and (Path(path).exists() or Path(path).is_symlink()) and not Path(path).is_dir():
        raise SpecError(f"{path} is there and is not a folder (a file, or a link to none): move it away, or start "
                        f"the sweep under another name with -o name={spec.name}-2", file=spec.source)
    if holds_sweep(path):
        raise SpecError(f"{redact(path)} already holds a sweep named {spec.name!r}: add --resume to continue it, "
                        f"or start another with -o name={spec.name}-2", file=spec.source)


def holds_sweep(path: str) -> bool:
    """Ray Tune's records are there: its state, its pickled Tuner or a trial folder (a folder of our own files
    only, or a spec.yaml beside nothing, holds no sweep)."""
    return any(_is_state(n) or n == TUNER_FILE or n.startswith("trial_") for n in _held(path))


def _held(path: str) -> dict[str, int]:
    """What the sweep folder holds, name -> size ({} when there is no such folder)."""
    if is_remote(path):
        return {name: size for name, _, size in names(path)}
    try:
        entries = list(Path(path).iterdir())
    except OSError:  # no folder there (or a file, or one we may not list)
        return {}
    return {p.name: _size(p) for p in entries}


def _size(p: Path) -> int:
    try:
        return p.lstat().st_size  # a link as itself: one that dangles or loops hides nothing else
    except OSError:
        return 0


def _is_state(name: str) -> bool:
    return name.startswith("experiment_state-") and name.endswith(".json")


def _read(path: str, name: str) -> str | None:
    """The text of a file in the sweep folder; None when absent or unreadable (remote: SpecError when the
    storage does not answer)."""
    if is_remote(path):
        return read_text(join(path, name))
    return read_small(Path(path) / name)


def read_saved_spec(path: str) -> Spec | None:
    """The spec a sweep folder keeps (read as data: nothing imported from it), None when it keeps none;
    SpecError when it is damaged."""
    from trainables.spec.load import parse_spec

    text = _read(path, SPEC_FILE)
    return None if text is None else parse_spec(text, file=redact(join(path, SPEC_FILE)), checks=False,
                                                wandb_configs=False)


# URI schemes Ray's storage (pyarrow's filesystems) takes for --storage
STORAGE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs", "file")


def check_writable(root: str) -> None:
    """SpecError unless sweeps can be written under root: a local folder (or file:// URI) that can be
    written, or a URI of a storage Ray can write to, naming its bucket. Nothing is contacted: an s3://
    URI would look its bucket's region up over the network here."""
    from urllib.parse import urlparse

    if is_remote(root):
        shown = redact(root)
        try:
            uri = urlparse(root)
        except ValueError as e:  # an unclosed [IPv6 host, ...
            raise SpecError(f"{shown} is not a storage URI ({e})", path="--storage") from None
        if uri.scheme not in STORAGE_SCHEMES:
            raise SpecError(f"{shown}: {uri.scheme or '(no scheme)'}:// is not a storage Ray can write "
                            f"sweeps to; use a folder, or one of {', '.join(s + '://' for s in STORAGE_SCHEMES)}",
                            path="--storage")
        if uri.scheme == "file":
            if uri.netloc or not uri.path.startswith("/"):
                raise SpecError(f"{shown}: a file:// URI takes an absolute path (file:///path)",
                                path="--storage")
            return check_writable(uri.path)
        if not uri.hostname:
            raise SpecError(f"{shown}: no bucket or host after {uri.scheme}://", path="--storage")
        return
    folder = Path(root)
    while not folder.exists() and folder != folder.parent:  # nothing is created: a failed command leaves no trace
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise SpecError(f"cannot write sweeps under {root}: {folder} is not a writable folder; pass --storage with "
                        f"one", path="--storage")


def save_spec(spec: Spec, path: str) -> None:
    """The resolved spec as <sweep>/spec.yaml, on remote storage too (what `tune best`, `tune report`,
    --resume and a later sweep's warm_start read back)."""
    from trainables.spec.reader import dump

    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=False)
    # No credentials in the folder: a tracking URI's password comes from the spec or the environment. Written
    # as the spec reader reads (YAML 1.2 numbers: the text "09" quoted), so it reads back the same.
    text = redact(dump(data))
    if is_remote(path):
        return write_text(join(path, SPEC_FILE), text)
    Path(path).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path) / SPEC_FILE, text)


def sweep_arg(path: str, name: str) -> str:
    """How `tune best` and `tune report` name the sweep at path: its name where that finds it (the default
    storage), else its folder or URI (credentials elided)."""
    import shlex

    return name if path == join(storage_root(None), name) else shlex.quote(redact(path))


def read_run_file(sweep_path: str) -> dict[str, Any]:
    """<sweep>/mlflow_run.json ({} if absent or unreadable, or remote storage that does not answer)."""
    try:
        text = _read(sweep_path, RUN_FILE)
        data = json.loads(text) if text is not None else None
    except (SpecError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def write_run_file(sweep_path: str, data: dict[str, Any]) -> None:
    if is_remote(sweep_path):
        try:
            write_text(join(sweep_path, RUN_FILE), json.dumps(data, indent=2))
        except SpecError:
            pass  # the parent run is also found by its sweep_path tag
        return
    Path(sweep_path).mkdir(parents=True, exist_ok=True)
    write_json(Path(sweep_path) / RUN_FILE, data)


# ---- --resume: the saved state must be there, and the spec the same ---------------------------

# Sections a resumed sweep may change: where it is reviewed and what happens after the trials.
RESUMABLE_CHANGES = ("description", "tracking", "final")


def check_resumable(spec: Spec, path: str) -> None:
    """SpecError (nothing changed) unless `path` holds a sweep that --resume can continue with this spec."""
    hint = f"run without --resume to start a new sweep (-o name={spec.name}-2 keeps this folder as it is)"
    try:
        saved = read_saved_spec(path)
    except SpecError as e:
        if e.path == "--storage":  # the storage did not answer: not a damaged file
            raise
        raise SpecError(f"cannot resume: the saved {SPEC_FILE} is damaged ({e.message}); nothing was changed",
                        file=f"{redact(path)}/{SPEC_FILE}") from None
    if saved is None:
        raise SpecError(f"nothing to resume at {redact(path)}: no sweep was saved there; {hint}", file=spec.source)
    held = _held(path)
    states = sorted(n for n in held if _is_state(n) and (is_remote(path) or (Path(path) / n).is_file()))
    try:
        state = json.loads(_read(path, states[-1]) or "null") if states else None
    except (ValueError, RecursionError):
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("trial_data"), list) or not held.get(TUNER_FILE):
        what = "missing" if not states else "damaged"
        raise SpecError(f"cannot resume {redact(path)}: Ray Tune's saved state is {what} (experiment_state-*.json, "
                        f"{TUNER_FILE}); nothing was changed. `tune report {redact(path)}` still reads what the "
                        f"trials recorded; {hint}", file=spec.source)
    changed = spec_changes(saved, spec)
    if changed:
        raise SpecError(f"cannot resume with a different spec: {', '.join(changed[:10])}"
                        f"{' ...' if len(changed) > 10 else ''} changed since the sweep started (only "
                        f"{', '.join(RESUMABLE_CHANGES)} may change on --resume); nothing was changed",
                        file=spec.source)
    studied = spec.search.algorithm == "optuna" or (spec.search.algorithm == "random" and spec.constraints)
    if not is_remote(path) and (held.get(STUDY_FILE) or studied):
        # the restored searcher asks the study for its trials: without them Ray's restore failed and hung
        why = study_missing(Path(path) / STUDY_FILE, spec.name)
        if why:
            raise SpecError(f"cannot resume {redact(path)}: the sweep's Optuna study ({STUDY_FILE}) {why}; nothing "
                            f"was changed. `tune report` still reads what the trials recorded; put the file back, or "
                            f"start a new sweep that learns from this one's trials: -o name={spec.name}-2 -o "
                            f"search.warm_start=[{spec.name}]", file=spec.source)


def study_missing(db: Path, name: str) -> str | None:
    """Why `db` holds no Optuna study `name` (read-only, nothing created), or None when it does."""
    import sqlite3

    if not db.exists() and not db.is_symlink():
        return "is missing"
    if not is_sqlite(db):
        return "is not an SQLite database (damaged?)"
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = con.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error as e:
        return f"cannot be read ({e})"
    return None if found else f"holds no study named {name!r}"


def is_sqlite(path: Path) -> bool:
    """A regular file that opens as an SQLite database (its 16-byte header)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def spec_changes(saved: Spec, spec: Spec) -> list[str]:
    """The dotted keys whose values differ between two specs, outside RESUMABLE_CHANGES."""
    a, b = _flat(saved.model_dump(mode="json", by_alias=True)), _flat(spec.model_dump(mode="json", by_alias=True))
    keys = sorted(set(a) | set(b))
    return [k for k in keys if k.split(".")[0] not in RESUMABLE_CHANGES and a.get(k, _ABSENT) != b.get(k, _ABSENT)]


_ABSENT = object()


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}
