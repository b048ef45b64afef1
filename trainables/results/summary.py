"""The table `tune run` prints at the end: counts, and the best trials with their searched parameters."""
from __future__ import annotations

from typing import Any

from trainables.errors import redact
from trainables.results.layout import read_skipped, sweep_arg
from trainables.results.read import Sweep


def print_summary(sweep: Sweep, *, wall_seconds: float | None = None, top: int = 5, stream=None) -> None:
    """Counts, and the best trials with their searched parameters."""
    import sys

    stream = stream or sys.stdout
    c = sweep.counts()
    head = f"{len(sweep.trials)} trials: {c['completed']} completed, {c['stopped early']} stopped early, {c['errored']} errored"
    if wall_seconds is not None:
        head += f" in {wall_seconds:.0f}s"
    skipped = read_skipped(sweep.path)
    if skipped:
        head += f"; {len(skipped)} configurations never trained (they violate the constraints)"
    print(head, file=stream)
    spec = sweep.spec
    shown = sweep.pareto()[: top * 4] if spec.multi else sweep.ranked()[:top]
    if not shown:
        print(f"no trial reported {' and '.join(m for m, _ in spec.objectives)}.", file=stream)
        return
    cols, metrics = spec.searched, [m for m, _ in spec.objectives]
    rows = [["rank" if not spec.multi else "", "trial", *metrics, "epochs", "status", *cols]]
    for i, t in enumerate(shown, 1):
        rows.append([str(i) if not spec.multi else ("*" if t is sweep.best() else ""), t.trial_id,
                     *(_number(t.value(m)) for m in metrics), str(t.epochs), t.status,
                     *(_short(t.config.get(k, "-")) for k in cols)])
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    if spec.multi:
        print(f"Pareto-optimal trials ({', '.join(f'{m} {d}' for m, d in spec.objectives)}); * best by "
              f"{_rule(spec)}:", file=stream)
    else:
        print(f"best trials by {spec.metric} ({spec.mode}):", file=stream)
    for r in rows:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=stream)
    print(f"results: {redact(sweep.path)}   best config: tune best {sweep_arg(sweep.path, spec.name)}", file=stream)


def _rule(spec) -> str:
    (metric, mode), = (spec.final.select or {spec.metric: spec.mode}).items()
    return f"{metric} ({mode}, final.select)" if spec.final.select else f"{metric} ({mode}), the first objective"


def _number(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}" if abs(v) < 1e5 else f"{v:.4g}"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)
