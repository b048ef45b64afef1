"""Tune callbacks on the sweep driver: MLflow events, --resume's mending, the metric check, waiting."""
from __future__ import annotations

import sys
import time

from ray.tune import Callback
from ray.tune.stopper import Stopper

from trainables.core.training import clean_config
from trainables.errors import SpecError, env_seconds, short
from trainables.results.read import RAY_KEYS, STOPPED, trial_status
from trainables.results.trials import flat
from trainables.spec.schema import Spec
from trainables.tune import _ray_private


def _inert() -> Callback:
    """What our callbacks become when Tune unpickles tuner.pkl on --resume: nothing. run.py attaches
    this run's own (live stream, live tracker, fresh clocks) to the restored Tuner instead."""
    return Callback()


class DriverCallback(Callback):
    """A callback of this driver only: pickled into tuner.pkl as an inert one (it holds streams, a
    tracker, clocks; the spec may hold a password)."""

    def __reduce__(self):
        return (_inert, ())


class MarkStopped(Callback):
    """A result that comes with done=True was stopped by the scheduler or a stopper: a trainable that
    ends by itself sends no result (Tune marks its last one done afterwards). Said in the result (the
    trial's last, kept in Tune's state), so a program that ended can be told from one that was stopped.
    Stateless: pickled with the tuner, as it is, for --resume."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("done"):
            result[STOPPED] = True

    def on_trial_complete(self, iteration, trials, trial, **info):
        # Tune marks a trainable that ended by itself done in its last result in place, which leaves the
        # state it saves with that result as it was when last saved (done: false): the trial would read
        # back as stopped early. The saved state is made again from the result as it is now.
        _ray_private.refresh_saved_result(trial)


# ---- MLflow: trial events -> the sweep's tracker ---------------------------------------------

class TrackerCallback(DriverCallback):
    """Driver-side: trial events -> the tracker (tracking.Tracker, or its null object). Every hook
    runs through tracker.guard, so a tracking fault never raises into Ray."""

    def __init__(self, tracker):
        self.tracker = tracker

    def on_trial_start(self, iteration, trials, trial, **info):
        t = self.tracker
        t.guard("on_trial_start", lambda: t.trial_started(trial.trial_id, clean_config(trial.config)))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        t = self.tracker
        t.guard("on_trial_result", lambda: t.trial_result(trial.trial_id, clean_config(trial.config), result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        t = self.tracker
        t.guard("on_trial_complete", lambda: t.trial_ended(
            trial.trial_id, trial_status(trial, t.spec.epochs, ends_itself=t.spec.ends_itself)))

    def on_trial_error(self, iteration, trials, trial, **info):
        t = self.tracker
        t.guard("on_trial_error", lambda: t.trial_ended(trial.trial_id, "errored", error_file=trial.error_file))

    def on_step_end(self, iteration, trials, **info):
        self.tracker.guard("on_step_end", lambda: self.tracker.tick())

    def on_experiment_end(self, trials, **info):
        self.tracker.guard("on_experiment_end", lambda: self.tracker.flush())


# ---- --resume: trials whose saved checkpoint Ray already deleted -----------------------------

class MendCheckpoints(DriverCallback):
    """Mends every restored trial once, before the first is started (see _ray_private.mend_trial)."""

    def __init__(self, stream=None):
        self.stream, self.done = stream, False


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

def _too_big(v: int) -> bool:
    try:
        float(v)
        return False
    except OverflowError:
        return True


class MetricCheck(Stopper):
    """Stops the whole sweep at the first result without the spec's metric (a user trainable reporting
    another name): every trial would report the same, and the search would learn nothing from them. Once
    some result has had it, a result without it stops that trial only.
    run.py turns `missing` into one clear error."""

    def __init__(self, metrics: str | list[str]):
        self.metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        self.missing: list[str] | None = None  # the keys the offending result did have
        self.absent: str | None = None  # the objective it did not have
        self.not_number: str | None = None  # the value it had instead of a number
        self.seen = False  # a result has had every metric: the trainable does report it

    def __call__(self, trial_id: str, result: dict) -> bool:
        values = flat(result)  # Tune hands stoppers the result as reported; the searcher reads `val/acc` of it
        absent = [m for m in self.metrics if m not in values]
        if absent and self.seen:  # other trials report it: this one (a script that logged it for some
            return True  # configurations only) ends without a value, the sweep goes on
        if absent:
            self.absent, self.missing = absent[0], sorted(k for k in values if k not in RAY_KEYS)
            return True
        for m in self.metrics:  # NaN or inf is a trial that diverged; text, None or 10**400 is no number at all
            v = values[m]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, int) and _too_big(v)):
                self.absent, self.not_number = m, short(v, 60)
                # this dict becomes the trial's last result, which the scheduler and the searcher read as it
                # stops (ASHA multiplies it): a NaN there is a trial without a value, the text an OverflowError
                _set(result, m, float("nan"))
                return True
        self.seen = True
        return False

    def stop_all(self) -> bool:
        return self.missing is not None or self.not_number is not None




def _set(result: dict, name: str, value: float) -> None:
    """result's value called name as flat() names it (`val/acc`: result["val"]["acc"]) set to value."""
    if name in result:
        result[name] = value
        return
    for k, inner in result.items():
        if isinstance(inner, dict) and name.startswith(f"{k}/"):
            _set(inner, name[len(k) + 1:], value)


# ---- a cluster that has not got the resources (yet) ------------------------------------------

class WaitingForResources(DriverCallback):
    """While trials wait and none runs (an autoscaler adding nodes, or nodes busy), a line every
    `every` seconds instead of silence; after $TRAINABLES_RESOURCE_TIMEOUT seconds (default 3600,
    0: wait forever) the sweep ends with a clear error."""

    def __init__(self, spec: Spec, stream=None, every: float = 60.0):
        self.cpu, self.gpu, self.every = spec.resources.cpu, spec.resources.gpu, every
        self.timeout = env_seconds("TRAINABLES_RESOURCE_TIMEOUT")  # read on each run
        self.stream, self.since, self.said = stream, None, 0.0


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
                            f"CPU and {self.gpu:g} GPU free (TRAINABLES_RESOURCE_TIMEOUT={self.timeout:g}); add "
                            f"nodes, then --resume (for smaller resources, start a new sweep)",
                            path="resources")
        if now - self.said >= self.every:
            self.said = now
            print(f"waiting for resources: {pending} trial(s) pending, each needs {self.cpu:g} CPU and {self.gpu:g} "
                  f"GPU; none free for {waited:.0f}s (an autoscaler may be adding nodes; giving up after "
                  f"{self.timeout:.0f}s)", file=self.stream or sys.stdout, flush=True)
