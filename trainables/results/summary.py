"""The table `tune run` prints at the end: counts, and the best trials with their searched parameters."""
from __future__ import annotations

from typing import Any

from trainables.results.read import Sweep


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
