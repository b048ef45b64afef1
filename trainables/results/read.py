"""A finished (or interrupted) sweep read back from its folder: trial records, their status, the best."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainables.core.numbers import finite
from trainables.core.training import clean_config
from trainables.errors import SpecError, redact
from trainables.results.layout import SPEC_FILE, holds_sweep, read_saved_spec, storage_root
from trainables.results.storage import is_remote, join, read_text
from trainables.results.trials import SweepFolder
from trainables.spec.load import load_spec
from trainables.spec.schema import Spec


# What Ray adds to every result: bookkeeping of the run, not measurements of the model.
RAY_KEYS = frozenset({
    "training_iteration", "epoch", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "timesteps_since_restore", "timesteps_total", "timesteps_this_iter",
    "episodes_total", "episodes_this_iter", "timestamp", "date", "pid", "hostname", "node_ip",
    "trial_id", "experiment_id", "experiment_tag", "config", "done", "should_checkpoint", "stopped_by_tune",
    "checkpoint_dir_name", "warmup_time", "__duplicate__", "__trial_info__", "_metric", "diverged",
    "gpu_id",  # the classifier's GPU (Ray's id on the node): a tag of the child run, not a metric
})


STOPPED = "stopped_by_tune"  # in a trial's last result: the scheduler or a stopper ended it (tune/callbacks.py)


def trial_status(result_or_trial, epochs: int, *, ends_itself: bool = False) -> str:
    """completed (ran every epoch; or, ends_itself (a program or function), ended without being stopped),
    stopped early (scheduler, stopper or divergence) or errored."""
    error = getattr(result_or_trial, "error", None)
    if error:
        return "errored"
    metrics = getattr(result_or_trial, "metrics", None) or getattr(result_or_trial, "last_result", None) or {}
    reached = finite(metrics.get("training_iteration")) or 0
    finished = reached >= epochs or (ends_itself and metrics.get("done") is True and not metrics.get(STOPPED))
    return "completed" if finished and not metrics.get("diverged") else "stopped early"


@dataclass(eq=False)  # one record is one trial: never compared field by field (its history is a DataFrame)
class TrialRecord:
    trial_id: str
    status: str  # completed | stopped early | errored
    config: dict[str, Any]
    last: dict[str, Any]  # the last reported metrics
    history: Any = None  # pandas DataFrame, one row per epoch
    error: str | None = None
    trainable_layers: list[str] = field(default_factory=list)  # as the first epoch reported them

    def value(self, metric: str) -> float | None:
        return finite(self.last.get(metric))

    @property
    def epochs(self) -> int:
        return int(self.value("training_iteration") or 0)

    @property
    def seconds(self) -> float:
        return self.value("time_total_s") or 0.0


@dataclass
class Sweep:
    spec: Spec
    path: str
    trials: list[TrialRecord] = field(default_factory=list)

    def ranked(self) -> list[TrialRecord]:
        """Trials with a value of the metric, best first; a tie goes to the first trial id (the order the
        folder was read in differed between `tune run` and its --resume: another best, retrained again)."""
        sign = -1 if self.spec.mode == "max" else 1
        scored = [t for t in self.trials if t.value(self.spec.metric) is not None]
        return sorted(scored, key=lambda t: (sign * t.value(self.spec.metric), t.trial_id))

    def best(self) -> TrialRecord | None:
        """The best trial by the metric; with several objectives, the Pareto-optimal trial best by
        final.select (default: the first objective)."""
        if self.spec.multi:
            (metric, mode), = (self.spec.final.select or {self.spec.metric: self.spec.mode}).items()
            optimal = [t for t in self.pareto() if t.status != "errored" and t.value(metric) is not None]
            sign = -1 if mode == "max" else 1
            return min(optimal, key=lambda t: (sign * t.value(metric), t.trial_id)) if optimal else None
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def objective_values(self, t: TrialRecord) -> list[float] | None:
        values = [t.value(m) for m, _ in self.spec.objectives]
        return None if any(v is None for v in values) else values

    def pareto(self) -> list[TrialRecord]:
        """The trials no other trial beats on every objective (with a value of each), in trial order."""
        from trainables.results.pareto import front

        scored = [(t, v) for t in self.trials if t.status != "errored" and (v := self.objective_values(t))]
        modes = [d for _, d in self.spec.objectives]
        return [scored[i][0] for i in front([v for _, v in scored], modes)]

    def counts(self) -> dict[str, int]:
        out = {"completed": 0, "stopped early": 0, "errored": 0}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out


def _fitting(spec: Spec, config: dict[str, Any]) -> dict[str, Any]:
    """A trial's configuration without values that no trial of this space can have (a damaged file's text,
    or 0, where a log-scaled number goes): the report plots the others."""
    from trainables.spec.space import Drawn, Int, Uniform

    out = clean_config(config)
    for name, p in spec.space.items():
        if name in out and (isinstance(p, (Uniform, Int)) or (isinstance(p, Drawn) and p.numeric)):
            v = finite(out[name])
            if v is None or (getattr(p, "log", False) and v <= 0):
                del out[name]
    return out


def resolve(name_or_path: str, storage: str | None = None) -> str:
    """A sweep folder from a path or URI, or from a name under the storage root (a URI too: s3://...)."""
    if is_remote(name_or_path):
        if _keeps_spec(name_or_path):
            return join(name_or_path)
    else:
        p = Path(name_or_path).expanduser()
        if p.is_dir() and (p / SPEC_FILE).is_file():
            return str(p.resolve())
        if p.name == SPEC_FILE and p.is_file() and holds_sweep(str(p.parent)):  # a sweep folder's own spec.yaml
            return str(p.parent.resolve())
        if p.suffix in (".yaml", ".yml") and p.is_file():  # the spec itself: its sweep under the storage
            name = load_spec(p, checks=False).name
            if _keeps_spec(join(storage_root(storage), name)):
                return join(storage_root(storage), name)
            raise SpecError(f"no sweep of {name_or_path} (named {name!r}) under {redact(storage_root(storage))}: "
                            f"run it with `tune run {name_or_path}`, or pass --storage")
    root = storage_root(storage)
    candidate = join(root, name_or_path)
    if name_or_path.strip("/") and not is_remote(name_or_path) and _keeps_spec(candidate):
        return candidate
    raise SpecError(f"no sweep named {name_or_path!r} under {redact(root)} (and no such sweep folder); run `tune run` "
                    f"first or pass --storage")


def _keeps_spec(path: str) -> bool:
    return read_text(join(path, SPEC_FILE)) is not None if is_remote(path) else (Path(path) / SPEC_FILE).is_file()


def load_sweep(name_or_path: str, storage: str | None = None, *, spec: Spec | None = None) -> Sweep:
    """The sweep's spec and trials, read from JSON only: Ray's experiment state (for which trials
    exist and their status) and each trial's result.json (its history). Nothing is unpickled, so
    reading a sweep folder runs no code from it. A sweep on remote storage (s3://...) is read through
    pyarrow, as Ray wrote it. `spec`: the sweep's own, where the caller holds it (`tune run` at the
    end of its sweep): the path is then read as given."""
    path = name_or_path if spec is not None else resolve(name_or_path, storage)
    spec = spec or read_saved_spec(path)  # data: nothing imported from it
    if spec is None:  # gone (or unreadable) since resolve looked
        raise SpecError(f"cannot read the sweep at {redact(path)}: its {SPEC_FILE} is gone or unreadable")
    sweep = Sweep(spec=spec, path=path)
    try:
        for t in SweepFolder(path).trials():
            status = "errored" if t.errored else trial_status(t, spec.epochs, ends_itself=spec.ends_itself)
            sweep.trials.append(TrialRecord(trial_id=t.trial_id, status=status, config=_fitting(spec, t.config),
                                            last=t.last_result, history=t.history(), error=t.error_file,
                                            trainable_layers=t.trainable_layers()))
    except (OSError, ValueError, KeyError, TypeError, RecursionError, OverflowError) as e:  # (nested 10^5 deep)
        raise SpecError(f"cannot read the sweep at {redact(path)}: {type(e).__name__}: {redact(str(e))[:300]}") from None
    return sweep
