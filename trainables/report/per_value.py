"""Per-value tables of a categorical parameter: trials, epochs reached, and a comparison at a common epoch."""
from __future__ import annotations

import math

from trainables.report.values import epochs_of, fmt, label, scored


def per_value_table(sweep, name: str) -> tuple[list[str], list[list], str | None]:
    """Headers, one row per value of `name`, and a note when the trials stopped at different epochs.

    A scheduler such as ASHA ends trials at different epochs, so their last values measure unequal
    training: the table says which epochs its trials reached and then also compares them all at
    the last epoch every one of them reached."""
    metric, mode = sweep.spec.metric, sweep.spec.mode
    trials = [t for t in scored(sweep) if name in t.config]
    groups = [(v, [t for t in trials if t.config[name] == v]) for v in sweep.spec.space[name].candidates()]
    reached = {t.trial_id: _reached(t, metric) for _, ts in groups for t in ts}
    common = min(reached.values(), default=0)
    uneven = len(set(reached.values())) > 1
    headers = [name, "trials", "epochs", f"mean {metric}", f"best {metric}"]
    if uneven:
        headers.append(f"mean {metric} at epoch {common}")
    rows, missing = [], 0
    for v, ts in groups:
        got = [t.value(metric) for t in ts]
        eps = [reached[t.trial_id] for t in ts]
        span = "-" if not eps else str(min(eps)) if min(eps) == max(eps) else f"{min(eps)}–{max(eps)}"
        row = [label(v), len(ts), span, fmt(_mean(got)), fmt((max if mode == "max" else min)(got) if got else None)]
        if uneven:
            at = [_value_at(t, metric, common) for t in ts]
            missing += at.count(None)
            row.append(fmt(_mean([x for x in at if x is not None])))
        rows.append(row)
    if not uneven:
        return headers, rows, None
    note = (f"These trials stopped at different epochs ({min(reached.values())} to {max(reached.values())}): "
            f"the mean and best of their last {metric} compare unequal training. The last column compares "
            f"every trial at epoch {common}, the last epoch all of them reached.")
    if missing:
        note += f" {missing} trial(s) without a {metric} at epoch {common} are left out of it."
    return headers, rows, note


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _per_epoch(t, metric: str) -> dict[int, float]:
    """The trial's finite values of `metric` by epoch, from its history."""
    h = t.history
    if h is None or metric not in getattr(h, "columns", ()):
        return {}
    out = {}
    for e, v in zip(epochs_of(h), h[metric], strict=True):
        try:
            x = float(v)
        except (TypeError, ValueError):  # a missing value in a column pandas could not make numeric
            continue
        if math.isfinite(x):
            out[e] = x
    return out


def _reached(t, metric: str) -> int:
    """The last epoch with a value of the metric; the trial's reported epochs when it has no history."""
    return max(_per_epoch(t, metric), default=t.epochs)


def _value_at(t, metric: str, epoch: int) -> float | None:
    return _per_epoch(t, metric).get(epoch)
