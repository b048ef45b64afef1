"""The child runs: one nested MLflow run per trial, its epochs buffered and sent in batches, found again on --resume.

Trial events arrive on the driver (from the Ray callback, through the Tracker) and become
operations queued on the sender; the operations run on the sender thread. A child only
receives epochs above the highest step MLflow already holds for it, so sending twice is harmless.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from trainables.errors import redact
from trainables.spec.schema import Spec
from trainables.tracking.values import (
    dataset_input,
    error_text,
    metrics_of,
    mlflow_key,
    node_tags,
    param_value,
    step_of,
)

TRIAL_TAG = "trial_id"  # child: Ray's trial id (how --resume finds the child again)
PARENT_TAG = "mlflow.parentRunId"  # what makes a run nested in `mlflow ui`
FLUSH_RESULTS = 10  # a child's buffered epochs are sent after this many results ...
FLUSH_SECONDS = 10.0  # ... or this many seconds, and always when the trial ends
CONSTANTS = ("trainable_params", "total_params")  # the same every epoch: params of the run, not series
# One colour per trial in the runs table and its charts (Tableau 10 without the gold), the best in gold.
COLOURS = ("#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#B07AA1", "#FF9DA7", "#9C755F", "#BAB0AC",
           "#86BCB6", "#D37295", "#A0CBE8")
BEST_COLOUR = "#EDC948"


def quote(s: str) -> str:
    """s as a string literal of an MLflow search filter, which reads no escapes (`'o\\'brien'` matched nothing):
    in double quotes where it holds a single one (one holding both cannot be written)."""
    return f'"{s}"' if "'" in s else f"'{s}'"


def find_children(client, experiment_id: str, parent: str, trial_id: str | None = None) -> dict[str, str]:
    """trial id -> run id of the children under parent (the oldest, if a trial has several)."""
    query = f"tags.{PARENT_TAG} = {quote(parent)}"
    if trial_id is not None:
        query += f" and tags.{TRIAL_TAG} = {quote(trial_id)}"
    found: dict[str, str] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=query, max_results=1000,
                                  order_by=["attributes.start_time ASC"], page_token=token)
        for r in page:
            found.setdefault(r.data.tags.get(TRIAL_TAG, ""), r.info.run_id)
        token = page.token
        if not token:
            return found


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
    constant_lr: bool = False  # no lr schedule: lr is a param of the run, not an epoch series
    constants_logged: bool = False
    last: dict[str, float] = field(default_factory=dict)  # the latest epoch's metrics


class Trials:
    """The children of one parent run. `client` returns the tracker's MlflowClient; `submit(what, fn)`
    queues fn on the sender; `say` tells the user. `bind` names the parent once the tracker has started
    (or found) it."""

    def __init__(self, spec: Spec, client: Callable[[], Any], submit: Callable[[str, Callable[[], None]], None],
                 say: Callable[[str], None] = lambda message: None):
        self.spec, self._client, self._submit, self._say = spec, client, submit, say
        self._keys: dict[str, str] = {}  # a metric or param name -> the name MLflow has it under
        self._names: dict[str, str] = {}  # ... and back
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.known: dict[str, str] = {}  # trial id -> child run id found under the parent
        self.children: dict[str, _Child] = {}

    def bind(self, experiment_id: str, parent_id: str, known: dict[str, str]) -> None:
        self.experiment_id, self.parent_id, self.known = experiment_id, parent_id, known

    @property
    def client(self):
        return self._client()

    def key(self, name: str) -> str:
        """name as MLflow takes it, the same all sweep long; a name changed is said once, and made unlike
        any other name's (`a@b`, `a#b`: one batch with a param twice is refused whole)."""
        if name in self._keys:
            return self._keys[name]
        key = base = mlflow_key(name)
        n = 2
        while key != name and self._names.get(key, name) != name:
            key, n = f"{base[:240]}_{n}", n + 1
        self._keys[name], self._names[key] = key, name
        if key != name:
            self._say(f"{name[:80]!r} is logged as {key[:80]!r} (MLflow names hold letters, digits, spaces and "
                      f"_ - . : / only, at most 250 characters)")
        return key

    # -- trial events (on the driver) --

    def child(self, trial_id: str) -> _Child:
        child = self.children.get(trial_id)
        if child is None:
            child = self.children[trial_id] = _Child(trial_id)
        return child

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        child = self.child(trial_id)
        # closed_as is the driver's to set: reset here, not on the sender thread, which may run late
        child.opened, child.node_tagged, child.closed_as = True, False, None
        child.constant_lr = config.get("lr_schedule", "none") == "none"
        params = dict(config)  # the callback passed clean_config's: no absent conditionals
        self._submit(f"the run of trial {trial_id}", lambda: self._open(child, params, running=True))

    def trial_result(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        if result.get("__duplicate__"):
            return
        step = step_of(result, by_epoch=self.spec.trainable == "classifier")
        child = self.child(trial_id)
        if not child.opened:
            self.trial_started(trial_id, config)
        if step is None or step <= child.queued_step:
            return  # an epoch reported again after a restore: MLflow already has (or will have) it
        self._buffer(child, step, self._series(child, metrics_of(result)), result.get("timestamp"))
        child.results += 1
        if not child.node_tagged:
            child.node_tagged = True
            tags = node_tags(result)
            self._submit(f"the node of trial {trial_id}", lambda: self._tag(child, tags))
        layers = result.get("trainable_layers")
        if isinstance(layers, list):  # the first epoch's: which layers train (seed 003)
            text = "\n".join(map(str, layers)) + "\n"
            self._submit(f"the trainable layers of trial {trial_id}", lambda: self._text(child, text,
                                                                                          "trainable_layers.txt"))
        if child.results >= FLUSH_RESULTS or time.monotonic() - child.last_flush >= FLUSH_SECONDS:
            self._flush(child)

    def trial_ended(self, trial_id: str, status: str, error: str | None = None, error_file: str | None = None) -> None:
        child = self.child(trial_id)
        self._flush(child)
        if child.closed_as == status:
            return
        child.closed_as = status
        if error is None and error_file:
            error = error_text(error_file)
        self._submit(f"the end of trial {trial_id}", lambda: self._close(child, status, error, error_file))

    def tick(self) -> None:
        """Send what slow trials have buffered for a while."""
        now = time.monotonic()
        for child in self.children.values():
            if child.buffer and now - child.last_flush >= FLUSH_SECONDS:
                self._flush(child)

    def flush(self) -> None:
        for child in self.children.values():
            self._flush(child)

    def sync(self, sweep, *, close: bool = True) -> None:
        """Queue whatever MLflow lacks of the sweep's own results: runs, epochs, node and (close:
        the sweep finished) each trial's final status."""
        for t in sweep.trials:
            child = self.child(t.trial_id)
            if not child.opened:
                child.opened = True
                self._submit(f"the run of trial {t.trial_id}",
                             lambda c=child, p=dict(t.config): self._open(c, p, running=False))
            history = t.history
            if history is not None and len(history):
                for row in history.to_dict("records"):
                    step = step_of(row, by_epoch=self.spec.trainable == "classifier")
                    if step is not None:
                        # NaN in a history row: that metric was absent that epoch.
                        clean = {k: v for k, v in metrics_of(row).items() if not math.isnan(v)}
                        child.constant_lr = t.config.get("lr_schedule", "none") == "none"
                        self._buffer(child, step, self._series(child, clean), row.get("timestamp"))
                self._flush(child)
            if not child.node_tagged and t.last:
                child.node_tagged = True
                tags = node_tags(t.last)
                self._submit(f"the node of trial {t.trial_id}", lambda c=child, g=tags: self._tag(c, g))
            if close:
                self.trial_ended(t.trial_id, t.status, error_file=t.error)

    def _series(self, child: _Child, metrics: dict[str, float]) -> dict[str, float]:
        """The metrics that change epoch to epoch; the constants go once to the run's params."""
        constants = {k: metrics[k] for k in CONSTANTS if k in metrics}
        if child.constant_lr and "lr" in metrics:
            constants["lr"] = metrics["lr"]
        if constants and not child.constants_logged:
            child.constants_logged = True
            self._submit(f"the constants of trial {child.trial_id}", lambda: self._params(child, constants))
        series = {k: v for k, v in metrics.items() if k not in constants}
        child.last.update(series)
        return series

    def highlight(self, best_trial_id: str | None) -> None:
        """The best trial in gold in the runs table (the others keep their colours)."""
        child = self.children.get(best_trial_id) if best_trial_id else None
        if child is not None:
            self._submit(f"the colour of the best trial {best_trial_id}",
                         lambda: self._tag(child, {"mlflow.runColor": BEST_COLOUR, "best_trial": "true"}))

    def _buffer(self, child: _Child, step: int, metrics: dict[str, float], timestamp: Any) -> None:
        from mlflow.entities import Metric

        # Ray's timestamp (seconds) when there is one: the same epoch sent twice is then the
        # same row, which MLflow stores once.
        finite = isinstance(timestamp, (int, float)) and math.isfinite(timestamp)
        ts = int(float(timestamp) * 1000) if finite else int(time.time() * 1000)
        child.buffer.extend(Metric(self.key(k), v, ts, step) for k, v in metrics.items())
        child.queued_step = max(child.queued_step, step)

    def _flush(self, child: _Child) -> None:
        child.results, child.last_flush = 0, time.monotonic()
        if not child.buffer:
            return
        batch, child.buffer = child.buffer, []
        steps = sorted({m.step for m in batch})
        epochs = f"epochs {steps[0]}-{steps[-1]}" if len(steps) > 1 else f"epoch {steps[0]}"
        self._submit(f"{epochs} of trial {child.trial_id}", lambda: self._send_metrics(child, batch))

    # -- operations (on the sender thread) --

    def _open(self, child: _Child, params: Mapping[str, Any] | None, *, running: bool) -> None:
        from mlflow.entities import Param, RunTag

        c = self.client
        if child.run_id is None:
            # Looked up even when `known` lacks it: a create_run that reached a server which then went
            # away is retried here, and must find its run rather than make a second one.
            run_id = (self.known.get(child.trial_id)
                      or find_children(c, self.experiment_id, self.parent_id, child.trial_id).get(child.trial_id))
            if run_id is None:
                colour = COLOURS[len(self.known) % len(COLOURS)]
                note = (f"Trial `{child.trial_id}` of sweep **{self.spec.name}** "
                        f"([parent run](#/experiments/{self.experiment_id}/runs/{self.parent_id}"
                        f"?workflowType=machine_learning)).")
                run_id = c.create_run(self.experiment_id, run_name=f"trial_{child.trial_id}", tags={
                    PARENT_TAG: self.parent_id, TRIAL_TAG: child.trial_id, "status": "running",
                    "sweep_name": self.spec.name, "mlflow.runColor": colour, "mlflow.note.content": note,
                }).info.run_id
                self.known[child.trial_id] = run_id
                c.log_inputs(run_id, datasets=[dataset_input(self.spec)])
                child.sent_step = 0
            child.run_id = run_id
        if child.sent_step is None:
            child.sent_step = self._last_step(child.run_id)
        if running:
            c.update_run(child.run_id, status="RUNNING")
            c.log_batch(child.run_id, tags=[RunTag("status", "running")])
        if params and not child.params_logged:
            names = sorted(params, key=lambda k: mlflow_key(k) != k)  # names MLflow takes keep them
            c.log_batch(child.run_id, params=[Param(self.key(k), param_value(params[k])[:6000]) for k in names])
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

    def _text(self, child: _Child, text: str, name: str) -> None:
        self._ensure_open(child)
        self.client.log_text(child.run_id, text, name)

    def _params(self, child: _Child, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self._ensure_open(child)
        c = self.client
        have = c.get_run(child.run_id).data.params  # a param is written once: --resume sends it again
        whole = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in params.items()}
        keyed = {self.key(k): v for k, v in whole.items()}
        fresh = [Param(k, param_value(v)) for k, v in keyed.items() if k not in have]
        if fresh:
            c.log_batch(child.run_id, params=fresh)

    def _log_error_file(self, run_id: str, file: Path, most: int = 1 << 20) -> None:
        """The trial's error.txt as an artifact: its last MB, credentials elided (a URL in a traceback may
        hold a token)."""
        import tempfile

        with open(file, "rb") as f:
            f.seek(max(0, file.stat().st_size - most))
            text = f.read(most).decode("utf-8", errors="replace")
        with tempfile.TemporaryDirectory() as d:
            copy = Path(d) / file.name
            copy.write_text(redact(text), encoding="utf-8")
            self.client.log_artifact(run_id, str(copy))

    def _close(self, child: _Child, status: str, error: str | None, error_file: str | None) -> None:
        from mlflow.entities import Metric, RunTag

        self._ensure_open(child)
        summary = {"epochs_trained": float(max(child.queued_step, child.sent_step or 0))}
        if self.spec.metric in child.last:
            summary[self.key(f"final_{self.spec.metric}")] = child.last[self.spec.metric]
        now = int(time.time() * 1000)
        self.client.log_batch(child.run_id, metrics=[Metric(k, v, now, 0) for k, v in summary.items()])
        tags = [RunTag("status", status)] + ([RunTag("error", redact(error)[:5000])] if error else [])
        self.client.log_batch(child.run_id, tags=tags)
        if error_file and Path(error_file).is_file():
            self._log_error_file(child.run_id, Path(error_file))
        self.client.set_terminated(child.run_id, "FAILED" if status == "errored" else "FINISHED")
