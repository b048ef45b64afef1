"""The report's figures, one function each, drawn with matplotlib's Agg backend into PNG files.

Every `fig_*` returns False when there is nothing to draw (and then writes no file).
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any, Callable

from trainables.report.values import STATUS_COLORS, by_model, epochs_of, fmt, log_scale, numeric, scored
from trainables.report.values import label as value_label

TOP_CURVES = 5  # learning curves of this many best trials


def label(v) -> str:
    """A value as a plot shows it: "$" as a dollar, not the start of TeX (two of them failed the figure)."""
    return value_label(v).replace("$", r"\$")


def save_figure(path: Path, draw: Callable[[Any], Any], *, size=(6.4, 4.2)) -> bool:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size, layout="constrained")
    try:
        if draw(fig) is False:
            return False
        # the saved area grows to take in whatever the layout could not fit: no label is cut at the edge
        fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.1)
        return True
    finally:
        plt.close(fig)


def fig_metric_vs_param(sweep, name: str, path: Path) -> bool:
    spec, p = sweep.spec, sweep.spec.space[name]
    trials = [t for t in scored(sweep) if name in t.config]
    if not trials:
        return False
    best = sweep.best()

    def draw(fig):
        ax = fig.add_subplot()
        if numeric(p):
            xs = [float(t.config[name]) for t in trials]
        else:
            cats = [label(v) for v in p.candidates()]
            cats += sorted({label(t.config[name]) for t in trials} - set(cats))
            pos = {c: i for i, c in enumerate(cats)}
            # a fixed jitter per trial, so points of one category stay apart and in place between reports
            xs = [pos[label(t.config[name])] + 0.08 * ((zlib.crc32(t.trial_id.encode()) % 7) - 3) / 3 for t in trials]
            _category_ticks(ax, cats)
        ys = [t.value(spec.metric) for t in trials]
        ax.scatter(xs, ys, c=[STATUS_COLORS.get(t.status, "gray") for t in trials], alpha=0.8, edgecolors="k",
                   linewidths=0.4)
        if best in trials:
            i = trials.index(best)
            ax.scatter([xs[i]], [ys[i]], marker="*", s=260, c="gold", edgecolors="k", zorder=3, label="best")
            ax.legend(loc="best", fontsize=8)
        if numeric(p) and log_scale(p):
            _log_axis(ax, min(xs + [float(p.low)]), max(xs + [float(p.high)]))
        ax.set_xlabel(name)
        ax.set_ylabel(spec.metric)
        ax.set_title(f"{spec.metric} vs {name}")
        ax.grid(alpha=0.3)

    return save_figure(path, draw)


def _category_ticks(ax, cats: list[str]) -> None:
    """Category names under the x axis; long ones slanted and anchored at their tick, so they
    neither run into each other nor drift off the tick they name."""
    if max(map(len, cats)) > 6:
        ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
    else:
        ax.set_xticks(range(len(cats)), cats, fontsize=8)


def _log_axis(ax, lo: float, hi: float) -> None:
    """A log x axis over [lo, hi] with a few labelled ticks and no labelled minor ones: on a range
    of a decade or two matplotlib labels the minor ticks too, and those labels run into each other."""
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, LogLocator, MaxNLocator, NullFormatter

    ax.set_xscale("log")
    pad = (hi / lo) ** 0.05
    ax.set_xlim(lo / pad, hi * pad)
    decades = [10.0**k for k in range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1)]
    steps = [m * 10.0**k for k in range(math.floor(math.log10(lo)), math.floor(math.log10(hi)) + 1)
             for m in (1, 2, 5) if lo <= m * 10.0**k <= hi]
    short = FuncFormatter(lambda v, _: f"{v:.3g}")
    if len(decades) >= 2:
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=6))
        ax.xaxis.set_major_formatter(LogFormatterSciNotation())
    elif len(steps) >= 2:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(short)
    else:  # well inside one decade: plain evenly spaced values read best
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.xaxis.set_major_formatter(short)
    ax.xaxis.set_minor_formatter(NullFormatter())


def fig_parallel(sweep, path: Path) -> bool:
    spec = sweep.spec
    names = spec.searched
    trials = scored(sweep)
    if not names or not trials:
        return False
    axes = names + [spec.metric]
    space = spec.space

    def scale(name: str):
        """value -> [0, 1] on this axis, and the axis's tick labels."""
        if name == spec.metric:
            vals = [t.value(spec.metric) for t in trials]
            lo, hi = min(vals), max(vals)
            return (lambda v: 0.5 if hi == lo else (v - lo) / (hi - lo)), [(0, fmt(lo, 3)), (1, fmt(hi, 3))]
        p = space[name]
        if numeric(p):
            lo, hi = float(p.low), float(p.high)
            f = (lambda v: math.log(v)) if log_scale(p) else float
            span = f(hi) - f(lo)
            return (lambda v: (f(float(v)) - f(lo)) / span if span else 0.5), [(0, label(lo)), (1, label(hi))]
        cats = [label(v) for v in p.candidates()]
        cats += sorted({label(t.config[name]) for t in trials if name in t.config} - set(cats))
        n = max(len(cats) - 1, 1)
        return (lambda v: cats.index(label(v)) / n), [(i / n, c) for i, c in enumerate(cats)]

    scales = {a: scale(a) for a in axes}

    def draw(fig):
        import matplotlib.pyplot as plt
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        ax = fig.add_subplot()
        vals = [t.value(spec.metric) for t in trials]
        lo, hi = min(vals), max(vals)
        pad = 0 if hi > lo else max(abs(lo) * 0.01, 1e-3)  # one value: mid-colour, on a bar that still has a range
        norm = Normalize(lo - pad, hi + pad)
        cmap = plt.get_cmap("viridis" if spec.mode == "max" else "viridis_r")
        for t in sorted(trials, key=lambda t: t.value(spec.metric), reverse=spec.mode == "min"):
            pts = [(i, scales[a][0](t.value(spec.metric) if a == spec.metric else t.config[a]))
                   for i, a in enumerate(axes) if a == spec.metric or a in t.config]
            ax.plot([x for x, _ in pts], [y for _, y in pts], color=cmap(norm(t.value(spec.metric))), alpha=0.8,
                    lw=1.4)
        for i, a in enumerate(axes):
            ax.axvline(i, color="k", lw=0.8)
            for y, text in scales[a][1]:
                ax.text(i + 0.03, y, text, fontsize=7, va="center")
        ax.set_xticks(range(len(axes)), axes, rotation=20, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_yticks([])
        ax.set_xlim(-0.2, len(axes) - 0.5)
        ax.set_title(f"parallel coordinates (colour: {spec.metric}, brighter is better)")
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=spec.metric, pad=0.02)

    return save_figure(path, draw, size=(max(6.4, 1.5 * len(axes)), 4.5))


