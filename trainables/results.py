"""A finished (or interrupted) sweep read back from its storage folder with Ray's ExperimentAnalysis."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainables.errors import SpecError
from trainables.spec import Spec, load_spec
from trainables.sweep import SPEC_FILE, storage_root, trial_status
from trainables.trainable import clean_config


@dataclass
class TrialRecord:
    trial_id: str
    status: str  # completed | stopped early | errored
    config: dict[str, Any]
    last: dict[str, Any]  # the last reported metrics
    history: Any = None  # pandas DataFrame, one row per epoch
    error: str | None = None

    def value(self, metric: str) -> float | None:
        v = self.last.get(metric)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    @property
    def epochs(self) -> int:
        return int(self.last.get("training_iteration", 0))

    @property
    def seconds(self) -> float:
        return float(self.last.get("time_total_s", 0.0))


@dataclass
class Sweep:
    spec: Spec
    path: str
    trials: list[TrialRecord] = field(default_factory=list)

    def ranked(self) -> list[TrialRecord]:
        """Trials with a value of the metric, best first."""
        scored = [t for t in self.trials if t.value(self.spec.metric) is not None]
        return sorted(scored, key=lambda t: t.value(self.spec.metric), reverse=self.spec.mode == "max")

    def best(self) -> TrialRecord | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def counts(self) -> dict[str, int]:
        out = {"completed": 0, "stopped early": 0, "errored": 0}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out


def resolve(name_or_path: str, storage: str | None = None) -> str:
    """A sweep folder from a path, or from a name under the storage root."""
    p = Path(name_or_path)
    if p.is_dir() and (p / SPEC_FILE).is_file():
        return str(p.resolve())
    if p.suffix in (".yaml", ".yml") and p.is_file():  # the spec itself: its sweep folder
        return f"{storage_root(storage)}/{load_spec(p).name}"
    candidate = Path(storage_root(storage)) / name_or_path
    if (candidate / SPEC_FILE).is_file():
        return str(candidate)
    raise SpecError(f"no sweep named {name_or_path!r} under {storage_root(storage)} (and no such sweep folder); run `tune run` first or pass --storage")


def load_sweep(name_or_path: str, storage: str | None = None) -> Sweep:
    from ray.tune import ExperimentAnalysis

    path = resolve(name_or_path, storage)
    spec = load_spec(Path(path) / SPEC_FILE)
    try:
        analysis = ExperimentAnalysis(path if "://" in path else str(Path(path).resolve()))
    except Exception as e:  # noqa: BLE001 - Ray raises plain errors for a missing/partial state
        raise SpecError(f"cannot read the sweep at {path}: {e}") from None
    frames = analysis.trial_dataframes
    sweep = Sweep(spec=spec, path=path)
    for trial in analysis.trials:
        errored = trial.status == "ERROR"
        last = dict(trial.last_result or {})
        sweep.trials.append(TrialRecord(
            trial_id=trial.trial_id,
            status="errored" if errored else trial_status(trial, spec.epochs),
            config=clean_config(trial.config),
            last=last,
            history=frames.get(trial.trial_id),
            error=str(getattr(trial, "error_file", "") or "") or None if errored else None,
        ))
    return sweep


def print_summary(sweep: Sweep, *, wall_seconds: float | None = None, top: int = 5, stream=None) -> None:
    """Counts, and the best trials with their searched parameters."""
    import sys

    stream = stream or sys.stdout
    c = sweep.counts()
    head = f"{len(sweep.trials)} trials: {c['completed']} completed, {c['stopped early']} stopped early, {c['errored']} errored"
    if wall_seconds is not None:
        head += f" in {wall_seconds:.0f}s"
    print(head, file=stream)
    ranked = sweep.ranked()[:top]
    if not ranked:
        print(f"no trial reported {sweep.spec.metric}.", file=stream)
        return
    cols = sweep.spec.searched
    rows = [["rank", "trial", sweep.spec.metric, "epochs", "status", *cols]]
    for i, t in enumerate(ranked, 1):
        rows.append([str(i), t.trial_id, f"{t.value(sweep.spec.metric):.4f}", str(t.epochs), t.status,
                     *(_short(t.config.get(k, "-")) for k in cols)])
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    print(f"best trials by {sweep.spec.metric} ({sweep.spec.mode}):", file=stream)
    for r in rows:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip(), file=stream)
    print(f"results: {sweep.path}   best config: tune best {sweep.spec.name}", file=stream)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)
