"""Several objectives in the report: the Pareto front as a figure (the first two objectives) and a table,
and the configurations the constraints kept from training."""
from __future__ import annotations

from pathlib import Path

from trainables.report.document import Document
from trainables.report.figures import save_figure
from trainables.report.values import fmt, label
from trainables.results.layout import read_skipped


def fig_pareto(sweep, path: Path) -> bool:
    """Every trial on the first two objectives, the Pareto-optimal ones joined, the best one marked."""
    spec = sweep.spec
    (mx, dx), (my, dy) = spec.objectives[:2]
    points = [(t, sweep.objective_values(t)) for t in sweep.trials if t.status != "errored"]
    points = [(t, v) for t, v in points if v is not None]
    if not points:
        return False
    front = sweep.pareto()
    best = sweep.best()

    def draw(fig):
        ax = fig.add_subplot()
        ax.scatter([t.value(mx) for t, _ in points], [t.value(my) for t, _ in points], s=18, color="tab:gray",
                   alpha=0.6, label="trial")
        line = sorted(front, key=lambda t: t.value(mx))
        ax.plot([t.value(mx) for t in line], [t.value(my) for t in line], "o-", color="tab:blue",
                label="Pareto-optimal")
        if best is not None:
            ax.scatter([best.value(mx)], [best.value(my)], s=120, marker="*", color="gold", edgecolor="black",
                       zorder=3, label="best (final.select)")
        ax.set_xlabel(f"{mx} ({dx})")
        ax.set_ylabel(f"{my} ({dy})")
        for axis, name in ((ax.xaxis, mx), (ax.yaxis, my)):
            if name.endswith("params"):
                axis.get_major_formatter().set_scientific(True)
        ax.legend(loc="best", fontsize=8)
        ax.set_title("Pareto front" + (f" (objectives 1 and 2 of {len(spec.objectives)})"
                                       if len(spec.objectives) > 2 else ""))

    return save_figure(path, draw)


def pareto_section(doc: Document, sweep, figures: Path) -> None:
    spec = sweep.spec
    skipped = read_skipped(sweep.path)
    if not spec.multi and not skipped:
        return
    if spec.multi:
        doc.h(2, "Pareto front")
        front, best = sweep.pareto(), sweep.best()
        (metric, mode), = (spec.final.select or {spec.metric: spec.mode}).items()
        doc.p(f"{len(front)} Pareto-optimal trials: no other trial is as good on every objective "
              f"({', '.join(f'{m} {d}' for m, d in spec.objectives)}) and better on one. The best, by "
              f"{metric} ({mode}){' (final.select)' if spec.final.select else ''}, is marked.")
        doc.table(["", "trial", *(m for m, _ in spec.objectives), "epochs", *spec.searched],
                  [["best" if t is best else "", t.trial_id, *(fmt(t.value(m)) for m, _ in spec.objectives),
                    t.epochs, *(label(t.config[k]) if k in t.config else "-" for k in spec.searched)] for t in front])
        if fig_pareto(sweep, figures / "pareto.png"):
            doc.img("figures/pareto.png", "every trial on the first two objectives; the Pareto front joined")
    if skipped:
        doc.h(2, "Never trained: outside the constraints")
        doc.p(f"{len(skipped)} configurations violated {', '.join(f'`{c}`' for c in spec.constraints)} and were "
              f"never trained (the first 20 shown).")
        doc.table(["configuration", "violations"], [[", ".join(f"{k}={label(v)}" for k, v in e["config"].items()
                                                              if k in spec.searched),
                                                     ", ".join(f"{v:g}" for v in e.get("violations", []))]
                                                    for e in skipped[:20]])