def fig_importance(imp: dict[str, float] | None, path: Path) -> bool:
    if not imp:
        return False

    def draw(fig):
        ax = fig.add_subplot()
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names], color="tab:green")
        ax.set_xlabel("importance (fANOVA, normalised)")
        ax.set_title("parameter importance")
        ax.grid(axis="x", alpha=0.3)

    return save_figure(path, draw, size=(6.4, 1.2 + 0.45 * len(imp)))


def fig_learning_curves(sweep, path: Path, top: int = TOP_CURVES) -> bool:
    spec = sweep.spec
    ranked = [t for t in sweep.ranked() if t.history is not None and spec.metric in t.history.columns][:top]
    if not ranked:
        return False
    second = "val_loss" if spec.metric != "val_loss" else "val_acc"

    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        for i, t in enumerate(ranked):
            h, c = t.history, f"C{i}"
            ep = epochs_of(h)
            ax1.plot(ep, h[spec.metric], marker="o", ms=3, color=c,
                     label=f"{t.trial_id} ({fmt(t.value(spec.metric), 3)})")
            if second in h.columns:
                ax2.plot(ep, h[second], marker="o", ms=3, color=c)
            if "train_loss" in h.columns and second == "val_loss":
                ax2.plot(ep, h["train_loss"], ls="--", color=c, alpha=0.6)
        ax1.set_title(f"{spec.metric}, top {len(ranked)} trials")
        ax2.set_title(f"{second}" + (" (dashed: train_loss)" if second == "val_loss" else ""))
        for ax in (ax1, ax2):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        ax1.legend(fontsize=7)

    return save_figure(path, draw, size=(10, 4))


def fig_wall_time(sweep, path: Path) -> bool:
    trials = sweep.ranked() + [t for t in sweep.trials if t.value(sweep.spec.metric) is None]
    if not trials:
        return False

    def draw(fig):
        ax = fig.add_subplot()
        names = [t.trial_id for t in trials][::-1]
        secs = [t.seconds for t in trials][::-1]
        ax.barh(names, secs, color=[STATUS_COLORS.get(t.status, "gray") for t in trials][::-1])
        for y, (s, t) in enumerate(zip(secs, trials[::-1], strict=True)):
            ax.text(s, y, f" {s:.0f}s, {t.epochs} ep", va="center", fontsize=7)
        ax.set_xlabel("seconds (best trial at the top)")
        ax.set_title("wall time per trial (blue completed, orange stopped early, red errored)", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)

    return save_figure(path, draw, size=(7, 1.2 + 0.3 * len(trials)))


def fig_models(sweep, path: Path) -> bool:
    spec = sweep.spec
    p = spec.space.get("model")
    if p is None or not p.searched:
        return False
    groups = by_model(sweep)

    def draw(fig):
        ax = fig.add_subplot()
        names = list(groups)
        data = [[t.value(spec.metric) for t in groups[n]] for n in names]
        ax.boxplot(data, tick_labels=names, showmeans=True)
        for i, ys in enumerate(data, 1):
            ax.scatter([i] * len(ys), ys, alpha=0.6, s=14, c="k")
        ax.set_ylabel(spec.metric)
        ax.set_title(f"{spec.metric} by model")
        ax.grid(axis="y", alpha=0.3)

    return save_figure(path, draw)


def fig_retrain(info: dict[str, Any] | None, metric: str, path: Path) -> bool:
    if not info or not info.get("history"):
        return False
    rows = info["history"]

    def draw(fig):
        ax = fig.add_subplot()
        ep = [r["epoch"] for r in rows]
        for key, style in (("train_acc", "--"), ("val_acc", "-")):
            if all(key in r for r in rows):
                ax.plot(ep, [r[key] for r in rows], style, marker="o", ms=3, label=key)
        if isinstance(info.get("test_acc"), (int, float)) and math.isfinite(info["test_acc"]):
            ax.axhline(info["test_acc"], color="tab:red", lw=1.2, label=f"test_acc {info['test_acc']:.4f}")
        ax.set_xlabel("epoch")
        ax.set_title(f"retrained best configuration (trial {info['trial_id']})")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)

    return save_figure(path, draw)
