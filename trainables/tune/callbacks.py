"""Tune callbacks on the sweep driver: MLflow events, --resume's mending, the metric check, waiting."""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from ray.tune import Callback
from ray.tune.stopper import Stopper

from trainables.core.trial import clean_config
from trainables.errors import SpecError
from trainables.results.read import trial_status
from trainables.spec.schema import Spec
from trainables.tune import _ray_private

# ---- MLflow: trial events -> the sweep's tracker ---------------------------------------------

class _Idle:
    """The tracker of a callback restored where no sweep of its path runs: it does nothing."""

    path = ""

    def guard(self, hook: str, fn: Callable[[], None]) -> None:
        pass


_LIVE: dict[str, Any] = {}  # sweep path -> the tracker of the sweep running in this process


def _live_callback(sweep_path: str) -> "TrackerCallback":
    """What a callback pickled into tuner.pkl becomes when the sweep is restored: one calling the
    live tracker of that sweep in this process, or one that does nothing."""
    return TrackerCallback(_LIVE.get(sweep_path, _Idle()))


class TrackerCallback(Callback):
    """Driver-side: trial events -> the tracker (tracking.Tracker, or its null object). Every hook
    runs through tracker.guard, so a tracking fault never raises into Ray."""

    def __init__(self, tracker):
        self.tracker = tracker

    def __reduce__(self):
        return (_live_callback, (self.tracker.path,))

    def register(self) -> "TrackerCallback":
        """Make this the callback that a restored tuner.pkl of this sweep resolves to."""
        _LIVE[self.tracker.path] = self.tracker
        return self

    def unregister(self) -> None:
        if _LIVE.get(self.tracker.path) is self.tracker:
            del _LIVE[self.tracker.path]

    def on_trial_start(self, iteration, trials, trial, **info):
        t = self.tracker
        t.guard("on_trial_start", lambda: t.trial_started(trial.trial_id, clean_config(trial.config)))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        t = self.tracker
        t.guard("on_trial_result", lambda: t.trial_result(trial.trial_id, clean_config(trial.config), result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        t = self.tracker
        t.guard("on_trial_complete", lambda: t.trial_ended(trial.trial_id, trial_status(trial, t.spec.epochs)))

    def on_trial_error(self, iteration, trials, trial, **info):
        t = self.tracker
        t.guard("on_trial_error", lambda: t.trial_ended(trial.trial_id, "errored", error_file=trial.error_file))

    def on_step_end(self, iteration, trials, **info):
        self.tracker.guard("on_step_end", lambda: self.tracker.tick())

    def on_experiment_end(self, trials, **info):
        self.tracker.guard("on_experiment_end", lambda: self.tracker.flush())


# ---- --resume: trials whose saved checkpoint Ray already deleted -----------------------------

class MendCheckpoints(Callback):
    """Mends every restored trial once, before the first is started (see _ray_private.mend_trial)."""

    def __init__(self, stream=None):
        self.stream, self.done = stream, False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "stream": None}

    def on_step_begin(self, iteration, trials, **info):
        if self.done:
            return
        self.done = True
        for trial in trials:
            try:
                line = _ray_private.mend_trial(trial)
            except (AttributeError, ImportError) as e:  # Ray's internals moved (ray>=2.40 is allowed)
                line = f"resume: could not check trial {trial.trial_id}'s checkpoint ({e}); Tune restores it as saved"
            if line:
                print(line, file=self.stream or sys.stdout, flush=True)


# ---- a user's trainable that does not report the spec's metric ------------------------------

class MetricCheck(Stopper):
    """Stops the whole sweep at the first result without the spec's metric (a user trainable reporting
    another name): every trial would report the same, and the search would learn nothing from them.
    run.py turns `missing` into one clear error."""

    def __init__(self, metric: str):
        self.metric = metric
        self.missing: list[str] | None = None  # the keys the offending result did have

    def __call__(self, trial_id: str, result: dict) -> bool:
        if self.metric in result:
            return False
        self.missing = sorted(k for k in result if k not in _TUNE_KEYS)
        return True

    def stop_all(self) -> bool:
        return self.missing is not None


# What Tune adds to every result (not what the trainable reported).
_TUNE_KEYS = frozenset({
    "training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore", "iterations_since_restore",
    "timesteps_since_restore", "timestamp", "date", "pid", "hostname", "node_ip", "trial_id", "experiment_id",
    "experiment_tag", "config", "done", "should_checkpoint", "checkpoint_dir_name", "warmup_time",
    "timesteps_total", "episodes_total", "timesteps_this_iter", "episodes_this_iter",
})


# ---- a cluster that has not got the resources (yet) ------------------------------------------

class WaitingForResources(Callback):
    """While trials wait and none runs (an autoscaler adding nodes, or nodes busy), a line every
    `every` seconds instead of silence; after $TRAINABLES_RESOURCE_TIMEOUT seconds (default 3600,
    0: wait forever) the sweep ends with a clear error."""

    def __init__(self, spec: Spec, stream=None, every: float = 60.0):
        self.cpu, self.gpu, self.every = spec.resources.cpu, spec.resources.gpu, every
        self.timeout = float(os.environ.get("TRAINABLES_RESOURCE_TIMEOUT", 3600))
        self.stream, self.since, self.said = stream, None, 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "stream": None, "since": None}

    def on_step_end(self, iteration, trials, **info):
        pending = sum(t.status == "PENDING" for t in trials)
        if not pending or any(t.status == "RUNNING" for t in trials):
            self.since = None
            return
        now = time.monotonic()
        if self.since is None:
            self.since, self.said = now, now
            return
        waited = now - self.since
        if self.timeout and waited > self.timeout:
            raise SpecError(f"no trial could start for {waited:.0f}s: none of the cluster's nodes has {self.cpu:g} "
                            f"CPU and {self.gpu:g} GPU free (TRAINABLES_RESOURCE_TIMEOUT={self.timeout:g}); the "
                            f"sweep's state is saved: add nodes or lower resources:, then --resume",
                            path="resources")
        if now - self.said >= self.every:
            self.said = now
            print(f"waiting for resources: {pending} trial(s) pending, each needs {self.cpu:g} CPU and {self.gpu:g} "
                  f"GPU; none free for {waited:.0f}s (an autoscaler may be adding nodes; giving up after "
                  f"{self.timeout:.0f}s)", file=self.stream or sys.stdout, flush=True)
