"""MLflow review of a sweep (design §7): one parent run per sweep, one nested child run per trial.

Everything is logged from the driver. `Tracker.callback` is a ray.tune.Callback that turns
trial events into operations; one sender thread delivers them in order through MlflowClient
(metrics batched with log_batch, step = epoch). What a tracking fault refuses stays queued
and is retried until it arrives; nothing raises into Ray, so training never waits for
MLflow. At the end `sync` compares the runs with the sweep's own results folder and queues
whatever is missing, so epochs that a dead driver never sent arrive on `tune run --resume`.

Idempotent by construction: the parent is found again by its `sweep_path` tag (and
<sweep>/mlflow_run.json), a child by its `trial_id` tag under the parent, and a child only
receives epochs above the highest step MLflow already holds for it.
"""
from __future__ import annotations

import collections
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

from trainables.errors import SpecError
from trainables.spec import Spec

RUN_FILE = "mlflow_run.json"  # in the sweep folder: which parent run is this sweep's
DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow's own default, made absolute where the sweep starts
SWEEP_TAG = "sweep_path"  # parent: the sweep folder (how --resume finds the parent again)
TRIAL_TAG = "trial_id"  # child: Ray's trial id (how --resume finds the child again)
PARENT_TAG = "mlflow.parentRunId"  # what makes a run nested in `mlflow ui`
FLUSH_RESULTS = 10  # a child's buffered epochs are sent after this many results ...
FLUSH_SECONDS = 10.0  # ... or this many seconds, and always when the trial ends
WAIT_ENV = "TRAINABLES_MLFLOW_WAIT"  # seconds the end of a sweep waits for an absent server (default 300)

# What Ray adds to every result: bookkeeping of the run, not measurements of the model.
RAY_KEYS = frozenset({
    "training_iteration", "epoch", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "timesteps_since_restore", "timesteps_total", "timesteps_this_iter",
    "episodes_total", "episodes_this_iter", "timestamp", "date", "pid", "hostname", "node_ip",
    "trial_id", "experiment_id", "experiment_tag", "config", "done", "should_checkpoint",
    "checkpoint_dir_name", "warmup_time", "__duplicate__", "__trial_info__", "_metric", "diverged",
    "gpu_id",  # the classifier's GPU (Ray's id on the node): a tag of the child run, not a metric
})
# MLflow error codes that no retry will fix: the operation is dropped with a warning.
PERMANENT = frozenset({
    "BAD_REQUEST", "INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST", "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS", "INVALID_STATE", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
    "UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED", "FEATURE_DISABLED", "ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED",
})


# ---- what is logged ---------------------------------------------------------------------

def metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    """The model's numeric metrics in a Ray result (or a history row): no Ray internals, no config."""
    out = {}
    for k, v in result.items():
        if k in RAY_KEYS or k.startswith("config/") or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out[k] = float(v)
    return out


def step_of(result: Mapping[str, Any]) -> int | None:
    """The epoch a result belongs to (the classifier reports `epoch`; others: Ray's iteration)."""
    v = result.get("epoch", result.get("training_iteration"))
    try:
        return int(v) if v is not None and math.isfinite(float(v)) else None
    except (TypeError, ValueError):
        return None


def param_value(v: Any) -> str:
    """A config value as an MLflow param: lists and mappings as JSON, the rest as text."""
    return json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)


# ---- where MLflow is --------------------------------------------------------------------

def resolve_uri(uri: str | None) -> str:
    """tracking.uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db; local paths made absolute."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and not path.startswith(":memory:") and not os.path.isabs(path):
            return "sqlite:///" + os.path.abspath(path)
        return uri
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(os.path.abspath(os.path.expanduser(parsed.path))).as_uri()
    if parsed.scheme == "":
        return os.path.abspath(os.path.expanduser(uri))
    return uri


def _reason(e: BaseException) -> str:
    """A tracking error in a few words (requests' messages run to several hundred characters)."""
    text = str(e)
    for needle, short in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                          ("Name or service not known", "unknown host"), ("Failed to resolve", "unknown host"),
                          ("Connection aborted", "connection lost"), ("Connection reset", "connection lost"),
                          ("RemoteDisconnected", "connection lost"), ("Max retries exceeded", "no connection")):
        if needle in text:
            return short
    text = text.splitlines()[0] if text else type(e).__name__
    return text[:200]


