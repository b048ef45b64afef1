"""The Tracker: the MLflow side of one sweep (design §7), its parent run, and the children it follows.

Everything is logged from the driver. Trial events (from the Ray callback in trainables.tune)
become operations; one sender thread delivers them in order through MlflowClient (metrics
batched with log_batch, step = epoch). What a tracking fault refuses stays queued and is
retried until it arrives; nothing raises into Ray, so training never waits for MLflow. At the
end `sync` compares the runs with the sweep's own results folder and queues whatever is
missing, so epochs that a dead driver never sent arrive on `tune run --resume`.

Idempotent by construction: the parent is found again by its `sweep_path` tag (and
<sweep>/mlflow_run.json), a child by its `trial_id` tag under the parent, and a child only
receives epochs above the highest step MLflow already holds for it.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

from trainables.errors import SpecError, env_seconds, redact
from trainables.results.layout import is_remote, read_run_file, read_skipped, write_run_file
from trainables.spec.schema import Spec
from trainables.tracking.models import queue_retrained
from trainables.tracking.sender import Sender
from trainables.tracking.server import check_reachable, git_commit, reason, resolve_uri
from trainables.tracking.trials import PARENT_TAG, Trials, find_children, quote
from trainables.tracking.values import param_value


def run_link(base: str, experiment_id: str | None, run_id: str | None) -> str:
    """A run's page in `mlflow ui`, in its "Model training" view: MLflow 3 opens a new experiment in
    its GenAI view (traces, judges) unless the link asks for the other one."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


SWEEP_TAG = "sweep_path"  # parent: the sweep folder (how --resume finds the parent again)
WAIT_ENV = "TRAINABLES_MLFLOW_WAIT"  # seconds the end of a sweep waits for an absent server (default 300)


