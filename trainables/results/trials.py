"""Ray Tune's records of a sweep's trials, read as JSON: the experiment state and each trial's folder.

Tune writes `experiment_state-<time>.json` (every trial's state as JSON, with some fields as
cloudpickled hex strings) and, per trial, `params.json` and `result.json` (one JSON line per
reported result). Only the JSON is read; the pickled fields are left alone, so a sweep folder
from anywhere can be read without running code from it.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from trainables.core.numbers import finite
from trainables.results.storage import filesystem, join, names_in, read_in

STATE_GLOB = "experiment_state-"  # experiment_state-<date>.json: the newest name is the newest state
RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
ERROR_FILE = "error.txt"


def _mapping(v: Any) -> dict[str, Any]:
    """v where it is a mapping (with text keys), else empty: a damaged file is read as far as it holds."""
    return {str(k): x for k, x in v.items()} if isinstance(v, dict) else {}


def flat(result: Any, *, depth: int = 16) -> dict[str, Any]:
    """A result as Ray Tune names its values for the searcher and the scheduler: a nested mapping's as
    `outer/inner` (`tune.report({"val": {"acc": a}})` is `metric: val/acc`); its config left out. Tune's
    callbacks and files hold it nested. (Ray's flatten_dict would import Ray Tune into `tune best`.)"""
    out: dict[str, Any] = {}
    for k, v in _mapping(result).items():
        if k == "config":
            continue
        if isinstance(v, dict) and depth:
            out.update({f"{k}/{inner}": x for inner, x in flat(v, depth=depth - 1).items()})
        else:
            out[k] = v
    return out


def _plain(v: Any) -> bool:
    """Not one of Tune's cloudpickled fallbacks ({"_type": "CLOUDPICKLE_FALLBACK", ...})."""
    return not (isinstance(v, dict) and v.get("_type") == "CLOUDPICKLE_FALLBACK")


@dataclass
class TrialFiles:
    """One trial as Tune recorded it."""

    folder: "SweepFolder"
    trial_id: str
    status: str  # Tune's: TERMINATED, ERROR, PENDING, RUNNING, PAUSED
    config: dict[str, Any]
    last_result: dict[str, Any]
    dirname: str | None
    error_name: str | None = None

    @property
    def errored(self) -> bool:
        return self.status == "ERROR"

    @property
    def error_file(self) -> str | None:
        if not self.errored:
            return None
        return join(self.folder.path, self.dirname, self.error_name or ERROR_FILE) if self.dirname else None

    @functools.cached_property
    def raw_rows(self) -> list[dict[str, Any]]:
        """Every result the trial reported (result.json), as written; read once."""
        if not self.dirname:
            return []
        text = self.folder.read(f"{self.dirname}/{RESULT_FILE}")
        out = []
        for line in (text or "").splitlines():
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut short by a killed driver (or damaged)
            if isinstance(row, dict):
                out.append(row)
        return _as_restarted(out)

    def rows(self) -> list[dict[str, Any]]:
        """The results without their config and lists, nested values as `outer/inner` (one value per column). Only rows
        Tune wrote (with a training_iteration); each with a whole `epoch` (its iteration where it has none)."""
        out = []
        for row in self.raw_rows:
            it = row.get("training_iteration")
            if not _whole(it):
                continue
            one = {k: v for k, v in flat(row).items() if not isinstance(v, (dict, list))}
            if not _whole(one.get("epoch")):
                one["epoch"] = it
            out.append(one)
        return out

    def trainable_layers(self) -> list[str]:
        """The layers that train, as the first epoch reported them (empty if it did not)."""
        for row in self.raw_rows:
            if isinstance(row.get("trainable_layers"), list):
                return [str(x) for x in row["trainable_layers"]]
        return []

    def history(self):
        """The results as a pandas DataFrame (one row per epoch), or None without any."""
        import pandas as pd

        rows = self.rows()
        if not rows:
            return None
        frame = pd.DataFrame(rows)
        for col in frame.columns:  # a column of numbers holding a stray text (a damaged file): that one is NaN
            values = frame[col]
            if values.map(_real).any() and not values.map(_real).all():
                frame[col] = pd.to_numeric(values.where(values.map(_real)), errors="coerce")
        return frame


def _one_line(v: Any) -> str:
    """A trial id as Ray writes them (letters, digits, _ . : -), anything else as ?: a damaged file's line
    breaks would inject lines into `tune best`'s YAML, its "$" start TeX in the figures. At most 100."""
    return re.sub(r"[^\w.:-]", "?", str(v))[:100]


def _inside(name: Any) -> bool:
    """A name in the sweep folder (a damaged state's "../../elsewhere" would read another folder's files)."""
    return isinstance(name, str) and bool(name) and not name.startswith("/") and ".." not in name.split("/")


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**53


def _real(v: Any) -> bool:
    return finite(v) is not None


def _as_restarted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history as it stands: a trial restored from a checkpoint older than its last result (it
    failed, or the sweep was resumed, between checkpoints) reports those epochs again, and the rows
    it reports again replace the first ones."""
    out: list[dict[str, Any]] = []
    for row in rows:
        it = row.get("training_iteration")
        if isinstance(it, int):
            while out and isinstance(out[-1].get("training_iteration"), int) and out[-1]["training_iteration"] >= it:
                out.pop()
        out.append(row)
    return out


class SweepFolder:
    """A sweep folder's Tune records."""

    def __init__(self, path: str):
        self.path = path
        self.fs, self.root = filesystem(path)

    def read(self, relative: str) -> str | None:
        return read_in(self.fs, f"{self.root.rstrip('/')}/{relative}")

    def _names(self, kind: str = "Directory") -> list[tuple[str, bool]]:
        """(name, is of that kind: a folder, or a regular file) of what the sweep folder holds."""
        return [(name, k == kind) for name, k, _ in names_in(self.fs, self.root)]

    def state_files(self) -> list[str]:
        """Tune's experiment states, oldest first: regular files only (a FIFO or a folder of that name, in a
        damaged folder, would hide the state before it)."""
        return sorted(n for n, is_file in self._names("File") if is_file and n.startswith(STATE_GLOB)
                      and n.endswith(".json"))

    def trials(self) -> list[TrialFiles]:
        """The trials of the newest experiment state; without one (a driver killed before its first
        snapshot), the trial folders that hold results."""
        states = self.state_files()
        if states:
            state = json.loads(self.read(states[-1]) or "{}")
            return self._from_state(state if isinstance(state, dict) else {})
        return self._from_folders()

    def _from_state(self, state: dict[str, Any]) -> list[TrialFiles]:
        out = []
        for entry in state["trial_data"] if isinstance(state.get("trial_data"), list) else []:
            trial, meta = (_mapping(json.loads(x) if isinstance(x, str) else x) for x in (list(entry) + [{}, {}])[:2])
            if "trial_id" not in trial:
                continue  # not a trial Tune wrote
            config, last = _mapping(trial.get("config")), _mapping(meta.get("last_result"))
            dirname = trial.get("relative_logdir") or trial.get("custom_dirname")
            error_name = meta.get("error_filename")
            out.append(TrialFiles(self, _one_line(trial["trial_id"]), str(trial.get("status", "PENDING")),
                                  {k: v for k, v in config.items() if _plain(v)},
                                  flat(last),
                                  dirname if _inside(dirname) else None,
                                  error_name if _inside(error_name) else None))
        return out

    def _from_folders(self) -> list[TrialFiles]:
        out = []
        for name, is_dir in sorted(self._names()):
            params = self.read(f"{name}/{PARAMS_FILE}") if is_dir else None
            if params is None:
                continue
            config = _mapping(json.loads(params))
            errored = self.read(f"{name}/{ERROR_FILE}") is not None
            t = TrialFiles(self, name.removeprefix("trial_"), "ERROR" if errored else "TERMINATED",
                           config, {}, name)
            rows = t.rows()
            t.last_result = rows[-1] if rows else {}
            t.trial_id = _one_line(t.last_result.get("trial_id", t.trial_id))
            out.append(t)
        return out