def check_reachable(uri: str, *, file: str | None = None, timeout: float = 5.0) -> None:
    """Raise SpecError unless the tracking store answers (http: GET /health; sqlite/file: a writable folder)."""
    scheme = urlparse(uri).scheme
    hint = "start the server, fix tracking.uri (or $MLFLOW_TRACKING_URI), or run with -o tracking.enabled=false"
    if scheme in ("http", "https"):
        import requests

        try:
            r = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        except requests.RequestException as e:
            raise SpecError(f"the MLflow tracking server at {uri} does not answer ({_reason(e)}); {hint}",
                            file=file, path="tracking.uri") from None
        if r.status_code != 200:
            raise SpecError(f"the MLflow tracking server at {uri} answers /health with HTTP {r.status_code}; {hint}",
                            file=file, path="tracking.uri")
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
    else:
        return  # databricks, postgresql, ...: the parent run's creation is the check
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise SpecError(f"cannot write MLflow runs at {uri}: {folder} is not a writable folder; {hint}",
                        file=file, path="tracking.uri")
    if target.is_file() and not os.access(target, os.W_OK):
        raise SpecError(f"cannot write MLflow runs at {uri}: {target} is read-only; {hint}", file=file, path="tracking.uri")


def read_run_file(sweep_path: str) -> dict[str, Any]:
    """<sweep>/mlflow_run.json ({} if absent or unreadable)."""
    try:
        return json.loads((Path(sweep_path) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_run_file(sweep_path: str, data: dict[str, Any]) -> None:
    if "://" in sweep_path:
        return  # remote storage: the parent is found by its sweep_path tag instead
    Path(sweep_path).mkdir(parents=True, exist_ok=True)
    tmp = Path(sweep_path) / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(Path(sweep_path) / RUN_FILE)


def _git_commit(folder: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _is_transient(e: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(e, MlflowException):
        return e.error_code not in PERMANENT
    return isinstance(e, (OSError, TimeoutError)) or type(e).__module__.split(".")[0] in ("requests", "urllib3", "sqlalchemy")


# ---- the sender: one thread, operations in order, retried until they arrive -------------

@dataclass
class _Op:
    what: str
    fn: Callable[[], None]
    attempts: int = 0


class _Sender:
    """Runs queued operations in order on one thread. A failed operation stays at the head and
    is retried with backoff (a tracking server that went away holds the queue until it is back);
    an error no retry can fix drops it with a warning. Never raises to the caller."""

    MAX_DELAY = 10.0

    def __init__(self, say: Callable[[str], None], uri: str, healthy: Callable[[], bool]):
        self._say, self._uri, self._healthy = say, uri, healthy
        self._ops: collections.deque[_Op] = collections.deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False
        self.failing_since: float | None = None
        self.dropped = 0
        self.sent = 0

    def submit(self, what: str, fn: Callable[[], None]) -> None:
        with self._cv:
            self._ops.append(_Op(what, fn))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mlflow-sender", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def pending(self) -> int:
        with self._cv:
            return len(self._ops)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued operation has been sent (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._ops:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 1.0))
        return True

    def _run(self) -> None:
        delay = 0.5
        while True:
            with self._cv:
                while not self._ops:
                    self._cv.wait()
                op = self._ops[0]
            try:
                op.attempts += 1
                op.fn()
            except Exception as e:  # noqa: BLE001 - a tracking fault must never end the sweep
                if not _is_transient(e) or (op.attempts >= 8 and self._healthy()):
                    self._say(f"MLflow refused {op.what}: {_reason(e)} (not retried)")
                    self.dropped += 1
                    self._pop()
                    continue
                if self.failing_since is None:
                    self.failing_since = time.time()
                    self._say(f"MLflow at {self._uri} did not take {op.what} ({_reason(e)}); training goes on, "
                              f"{self.pending()} operation(s) kept and retried until it answers")
                time.sleep(delay)
                delay = min(delay * 2, self.MAX_DELAY)
                continue
            self.sent += 1
            if self.failing_since is not None:
                self._say(f"MLflow at {self._uri} answers again after {time.time() - self.failing_since:.0f}s; "
                          f"sending the {self.pending() - 1} operation(s) kept meanwhile")
                self.failing_since = None
            delay = 0.5
            self._pop()

    def _pop(self) -> None:
        with self._cv:
            self._ops.popleft()
            self._cv.notify_all()


# ---- per-trial state on the driver ------------------------------------------------------

@dataclass
class _Child:
    trial_id: str
    run_id: str | None = None
    sent_step: int | None = None  # the highest step MLflow holds for this run (None: not known yet)
    queued_step: int = 0  # the highest step buffered in this process (re-reported epochs are dropped)
    buffer: list = field(default_factory=list)  # mlflow Metric entities not yet queued
    results: int = 0
    last_flush: float = field(default_factory=time.monotonic)
    opened: bool = False  # its open operation is queued
    params_logged: bool = False
    node_tagged: bool = False
    closed_as: str | None = None


# ---- the tracker ------------------------------------------------------------------------

_LIVE: dict[str, "Tracker"] = {}  # sweep path -> the tracker of the sweep running in this process


class Tracker:
    """The MLflow side of one sweep: check, start (or find) the parent run, follow the trials, finish."""

    def __init__(self, spec: Spec, sweep_path: str, *, resume: bool = False, stream=None):
        self.spec, self.path, self.resume = spec, sweep_path, resume
        self.uri = resolve_uri(spec.tracking.uri)
        self.stream = stream or sys.stderr
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self._client = None
        self._known: dict[str, str] = {}  # trial id -> child run id found under the parent
        self._children: dict[str, _Child] = {}
        self._sender = _Sender(self._say, self.uri, self._answers)
        self._warned: set[str] = set()
        self.callback = make_callback(self)
        # The REST client's own retries would hold the sender for minutes: it retries instead.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # one line per run ended: too many
        _LIVE[sweep_path] = self  # what a pickled callback (tuner.pkl, on --resume) resolves to

    # -- set-up --

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def check(self) -> None:
        """SpecError (exit 2) unless the tracking store answers: called before any trial starts."""
        check_reachable(self.uri, file=self.spec.source)

    def _answers(self) -> bool:
        try:
            check_reachable(self.uri, timeout=3.0)
            return True
        except SpecError:
            return False

    def start(self) -> str:
        """Find (on --resume) or create the parent run; returns its id. SpecError if MLflow refuses."""
        try:
            self.experiment_id = self._experiment()
            parent = self._find_parent() if self.resume else None
            if parent is not None:
                self.client.update_run(parent, status="RUNNING")
                self._known = self._find_children(parent)
            else:
                parent = self.client.create_run(self.experiment_id, run_name=self.spec.name,
                                                tags=self._parent_tags()).info.run_id
        except SpecError:
            raise
        except Exception as e:  # noqa: BLE001 - any MLflow fault here stops the sweep before it starts
            raise SpecError(f"cannot start the sweep's MLflow run at {self.uri}: {_reason(e)}",
                            file=self.spec.source, path="tracking.uri") from None
        self.parent_id = parent
        info = {**read_run_file(self.path), "tracking_uri": self.uri, "experiment": self.spec.experiment,
                "experiment_id": self.experiment_id, "run_id": parent}
        _write_run_file(self.path, info)
        return parent

    def where(self) -> str:
        """Where to review the sweep: two lines for `tune run` to print."""
        head = f"mlflow: {self.uri}  experiment {self.spec.experiment!r}, parent run {self.parent_id}"
        if urlparse(self.uri).scheme in ("http", "https"):
            return f"{head}\nmlflow: {self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.parent_id}"
        return f"{head}\nmlflow: review with `mlflow ui --backend-store-uri {self.uri}`"

    def _experiment(self) -> str:
        name = self.spec.experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return self.client.create_experiment(name)
        if exp.lifecycle_stage == "deleted":
            raise SpecError(f"the MLflow experiment {name!r} at {self.uri} is deleted: restore it "
                            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or set tracking.experiment",
                            file=self.spec.source, path="tracking.experiment")
        return exp.experiment_id

    def _find_parent(self) -> str | None:
        saved = read_run_file(self.path)
        if saved.get("run_id") and saved.get("tracking_uri") == self.uri:
            try:
                run = self.client.get_run(saved["run_id"])
                if run.info.lifecycle_stage == "active" and run.info.experiment_id == self.experiment_id:
                    return run.info.run_id
            except Exception:  # noqa: BLE001 - gone: look it up by tag below
                pass
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.{SWEEP_TAG} = {_quote(self.path)}",
                                       order_by=["attributes.start_time DESC"], max_results=20)
        parents = [r for r in runs if PARENT_TAG not in r.data.tags]
        return parents[0].info.run_id if parents else None

    def _find_children(self, parent: str, trial_id: str | None = None) -> dict[str, str]:
        query = f"tags.{PARENT_TAG} = {_quote(parent)}"
        if trial_id is not None:
            query += f" and tags.{TRIAL_TAG} = {_quote(trial_id)}"
        found: dict[str, str] = {}
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1000,
                                           order_by=["attributes.start_time ASC"], page_token=token)
            for r in page:
                found.setdefault(r.data.tags.get(TRIAL_TAG, ""), r.info.run_id)
            token = page.token
            if not token:
                return found

    def _parent_tags(self) -> dict[str, str]:
        from trainables import __version__

        s = self.spec
        folder = str(Path(s.source).resolve().parent) if s.source else os.getcwd()
        # The spec's repository, else the current directory's, else the one this package runs from.
        commit = _git_commit(folder) or _git_commit(os.getcwd()) or _git_commit(str(Path(__file__).resolve().parent))
        tags = {
            SWEEP_TAG: self.path, "sweep_name": s.name, "spec_hash": s.text_hash or "",
            "spec_file": str(Path(s.source).resolve()) if s.source else "",
            "search_algorithm": s.search.algorithm, "scheduler": s.scheduler.name, "metric": s.metric, "mode": s.mode,
            "git_commit": commit or "unknown", "package_version": __version__, "mlflow.source.name": "tune run",
        }
        if commit:
            tags["mlflow.source.git.commit"] = commit
        if s.description:
            tags["mlflow.note.content"] = s.description
        return tags

    def log_spec(self) -> None:
        """The sweep's settings as the parent's params; the spec file (and the resolved spec.yaml) as artifacts."""
        from mlflow.entities import Param

        s = self.spec
        params = {"dataset": s.dataset.name, "epochs": s.epochs, "num_samples": s.num_samples, "metric": s.metric,
                  "mode": s.mode, "search_algorithm": s.search.algorithm, "scheduler": s.scheduler.name,
                  "searched": ",".join(s.searched)}
        params.update({k: p.value for k, p in s.space.items() if not p.searched and k not in params})
        batch = [Param(k, param_value(v)[:6000]) for k, v in params.items()]
        parent = self.parent_id
        self._submit("the sweep's parameters", lambda: self.client.log_batch(parent, params=batch))
        files = [f for f in (s.source, str(Path(self.path) / "spec.yaml")) if f and "://" not in f and Path(f).is_file()]
        for f in files:
            self._submit(f"the spec {Path(f).name}", lambda f=f: self.client.log_artifact(parent, f, "spec"))

    # -- trials (called from the Ray callback on the driver) --

    def _child(self, trial_id: str) -> _Child:
        child = self._children.get(trial_id)
        if child is None:
            child = self._children[trial_id] = _Child(trial_id)
        return child

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        child = self._child(trial_id)
        child.opened, child.node_tagged = True, False
        params = {k: v for k, v in config.items() if v is not None}
        self._submit(f"the run of trial {trial_id}", lambda: self._open(child, params, running=True))

    def trial_result(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        if result.get("__duplicate__"):
            return
        step = step_of(result)
        child = self._child(trial_id)
        if not child.opened:
            self.trial_started(trial_id, config)
        if step is None or step <= child.queued_step:
            return  # an epoch reported again after a restore: MLflow already has (or will have) it
        self._buffer(child, step, metrics_of(result), result.get("timestamp"))
        child.results += 1
        if not child.node_tagged:
            child.node_tagged = True
            tags = _node_tags(result)
            self._submit(f"the node of trial {trial_id}", lambda: self._tag(child, tags))
        if child.results >= FLUSH_RESULTS or time.monotonic() - child.last_flush >= FLUSH_SECONDS:
            self._flush(child)

    def trial_ended(self, trial_id: str, status: str, error: str | None = None, error_file: str | None = None) -> None:
        child = self._child(trial_id)
        self._flush(child)
        if child.closed_as == status:
            return
        child.closed_as = status
        self._submit(f"the end of trial {trial_id}", lambda: self._close(child, status, error, error_file))

    def tick(self) -> None:
        """Send what slow trials have buffered for a while."""
        now = time.monotonic()
        for child in self._children.values():
            if child.buffer and now - child.last_flush >= FLUSH_SECONDS:
                self._flush(child)

    def flush(self) -> None:
        for child in self._children.values():
            self._flush(child)

    def _buffer(self, child: _Child, step: int, metrics: dict[str, float], timestamp: Any) -> None:
        from mlflow.entities import Metric

        # Ray's timestamp (seconds) when there is one: the same epoch sent twice is then the
        # same row, which MLflow stores once.
        ts = int(float(timestamp) * 1000) if isinstance(timestamp, (int, float)) and math.isfinite(timestamp) else int(time.time() * 1000)
        child.buffer.extend(Metric(k, v, ts, step) for k, v in metrics.items())
        child.queued_step = max(child.queued_step, step)

    def _flush(self, child: _Child) -> None:
        child.results, child.last_flush = 0, time.monotonic()
        if not child.buffer:
            return
        batch, child.buffer = child.buffer, []
        steps = sorted({m.step for m in batch})
        what = f"epoch{'s' if len(steps) > 1 else ''} {steps[0]}{'-' + str(steps[-1]) if len(steps) > 1 else ''} of trial {child.trial_id}"
        self._submit(what, lambda: self._send_metrics(child, batch))

    # -- operations (run on the sender thread) --

    def _open(self, child: _Child, params: Mapping[str, Any] | None, *, running: bool) -> None:
        from mlflow.entities import Param, RunTag

        c = self.client
        if child.run_id is None:
            run_id = self._known.get(child.trial_id) or self._find_children(self.parent_id, child.trial_id).get(child.trial_id)
            if run_id is None:
                run_id = c.create_run(self.experiment_id, run_name=f"trial_{child.trial_id}", tags={
                    PARENT_TAG: self.parent_id, TRIAL_TAG: child.trial_id, "status": "running", "sweep_name": self.spec.name,
                }).info.run_id
                child.sent_step = 0
            child.run_id = run_id
        if child.sent_step is None:
            child.sent_step = self._last_step(child.run_id)
        if running:
            c.update_run(child.run_id, status="RUNNING")
            c.log_batch(child.run_id, tags=[RunTag("status", "running")])
            child.closed_as = None
        if params and not child.params_logged:
            c.log_batch(child.run_id, params=[Param(k, param_value(v)[:6000]) for k, v in params.items()])
            child.params_logged = True

    def _last_step(self, run_id: str) -> int:
        c = self.client
        keys = list(c.get_run(run_id).data.metrics)
        key = self.spec.metric if self.spec.metric in keys else (keys[0] if keys else None)
        if key is None:
            return 0
        return max((m.step for m in c.get_metric_history(run_id, key)), default=0)

    def _ensure_open(self, child: _Child) -> None:
        if child.run_id is None or child.sent_step is None:
            self._open(child, None, running=False)

    def _send_metrics(self, child: _Child, batch: list) -> None:
        self._ensure_open(child)
        fresh = [m for m in batch if m.step > child.sent_step]
        if fresh:
            self.client.log_batch(child.run_id, metrics=fresh)
            child.sent_step = max(m.step for m in fresh)

    def _tag(self, child: _Child, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self._ensure_open(child)
        if tags:
            self.client.log_batch(child.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def _close(self, child: _Child, status: str, error: str | None, error_file: str | None) -> None:
        from mlflow.entities import RunTag

        self._ensure_open(child)
        tags = [RunTag("status", status)] + ([RunTag("error", error[:5000])] if error else [])
        self.client.log_batch(child.run_id, tags=tags)
        if error_file and Path(error_file).is_file():
            self.client.log_artifact(child.run_id, error_file)
        self.client.set_terminated(child.run_id, "FAILED" if status == "errored" else "FINISHED")

    # -- after the sweep --

    def sync(self, sweep, *, close: bool = True) -> None:
        """Queue whatever MLflow lacks of the sweep's own results: runs, epochs, node and (close:
        the sweep finished) each trial's final status."""
        for t in sweep.trials:
            child = self._child(t.trial_id)
            if not child.opened:
                child.opened = True
                self._submit(f"the run of trial {t.trial_id}", lambda c=child, p=dict(t.config): self._open(c, p, running=False))
            history = t.history
            if history is not None and len(history):
                rows = history.to_dict("records")
                for row in rows:
                    step = step_of(row)
                    if step is not None:
                        clean = {k: v for k, v in metrics_of(row).items() if not math.isnan(v)}  # NaN: absent that epoch
                        self._buffer(child, step, clean, row.get("timestamp"))
                self._flush(child)
            if not child.node_tagged and t.last:
                child.node_tagged = True
                tags = _node_tags(t.last)
                self._submit(f"the node of trial {t.trial_id}", lambda c=child, g=tags: self._tag(c, g))
            if close:
                self.trial_ended(t.trial_id, t.status, error=_error_text(t.error), error_file=t.error)

    def log_report(self, folder: str | os.PathLike) -> None:
        parent, folder = self.parent_id, str(folder)
        self._submit("the report", lambda: self.client.log_artifacts(parent, folder, "report"))

    def log_retrained(self, info: dict[str, Any], model, example, on_logged: Callable[[dict[str, Any]], None]) -> None:
        """test_acc/test_loss (and the retrain's epochs) on the parent; the model logged, and registered
        under the experiment's name when tracking.register; on_logged(model info) once it arrived."""
        import mlflow.models  # noqa: F401 - imported here, not on the sender thread: see below
        import mlflow.pytorch  # noqa: F401
        from mlflow.entities import Metric, RunTag

        try:  # mlflow imports IPython when it is installed; half-imported on the sender thread it
            import IPython  # noqa: F401  breaks matplotlib, which the report imports meanwhile
        except ImportError:
            pass
        parent, now = self.parent_id, int(time.time() * 1000)
        metrics = [Metric("test_acc", info["test_acc"], now, 0), Metric("test_loss", info["test_loss"], now, 0)]
        for row in info.get("history", []):
            metrics += [Metric(f"retrain_{k}", v, now, int(row["epoch"])) for k, v in metrics_of(row).items()]
        tags = [RunTag("retrained_trial_id", info["trial_id"])]
        self._submit("the retrained model's test metrics",
                     lambda: self.client.log_batch(parent, metrics=[m for m in metrics if math.isfinite(m.value)], tags=tags))
        register = self.spec.experiment if self.spec.tracking.register_model else None
        self._submit("the retrained model", lambda: on_logged(self._log_model(model, example, register)))

    def _log_model(self, model, example, register: str | None) -> dict[str, Any]:
        import mlflow
        import mlflow.pytorch
        import torch
        from mlflow.entities import RunTag
        from mlflow.models import infer_signature

        import trainables

        model = model.cpu().eval()
        with torch.no_grad():
            signature = infer_signature(example.numpy(), model(example).numpy())
        old = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(self.uri)
        try:
            info = mlflow.pytorch.log_model(
                model, name="model", run_id=self.parent_id, signature=signature, serialization_format="pickle",
                registered_model_name=register, await_registration_for=60,
                code_paths=[os.path.dirname(trainables.__file__)],  # the model's classes, to load it anywhere
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
        finally:
            mlflow.set_tracking_uri(old)  # None: back to unset
        out = {"model_uri": info.model_uri}
        tags = [RunTag("model_uri", info.model_uri)]
        if register and info.registered_model_version is not None:
            out.update(registered_model=register, registered_model_version=int(info.registered_model_version))
            tags.append(RunTag("registered_model", f"{register} v{info.registered_model_version}"))
        self.client.log_batch(self.parent_id, tags=tags)
        return out

    def finish(self, sweep, *, wall_seconds: float, status: str = "FINISHED", wait: float | None = None) -> bool:
        """Counts, best value and wall time on the parent; wait for everything to arrive. False if
        MLflow did not take it all in time (the results folder keeps it: --resume sends it)."""
        from mlflow.entities import Metric, RunTag

        saved = read_run_file(self.path)
        total = float(saved.get("wall_seconds", 0.0)) + wall_seconds
        _write_run_file(self.path, {**saved, "wall_seconds": total, "tracking_uri": self.uri, "run_id": self.parent_id,
                                    "experiment": self.spec.experiment, "experiment_id": self.experiment_id})
        if sweep is not None:
            now, counts, best = int(time.time() * 1000), sweep.counts(), sweep.best()
            values = {"trials_total": len(sweep.trials), "trials_completed": counts.get("completed", 0),
                      "trials_stopped_early": counts.get("stopped early", 0), "trials_errored": counts.get("errored", 0),
                      "wall_seconds": total}
            tags = []
            if best is not None:
                values[f"best_{self.spec.metric}"] = best.value(self.spec.metric)
                tags.append(RunTag("best_trial_id", best.trial_id))
                if self._children.get(best.trial_id) is not None:
                    tags.append(RunTag("best_trial_run", f"trial_{best.trial_id}"))
            metrics = [Metric(k, float(v), now, 0) for k, v in values.items()]
            parent = self.parent_id
            self._submit("the sweep's summary", lambda: self.client.log_batch(parent, metrics=metrics, tags=tags))
        parent = self.parent_id
        self._submit("the end of the sweep", lambda: self.client.set_terminated(parent, status))
        return self.wait(wait)

    def wait(self, timeout: float | None = None, *, quiet: bool = False) -> bool:
        """Wait until MLflow has taken every queued operation (at most `timeout`, default
        $TRAINABLES_MLFLOW_WAIT or 300 s); False if some are still queued."""
        timeout = float(os.environ.get(WAIT_ENV, 300)) if timeout is None else timeout
        if quiet and self._sender.failing_since is not None:
            return False
        if self._sender.drain(min(timeout, 10.0)):
            return True
        if not quiet:
            self._say(f"waiting up to {timeout:.0f}s for MLflow at {self.uri} to take {self._sender.pending()} queued operation(s)...")
        if self._sender.drain(max(timeout - 10.0, 0.0)):
            return True
        if quiet:
            return False
        self._say(f"MLflow at {self.uri} did not take {self._sender.pending()} operation(s) in time. Nothing is lost: the "
                  f"sweep's results folder keeps every epoch, and `tune run {self.spec.source or 'SPEC.yaml'} --resume` "
                  f"sends what is missing once the server answers.")
        return False

    def close(self) -> None:
        if _LIVE.get(self.path) is self:
            del _LIVE[self.path]

    # -- helpers --

    def _submit(self, what: str, fn: Callable[[], None]) -> None:
        self._sender.submit(what, fn)

    def _say(self, message: str) -> None:
        try:
            print(f"mlflow: {message}", file=self.stream, flush=True)
        except Exception:  # noqa: BLE001 - a closed stream must not stop the sender
            pass

    def _guard(self, hook: str, fn: Callable[[], None]) -> None:
        """Run a callback hook's work; an unexpected error is reported once, never raised into Ray."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            if hook not in self._warned:
                self._warned.add(hook)
                self._say(f"tracking error in {hook} (the sweep goes on): {type(e).__name__}: {e}")


def _node_tags(result: Mapping[str, Any]) -> dict[str, str]:
    """node: Ray's hostname (ip) of the trial's worker; gpu: the GPU id the classifier reported, or none."""
    host, ip, gpu = result.get("hostname"), result.get("node_ip"), result.get("gpu_id")
    tags = {}
    if host or ip:
        tags["node"] = f"{host} ({ip})" if host and ip and host != ip else str(host or ip)
    if isinstance(gpu, (int, float)) and not isinstance(gpu, bool) and math.isfinite(gpu):
        tags["gpu"] = str(int(gpu))
    elif isinstance(gpu, str) and gpu:
        tags["gpu"] = gpu
    else:
        tags["gpu"] = "none"
    return tags


def _error_text(error_file: str | None) -> str | None:
    """The last line of a trial's error file (the exception), or None."""
    if not error_file:
        return None
    try:
        lines = [ln for ln in Path(error_file).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "errored"
    return lines[-1].strip() if lines else "errored"


def attach_report(sweep_path: str, folder: str | os.PathLike) -> str:
    """Attach a report folder to the sweep's parent run (from <sweep>/mlflow_run.json); a line
    saying what happened. `tune report` uses it; a tracking fault is reported, not raised."""
    saved = read_run_file(sweep_path) if "://" not in sweep_path else {}
    uri, run_id = saved.get("tracking_uri"), saved.get("run_id")
    if not uri or not run_id:
        return "mlflow: this sweep has no MLflow parent run; the report is not attached"
    try:
        check_reachable(uri, timeout=5.0)
        from mlflow import MlflowClient

        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        MlflowClient(tracking_uri=uri).log_artifacts(run_id, str(folder), "report")
    except Exception as e:  # noqa: BLE001 - the report is written; attaching it is a bonus
        return f"mlflow: could not attach the report to parent run {run_id} at {uri} ({_reason(e)}); run `tune report` again later"
    return f"mlflow: attached to parent run {run_id} at {uri} (artifacts: report/)"


# ---- the Ray callback -------------------------------------------------------------------

def attach(tuner, callback) -> None:
    """Make sure a restored Tuner calls `callback`. A restored Tuner keeps the callbacks pickled in
    its tuner.pkl (ours come back as the live tracker's); a sweep started without tracking has
    none, so it is added to the restored run config."""
    run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
    if run_config is None:
        return
    callbacks = list(run_config.callbacks or [])
    if not any(c is callback for c in callbacks):
        run_config.callbacks = callbacks + [callback]


def _live_callback(sweep_path: str):
    """What a callback pickled into tuner.pkl becomes when the sweep is restored: the live
    tracker's callback in this process, or one that does nothing."""
    tracker = _LIVE.get(sweep_path)
    return tracker.callback if tracker is not None else make_callback(None)


def make_callback(tracker: Tracker | None):
    from ray.tune import Callback

    from trainables.sweep import trial_status
    from trainables.trainable import clean_config

    class MlflowCallback(Callback):
        """Driver-side: trial events -> the tracker's queue. Never raises into Ray."""

        def __init__(self, t):
            self.tracker = t

        def __reduce__(self):
            return (_live_callback, (self.tracker.path if self.tracker else "",))

        def _do(self, hook, fn):
            if self.tracker is not None:
                self.tracker._guard(hook, fn)

        def on_trial_start(self, iteration, trials, trial, **info):
            self._do("on_trial_start", lambda: self.tracker.trial_started(trial.trial_id, clean_config(trial.config)))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self._do("on_trial_result", lambda: self.tracker.trial_result(trial.trial_id, clean_config(trial.config), result))

        def on_trial_complete(self, iteration, trials, trial, **info):
            t = self.tracker
            self._do("on_trial_complete", lambda: t.trial_ended(trial.trial_id, trial_status(trial, t.spec.epochs)))

        def on_trial_error(self, iteration, trials, trial, **info):
            self._do("on_trial_error", lambda: self.tracker.trial_ended(
                trial.trial_id, "errored", error=_error_text(trial.error_file), error_file=trial.error_file))

        def on_step_end(self, iteration, trials, **info):
            self._do("on_step_end", lambda: self.tracker.tick())

        def on_experiment_end(self, trials, **info):
            self._do("on_experiment_end", lambda: self.tracker.flush())

    return MlflowCallback(tracker)