class Tracker:
    """The MLflow side of one sweep: check, start (or find) the parent run, follow the trials, finish."""

    def __init__(self, spec: Spec, sweep_path: str, *, resume: bool = False, stream=None):
        self.spec, self.path, self.resume = spec, sweep_path, resume
        self.uri = resolve_uri(spec.tracking.uri)
        self.shown = redact(self.uri)  # what is printed and saved: never a password or a token
        self.stream = stream or sys.stderr
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self._finished = False
        self._client = None
        self._sender = Sender(self.say, self.shown, self._answers)
        self.trials = Trials(spec, lambda: self.client, self._submit, self.say)
        self._warned: set[str] = set()
        # The REST client's own retries would hold the sender for minutes: it retries instead.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # one line per run ended: too many

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
        known: dict[str, str] = {}
        try:
            self.experiment_id = self._experiment()
            parent = self._find_parent() if self.resume else None
            if parent is not None:
                self.client.update_run(parent, status="RUNNING")
                known = find_children(self.client, self.experiment_id, parent)
            else:
                parent = self.client.create_run(self.experiment_id, run_name=self.spec.name,
                                                tags=self._parent_tags()).info.run_id
        except SpecError:
            raise
        except Exception as e:  # noqa: BLE001 - any MLflow fault here stops the sweep before it starts
            raise SpecError(f"cannot start the sweep's MLflow run at {self.shown}: {reason(e)}",
                            file=self.spec.source, path="tracking.uri") from None
        self.parent_id = parent
        self.trials.bind(self.experiment_id, parent, known)
        info = {**read_run_file(self.path), "tracking_uri": self.shown, "experiment": self.spec.experiment,
                "experiment_id": self.experiment_id, "run_id": parent}
        write_run_file(self.path, info)
        return parent

    def where(self) -> list[str]:
        """Where to review the sweep: two lines for `tune run` to print."""
        head = f"mlflow: {self.shown}  experiment {self.spec.experiment!r}, parent run {self.parent_id}"
        if urlparse(self.uri).scheme in ("http", "https"):
            return [head, f"mlflow: {run_link(self.shown, self.experiment_id, self.parent_id)}"]
        return [head, f"mlflow: review with `mlflow ui --backend-store-uri {self.shown}`, then open "
                      f"{run_link('http://127.0.0.1:5000', self.experiment_id, self.parent_id)}"]

    def _experiment(self) -> str:
        name = self.spec.experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return self.client.create_experiment(name)
        if exp.lifecycle_stage == "deleted":
            raise SpecError(f"the MLflow experiment {name!r} at {self.shown} is deleted: restore it "
                            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or set "
                            f"tracking.experiment",
                            file=self.spec.source, path="tracking.experiment")
        return exp.experiment_id

    def _find_parent(self) -> str | None:
        saved = read_run_file(self.path)
        if saved.get("run_id") and saved.get("tracking_uri") == self.shown:
            try:
                run = self.client.get_run(saved["run_id"])
                if run.info.lifecycle_stage == "active" and run.info.experiment_id == self.experiment_id:
                    return run.info.run_id
            except Exception:  # noqa: BLE001 - gone: look it up by tag below
                pass
        path = redact(self.path)
        query = f"tags.sweep_name = {quote(self.spec.name)}"
        if not ("'" in path and '"' in path):  # a filter's literal cannot hold both quotes: then compared below
            query += f" and tags.{SWEEP_TAG} = {quote(path)}"
        token = None
        while True:  # newest first; its children carry the same tags, a page of them can come first
            page = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1000,
                                           order_by=["attributes.start_time DESC"], page_token=token)
            for r in page:
                if PARENT_TAG not in r.data.tags and r.data.tags.get(SWEEP_TAG) == path:
                    return r.info.run_id
            token = page.token
            if not token:
                return None

    def _parent_tags(self) -> dict[str, str]:
        from trainables import __version__

        s = self.spec
        folder = str(Path(s.source).resolve().parent) if s.source else os.getcwd()
        # The spec's repository, else the current directory's, else the one this package runs from.
        commit = git_commit(folder) or git_commit(os.getcwd()) or git_commit(str(Path(__file__).resolve().parent))
        tags = {
            SWEEP_TAG: redact(self.path), "sweep_name": s.name, "spec_hash": s.text_hash or "",
            "spec_file": str(Path(s.source).resolve()) if s.source else "",
            "search_algorithm": s.search.algorithm, "scheduler": s.scheduler.name, "metric": s.metric, "mode": s.mode,
            "git_commit": commit or "unknown", "package_version": __version__, "mlflow.source.name": "tune run",
        }
        if commit:
            tags["mlflow.source.git.commit"] = commit
        if s.description:
            tags["mlflow.note.content"] = redact(s.description)
        return tags

    def log_spec(self) -> None:
        """The sweep's settings as the parent's params; the spec file (and the resolved spec.yaml) as artifacts."""
        from mlflow.entities import Param

        s = self.spec
        params = {"dataset": s.dataset.name, "epochs": s.epochs, "num_samples": s.num_samples, "metric": s.metric,
                  "mode": s.mode, "search_algorithm": s.search.algorithm, "scheduler": s.scheduler.name,
                  "searched": ",".join(s.searched)}
        if s.multi:
            params["objectives"] = ", ".join(f"{m} {d}" for m, d in s.objectives)
        if s.constraints:
            params["constraints"] = "; ".join(s.constraints)
        params.update({k: p.value for k, p in s.space.items() if not p.searched and k not in params})
        batch = [Param(self.trials.key(k), param_value(v)[:6000]) for k, v in params.items()]
        parent = self.parent_id
        self._submit("the sweep's parameters", lambda: self.client.log_batch(parent, params=batch))
        for f in (s.source, str(Path(self.path) / "spec.yaml")):
            if not f or is_remote(f) or not Path(f).is_file():
                continue
            self._submit(f"the spec {Path(f).name}", lambda f=f: self._log_redacted(parent, Path(f), "spec"))

    def _log_redacted(self, run_id: str, file: Path, where: str) -> None:
        """A text file as an artifact, with the credentials of any URI in it elided."""
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            copy = Path(d) / file.name
            copy.write_text(redact(file.read_text(encoding="utf-8", errors="replace")), encoding="utf-8")
            self.client.log_artifact(run_id, str(copy), where)

    # -- trials (from the Ray callback, on the driver): see trainables.tracking.trials --

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        self.trials.trial_started(trial_id, config)

    def trial_result(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        self.trials.trial_result(trial_id, config, result)

    def trial_ended(self, trial_id: str, status: str, error: str | None = None, error_file: str | None = None) -> None:
        """The trial's final status; without `error`, the error is the last line of error_file."""
        self.trials.trial_ended(trial_id, status, error=error, error_file=error_file)

    def tick(self) -> None:
        """Send what slow trials have buffered for a while."""
        self.trials.tick()

    def flush(self) -> None:
        self.trials.flush()

    def sync(self, sweep, *, close: bool = True) -> None:
        """Queue whatever MLflow lacks of the sweep's own results: runs, epochs, node and (close:
        the sweep finished) each trial's final status."""
        self.trials.sync(sweep, close=close)

    # -- after the sweep --

    def log_report(self, folder: str | os.PathLike) -> None:
        parent, folder = self.parent_id, str(folder)
        self._submit("the report", lambda: self.client.log_artifacts(parent, folder, "report"))

    def log_retrained(self, info: dict[str, Any], model_folder: Callable[[], str | None],
                      on_logged: Callable[[dict[str, Any]], None]) -> None:
        """test_acc/test_loss (and the retrain's epochs) on the parent; the model (the MLflow model folder
        model_folder() gives, if any) logged, and registered under the experiment's name when tracking.register;
        on_logged(model info) once it arrived."""
        register = self.spec.experiment if self.spec.tracking.register_model else None
        queue_retrained(self._submit, self.client, uri=self.uri, parent_id=self.parent_id,
                        experiment_id=self.experiment_id, info=info, folder=model_folder(), register=register,
                        on_logged=on_logged)

    def finish(self, sweep, *, wall_seconds: float, status: str = "FINISHED", wait: float | None = None) -> bool:
        """Counts, best value and wall time on the parent; wait for everything to arrive. False if
        MLflow did not take it all in time (the results folder keeps it: --resume sends it). Once only,
        and only for a parent run that was started."""
        from mlflow.entities import Metric, RunTag

        if self.parent_id is None or self._finished:
            return True
        self._finished = True
        saved = read_run_file(self.path)
        total = float(saved.get("wall_seconds", 0.0)) + wall_seconds
        write_run_file(self.path, {**saved, "wall_seconds": total, "tracking_uri": self.shown, "run_id": self.parent_id,
                                   "experiment": self.spec.experiment, "experiment_id": self.experiment_id})
        parent = self.parent_id
        if sweep is not None:
            now, counts, best = int(time.time() * 1000), sweep.counts(), sweep.best()
            values = {"trials_total": len(sweep.trials), "trials_completed": counts.get("completed", 0),
                      "trials_stopped_early": counts.get("stopped early", 0),
                      "trials_errored": counts.get("errored", 0), "wall_seconds": total}
            skipped = read_skipped(self.path)
            if skipped:
                values["configs_skipped_by_constraints"] = len(skipped)
            tags = []
            if self.spec.multi:  # the Pareto set: its trial ids, and each one's objectives
                front = sweep.pareto()
                values["pareto_size"] = len(front)
                tags.append(RunTag("pareto_trials", ",".join(t.trial_id for t in front)[:5000]))
                tags.append(RunTag("pareto_front", param_value([{"trial": t.trial_id, **{
                    m: t.value(m) for m, _ in self.spec.objectives}} for t in front])[:5000]))
            if best is not None:
                values[f"best_{self.spec.metric}"] = best.value(self.spec.metric)
                tags.append(RunTag("best_trial_id", best.trial_id))
                tags.append(RunTag("best_config", param_value(best.config)[:5000]))
                self.trials.highlight(best.trial_id)
                if self.trials.children.get(best.trial_id) is not None:
                    tags.append(RunTag("best_trial_run", f"trial_{best.trial_id}"))
            metrics = [Metric(self.trials.key(k), float(v), now, 0) for k, v in values.items()]
            self._submit("the sweep's summary", lambda: self.client.log_batch(parent, metrics=metrics, tags=tags))
        self._submit("the end of the sweep", lambda: self.client.set_terminated(parent, status))
        return self.wait(wait)

    def wait(self, timeout: float | None = None, *, quiet: bool = False) -> bool:
        """Wait until MLflow has taken every queued operation (at most `timeout`, default
        $TRAINABLES_MLFLOW_WAIT or 300 s); False if some are still queued."""
        timeout = env_seconds(WAIT_ENV) if timeout is None else timeout
        if quiet and self._sender.failing_since is not None:
            return False
        if self._sender.drain(min(timeout, 10.0)):
            return True
        if not quiet:
            self.say(f"waiting up to {timeout:.0f}s for MLflow at {self.shown} to take "
                     f"{self._sender.pending()} queued operation(s)...")
        if self._sender.drain(max(timeout - 10.0, 0.0)):
            return True
        if quiet:
            return False
        self.say(f"MLflow at {self.shown} did not take {self._sender.pending()} operation(s) in time. Nothing is lost: "
                 f"the sweep's results folder keeps every epoch, and `tune run {self.spec.source or 'SPEC.yaml'} "
                 f"--resume` sends what is missing once the server answers.")
        return False

    def close(self) -> None:
        """Nothing to release: the sender is a daemon thread, and what it still holds is in the results folder."""

    # -- helpers --

    def _submit(self, what: str, fn: Callable[[], None]) -> None:
        self._sender.submit(what, fn)

    def say(self, message: str) -> None:
        """One `mlflow: ...` line on the tracker's stream."""
        try:
            print(f"mlflow: {message}", file=self.stream, flush=True)
        except Exception:  # noqa: BLE001 - a closed stream must not stop the sender
            pass

    def guard(self, hook: str, fn: Callable[[], None]) -> None:
        """Run a callback hook's work; an unexpected error is reported once per hook, never raised into Ray."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            if hook not in self._warned:
                self._warned.add(hook)
                self.say(f"tracking error in {hook} (the sweep goes on): {type(e).__name__}: {e}")
