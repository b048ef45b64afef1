"""A sweep -> reports/<name>/ (design §8): report.md, report.html and figures/*.png.

`write_report(sweep, out)` takes a results.Sweep (finished or interrupted) and writes the
best hyperparameters, a leaderboard, metric-vs-parameter plots for every searched parameter,
a parallel-coordinates plot, fANOVA parameter importance, learning curves of the top trials,
wall time per trial, the architecture comparison when `model` was searched, and the
retrained best model's test metrics. One function per figure; matplotlib's Agg backend.

The retrained best model's record (retrain.json, best_model.pt) lives in the sweep folder;
`save_retrained` / `load_retrained` are its only readers and writers.
"""
from __future__ import annotations

import html
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trainables.space import Choice, Int, Param, Uniform

RETRAIN_FILE = "retrain.json"
MODEL_FILE = "best_model.pt"
TOP_CURVES = 5  # learning curves of this many best trials
LEADERBOARD = 25  # rows of the leaderboard
STATUS_COLORS = {"completed": "tab:blue", "stopped early": "tab:orange", "errored": "tab:red"}


# ---- the retrained best model's record --------------------------------------------------

def save_retrained(sweep_path: str, *, trial_id: str, config: dict[str, Any], epochs: int, retrained) -> dict[str, Any]:
    """Write <sweep>/retrain.json and the weights (<sweep>/best_model.pt); returns the record."""
    info = {
        "trial_id": trial_id, "config": config, "epochs": epochs,
        "test_acc": retrained.test_acc, "test_loss": retrained.test_loss,
        "history": [{k: v for k, v in row.items() if isinstance(v, (int, float))} for row in retrained.history],
        "classes": retrained.classes, "model_file": MODEL_FILE,
    }
    if "://" not in sweep_path:
        import torch

        torch.save(retrained.model.state_dict(), Path(sweep_path) / MODEL_FILE)
        _write_json(Path(sweep_path) / RETRAIN_FILE, info)
    return info


def update_retrained(sweep_path: str, **fields: Any) -> None:
    """Add fields (the logged model's URI, its registered version) to retrain.json."""
    info = load_retrained(sweep_path)
    if info is not None and "://" not in sweep_path:
        _write_json(Path(sweep_path) / RETRAIN_FILE, {**info, **fields})


def load_retrained(sweep_path: str) -> dict[str, Any] | None:
    try:
        return json.loads((Path(sweep_path) / RETRAIN_FILE).read_text())
    except (OSError, ValueError):
        return None


def final_steps(sweep, *, finished: bool, stream=None, tracker=None, out: str | os.PathLike = "reports") -> Path | None:
    """What `tune run` does after the trials: final.retrain_best (when the sweep finished) and
    final.report (attached to the MLflow parent run). A failure here is reported, never raised:
    the sweep's results are already safe. Returns the report folder, if written."""
    import sys

    stream = stream or sys.stdout
    spec, folder = sweep.spec, None
    if spec.final.retrain_best and finished:
        try:
            retrain_best(sweep, stream=stream, tracker=tracker)
        except Exception as e:  # noqa: BLE001
            print(f"final: retraining the best configuration failed: {type(e).__name__}: {e}", file=stream)
        if tracker is not None:
            tracker.wait(60, quiet=True)  # the logged model's URI and version, for the report
    if spec.final.report:
        try:
            folder = write_report(sweep, out)
        except Exception as e:  # noqa: BLE001
            print(f"final: writing the report failed: {type(e).__name__}: {e}", file=stream)
            return None
        print(f"report: {folder / 'report.md'} (and report.html)", file=stream)
        if tracker is not None:
            tracker.log_report(folder)
    return folder


def retrain_best(sweep, *, stream=None, tracker=None) -> dict[str, Any] | None:
    """final.retrain_best: the best trial's configuration trained again for the full epochs on this
    (the driver's) machine and scored on the held-out test split; recorded in the sweep folder and,
    with a tracker, logged to the parent run (test metrics, the model, registered if asked).
    A configuration already retrained (an earlier run of this sweep) is not trained again."""
    import sys

    from trainables.engine import retrain

    stream = stream or sys.stdout
    spec, best = sweep.spec, sweep.best()
    if best is None or spec.trainable != "classifier":
        why = f"no trial has a {spec.metric}" if best is None else "retrain_best needs the classifier trainable"
        print(f"final: {why}; nothing retrained", file=stream)
        return None
    info, model, example = load_retrained(sweep.path), None, None
    if not (info and info.get("trial_id") == best.trial_id and info.get("config") == best.config
            and info.get("epochs") == spec.epochs):
        print(f"final: retraining trial {best.trial_id}'s configuration for {spec.epochs} epochs, "
              f"then scoring the test split...", file=stream, flush=True)
        r = retrain(best.config, dataset=spec.dataset, epochs=spec.epochs)
        info = save_retrained(sweep.path, trial_id=best.trial_id, config=best.config, epochs=spec.epochs, retrained=r)
        model, example = r.model, r.example
    print(f"final: retrained best: test_acc={_fmt(info['test_acc'])} test_loss={_fmt(info['test_loss'])}", file=stream)
    if tracker is not None and not info.get("model_uri"):
        if model is None:
            model, example = _load_model(sweep, info)
        path = sweep.path
        tracker.log_retrained(info, model, example, on_logged=lambda got: update_retrained(path, **got))
    return info


def _load_model(sweep, info: dict[str, Any]):
    """The retrained model (and one test input) from best_model.pt, to log it again."""
    import torch

    from trainables.engine import build

    model, splits, _ = build(info["config"], sweep.spec.dataset, torch.device("cpu"))
    model.load_state_dict(torch.load(Path(sweep.path) / info.get("model_file", MODEL_FILE), map_location="cpu", weights_only=True))
    split = splits.test if len(splits.test) else splits.val
    x, _ = next(iter(split.batches(1, shuffle=False, generator=None, augment=False)))
    return model, x.cpu()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


# ---- a document written as Markdown and as HTML -----------------------------------------

@dataclass
class _Doc:
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", headers, [[str(c) for c in r] for r in rows]))

    def img(self, rel: str, caption: str) -> None:
        self.blocks.append(("img", rel, caption))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "table":
                cell = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
                out.append("\n".join(["| " + " | ".join(map(cell, b[1])) + " |", "|" + "---|" * len(b[1])]
                                     + ["| " + " | ".join(map(cell, r)) + " |" for r in b[2]]))
            else:
                out.append(f"![{b[2]}]({b[1]})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        out = [f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{e(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
               "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
               "th{background:#f3f3f3}img{max-width:100%}figure{margin:1em 0}code{background:#f3f3f3}</style></head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{_inline_html(b[1])}</p>")
            elif b[0] == "table":
                out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>"
                           + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b[2]) + "</table>")
            else:
                out.append(f"<figure><img src='{e(b[1])}' alt='{e(b[2])}'><figcaption>{e(b[2])}</figcaption></figure>")
        return "\n".join(out) + "\n</body></html>\n"


def _inline_html(text: str) -> str:
    """Escape, then `code` spans and **bold** as the Markdown shows them."""
    parts = html.escape(text).split("`")
    s = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    bold = s.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(bold))


# ---- values -----------------------------------------------------------------------------

def yaml_value(v: Any) -> str:
    """A value as `tune best` prints it (YAML flow style): what the best-hyperparameters table shows."""
    import yaml

    text = yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def label(v: Any) -> str:
    """A short label for plots: lists as [a,b,c], floats with 3 significant digits."""
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _numeric(p: Param) -> bool:
    return isinstance(p, (Uniform, Int))


def _log(p: Param) -> bool:
    return bool(getattr(p, "log", False))


def _scored(sweep) -> list:
    """Trials with a value of the metric, in trial order."""
    return [t for t in sweep.trials if t.value(sweep.spec.metric) is not None]


def _epochs_of(history) -> list[int]:
    col = "epoch" if "epoch" in history.columns else "training_iteration"
    return [int(x) for x in history[col]]


# ---- figures: one function each; False when there is nothing to draw --------------------

def _figure(path: Path, draw: Callable[[Any], Any], *, size=(6.4, 4.2)) -> bool:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size)
    try:
        if draw(fig) is False:
            return False
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        return True
    finally:
        plt.close(fig)


def fig_metric_vs_param(sweep, name: str, path: Path) -> bool:
    spec, p = sweep.spec, sweep.spec.space[name]
    trials = [t for t in _scored(sweep) if name in t.config]
    if not trials:
        return False
    best = sweep.best()

    def draw(fig):
        ax = fig.add_subplot()
        if _numeric(p):
            xs = [float(t.config[name]) for t in trials]
        else:
            cats = [label(v) for v in p.candidates()]
            cats += sorted({label(t.config[name]) for t in trials} - set(cats))
            pos = {c: i for i, c in enumerate(cats)}
            xs = [pos[label(t.config[name])] + 0.08 * ((zlib.crc32(t.trial_id.encode()) % 7) - 3) / 3 for t in trials]
            ax.set_xticks(range(len(cats)), cats, rotation=20 if max(map(len, cats)) > 6 else 0, fontsize=8)
        ys = [t.value(spec.metric) for t in trials]
        ax.scatter(xs, ys, c=[STATUS_COLORS.get(t.status, "gray") for t in trials], alpha=0.8, edgecolors="k", linewidths=0.4)
        if best in trials:
            i = trials.index(best)
            ax.scatter([xs[i]], [ys[i]], marker="*", s=260, c="gold", edgecolors="k", zorder=3, label="best")
            ax.legend(loc="best", fontsize=8)
        if _numeric(p) and _log(p):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(spec.metric)
        ax.set_title(f"{spec.metric} vs {name}")
        ax.grid(alpha=0.3)

    return _figure(path, draw)


def fig_parallel(sweep, path: Path) -> bool:
    spec = sweep.spec
    names = spec.searched
    trials = _scored(sweep)
    if not names or not trials:
        return False
    axes = names + [spec.metric]
    space = spec.space

    def scale(name: str):
        """value -> [0, 1] on this axis, and the axis's tick labels."""
        if name == spec.metric:
            vals = [t.value(spec.metric) for t in trials]
            lo, hi = min(vals), max(vals)
            return (lambda v: 0.5 if hi == lo else (v - lo) / (hi - lo)), [(0, _fmt(lo, 3)), (1, _fmt(hi, 3))]
        p = space[name]
        if _numeric(p):
            lo, hi = float(p.low), float(p.high)
            f = (lambda v: math.log(v)) if _log(p) else float
            span = f(hi) - f(lo)
            return (lambda v: (f(float(v)) - f(lo)) / span if span else 0.5), [(0, label(lo)), (1, label(hi))]
        cats = [label(v) for v in p.candidates()]
        cats += sorted({label(t.config[name]) for t in trials if name in t.config} - set(cats))
        n = max(len(cats) - 1, 1)
        return (lambda v: cats.index(label(v)) / n), [(i / n, c) for i, c in enumerate(cats)]

    scales = {a: scale(a) for a in axes}

    def draw(fig):
        import matplotlib.pyplot as plt

        ax = fig.add_subplot()
        vals = [t.value(spec.metric) for t in trials]
        lo, hi = min(vals), max(vals)
        cmap = plt.get_cmap("viridis" if spec.mode == "max" else "viridis_r")
        for t in sorted(trials, key=lambda t: t.value(spec.metric), reverse=spec.mode == "min"):
            pts = [(i, scales[a][0](t.value(spec.metric) if a == spec.metric else t.config[a]))
                   for i, a in enumerate(axes) if a == spec.metric or a in t.config]
            c = cmap(0.5 if hi == lo else (t.value(spec.metric) - lo) / (hi - lo))
            ax.plot([x for x, _ in pts], [y for _, y in pts], color=c, alpha=0.8, lw=1.4)
        for i, a in enumerate(axes):
            ax.axvline(i, color="k", lw=0.8)
            for y, text in scales[a][1]:
                ax.text(i + 0.03, y, text, fontsize=7, va="center")
        ax.set_xticks(range(len(axes)), axes, rotation=20, fontsize=8)
        ax.set_yticks([])
        ax.set_xlim(-0.2, len(axes) - 0.5)
        ax.set_title(f"parallel coordinates (colour: {spec.metric}, brighter is better)")

    return _figure(path, draw, size=(max(6.4, 1.5 * len(axes)), 4.5))


def importances(sweep) -> tuple[dict[str, float] | None, str]:
    """fANOVA importance of the searched parameters over the finished trials, and a note."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    spec = sweep.spec
    searched = {k: p for k, p in spec.space.items() if p.searched}
    trials = [t for t in _scored(sweep) if t.status != "errored"]
    if not searched:
        return None, "no parameter was searched."
    if len(trials) < 2:
        return None, f"needs at least 2 finished trials with a {spec.metric}; this sweep has {len(trials)}."

    def distribution(p: Param):
        if isinstance(p, Choice):
            return CategoricalDistribution([_choice_str(v) for v in p.values])
        if isinstance(p, Int):
            return IntDistribution(p.low, p.high, log=p.log)
        return FloatDistribution(p.low, p.high, log=p.log)

    dists = {k: distribution(p) for k, p in searched.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if spec.mode == "max" else "minimize")
    for t in trials:
        params = {}
        for k, d in dists.items():
            if k not in t.config:
                continue
            if isinstance(d, CategoricalDistribution):
                v = _choice_str(t.config[k])
                ok = v in d.choices
            else:
                v = t.config[k]
                ok = isinstance(v, (int, float)) and d.low <= v <= d.high  # PBT may step outside the bounds
            if ok:
                params[k] = v
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=t.value(spec.metric)))
    try:
        imp = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError) as e:
        return None, f"fANOVA could not be computed: {e}"
    absent = [k for k in searched if k not in imp]
    note = f"fANOVA (Optuna) over {len(trials)} finished trials."
    if absent:
        note += f" Not assessed (absent from some trials): {', '.join(absent)}."
    return dict(imp), note


def _choice_str(v: Any) -> str:
    """Categorical values as strings for Optuna: lists and mappings as JSON."""
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, tuple, dict)) else str(v)


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

    return _figure(path, draw, size=(6.4, 1.2 + 0.45 * len(imp)))


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
            ep = _epochs_of(h)
            ax1.plot(ep, h[spec.metric], marker="o", ms=3, color=c, label=f"{t.trial_id} ({_fmt(t.value(spec.metric), 3)})")
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

    return _figure(path, draw, size=(10, 4))


def fig_wall_time(sweep, path: Path) -> bool:
    trials = sweep.ranked() + [t for t in sweep.trials if t.value(sweep.spec.metric) is None]
    if not trials:
        return False

    def draw(fig):
        ax = fig.add_subplot()
        names = [t.trial_id for t in trials][::-1]
        secs = [t.seconds for t in trials][::-1]
        ax.barh(names, secs, color=[STATUS_COLORS.get(t.status, "gray") for t in trials][::-1])
        for y, (s, t) in enumerate(zip(secs, trials[::-1])):
            ax.text(s, y, f" {s:.0f}s, {t.epochs} ep", va="center", fontsize=7)
        ax.set_xlabel("seconds (best trial at the top)")
        ax.set_title("wall time per trial (blue completed, orange stopped early, red errored)", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)

    return _figure(path, draw, size=(7, 1.2 + 0.3 * len(trials)))


def fig_models(sweep, path: Path) -> bool:
    spec = sweep.spec
    p = spec.space.get("model")
    if p is None or not p.searched:
        return False
    groups = _by_model(sweep)

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

    return _figure(path, draw)


def _by_model(sweep) -> dict[str, list]:
    groups: dict[str, list] = {}
    for t in sweep.ranked():
        groups.setdefault(str(t.config.get("model", "?")), []).append(t)
    return groups


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

    return _figure(path, draw)


# ---- the report -------------------------------------------------------------------------

def write_report(sweep, out: str | os.PathLike = "reports") -> Path:
    """Write <out>/<name>/report.md, report.html and figures/*.png; returns the folder.

    `out` is relative to the current directory (the default: ./reports)."""
    folder = Path(out) / sweep.spec.name
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("*.png"):  # a report is rewritten whole: no figure of an earlier one stays
        old.unlink()
    doc = _Doc()
    retrained = load_retrained(sweep.path) if "://" not in sweep.path else None
    _overview(doc, sweep)
    _best_section(doc, sweep)
    _retrain_section(doc, sweep, retrained, figures)
    _leaderboard(doc, sweep)
    _parameters_section(doc, sweep, figures)
    _importance_section(doc, sweep, figures)
    _curves_section(doc, sweep, figures)
    _models_section(doc, sweep, figures)
    (folder / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (folder / "report.html").write_text(doc.html(f"Sweep {sweep.spec.name}"), encoding="utf-8")
    return folder


def _add_figure(doc: _Doc, figures: Path, name: str, caption: str, made: bool) -> None:
    if made:
        doc.img(f"figures/{name}", caption)


def _overview(doc: _Doc, sweep) -> None:
    from trainables.tracking import read_run_file

    s, c = sweep.spec, sweep.counts()
    doc.h(1, f"Sweep {s.name}")
    if s.description:
        doc.p(s.description)
    doc.p(f"{len(sweep.trials)} trials: {c['completed']} completed, {c['stopped early']} stopped early, "
          f"{c['errored']} errored. Metric **{s.metric}** ({s.mode}); {s.search.algorithm} search, "
          f"{s.scheduler.name} scheduler; dataset {s.dataset.name}; up to {s.epochs} epochs per trial; "
          f"{sum(t.seconds for t in sweep.trials):.0f}s of training over all trials.")
    doc.p(f"Results: `{sweep.path}`. Best configuration as YAML: `tune best {s.name}`.")
    run = read_run_file(sweep.path) if "://" not in sweep.path else {}
    if run.get("run_id"):
        doc.p(f"MLflow: experiment `{run.get('experiment', s.experiment)}`, parent run `{run['run_id']}` at "
              f"`{run.get('tracking_uri', '')}` (one nested child run per trial; this report is attached to the parent "
              f"run's artifacts under report/).")


def _best_section(doc: _Doc, sweep) -> None:
    s, best = sweep.spec, sweep.best()
    doc.h(2, "Best hyperparameters")
    if best is None:
        doc.p(f"No trial reported {s.metric} yet.")
        return
    doc.p(f"Trial `{best.trial_id}`: {s.metric} = {_fmt(best.value(s.metric))} after {best.epochs} epochs ({best.status}).")
    searched = set(s.searched)
    doc.table(["parameter", "value", "searched"],
              [[k, yaml_value(v), "yes" if k in searched else ""] for k, v in best.config.items()])


def _retrain_section(doc: _Doc, sweep, info: dict[str, Any] | None, figures: Path) -> None:
    if not info:
        return
    doc.h(2, "Retrained best model (held-out test split)")
    last = info["history"][-1] if info.get("history") else {}
    rows = [["trial", info["trial_id"]], ["epochs", info["epochs"]], ["test_acc", _fmt(info.get("test_acc"))],
            ["test_loss", _fmt(info.get("test_loss"))], ["final val_acc", _fmt(last.get("val_acc"))]]
    if info.get("model_uri"):
        rows.append(["MLflow model", info["model_uri"]])
    if info.get("registered_model"):
        rows.append(["registered model", f"{info['registered_model']} version {info.get('registered_model_version')}"])
    doc.table(["", "value"], rows)
    _add_figure(doc, figures, "retrain.png", "the retrained model's accuracy per epoch and its test accuracy",
                fig_retrain(info, sweep.spec.metric, figures / "retrain.png"))


def _leaderboard(doc: _Doc, sweep) -> None:
    s = sweep.spec
    ranked = sweep.ranked()
    rest = [t for t in sweep.trials if t not in ranked]
    doc.h(2, "Leaderboard")
    rows = []
    for i, t in enumerate((ranked + rest)[:LEADERBOARD], 1):
        rows.append([i if t in ranked else "-", t.trial_id, _fmt(t.value(s.metric)), t.epochs, t.status, f"{t.seconds:.0f}",
                     *(label(t.config[k]) if k in t.config else "-" for k in s.searched)])
    doc.table(["rank", "trial", s.metric, "epochs", "status", "seconds", *s.searched], rows)
    if len(sweep.trials) > LEADERBOARD:
        doc.p(f"({len(sweep.trials) - LEADERBOARD} more trials not shown.)")


def _parameters_section(doc: _Doc, sweep, figures: Path) -> None:
    s = sweep.spec
    if not s.searched:
        return
    doc.h(2, f"{s.metric} vs each searched parameter")
    for name in s.searched:
        doc.h(3, name)
        _add_figure(doc, figures, f"param_{_safe(name)}.png", f"{s.metric} vs {name} (star: best trial)",
                    fig_metric_vs_param(sweep, name, figures / f"param_{_safe(name)}.png"))
        p = s.space[name]
        if not _numeric(p):
            rows = []
            for v in p.candidates():
                got = [t.value(s.metric) for t in _scored(sweep) if name in t.config and t.config[name] == v]
                best = (max if s.mode == "max" else min)(got) if got else None
                rows.append([label(v), len(got), _fmt(sum(got) / len(got) if got else None), _fmt(best)])
            doc.table([name, "trials", f"mean {s.metric}", f"best {s.metric}"], rows)
    doc.h(2, "Parallel coordinates")
    _add_figure(doc, figures, "parallel_coordinates.png", "every trial across the searched parameters",
                fig_parallel(sweep, figures / "parallel_coordinates.png"))


def _importance_section(doc: _Doc, sweep, figures: Path) -> None:
    doc.h(2, "Parameter importance")
    imp, note = importances(sweep)
    doc.p(note)
    if imp:
        doc.table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in imp.items()])
        _add_figure(doc, figures, "importance.png", "fANOVA parameter importance", fig_importance(imp, figures / "importance.png"))


def _curves_section(doc: _Doc, sweep, figures: Path) -> None:
    doc.h(2, "Learning curves and wall time")
    _add_figure(doc, figures, "learning_curves.png", f"learning curves of the top {TOP_CURVES} trials",
                fig_learning_curves(sweep, figures / "learning_curves.png"))
    _add_figure(doc, figures, "wall_time.png", "wall time per trial", fig_wall_time(sweep, figures / "wall_time.png"))


def _models_section(doc: _Doc, sweep, figures: Path) -> None:
    s = sweep.spec
    p = s.space.get("model")
    if p is None or not p.searched:
        return
    doc.h(2, "Architecture comparison")
    others = [k for k in s.searched if k != "model"]
    rows = []
    for name, trials in _by_model(sweep).items():
        vals = [t.value(s.metric) for t in trials]
        best = trials[0]
        rows.append([name, len(trials), _fmt(best.value(s.metric)), _fmt(sum(vals) / len(vals)), best.trial_id,
                     *(label(best.config[k]) if k in best.config else "-" for k in others)])
    doc.p("The best configuration found for each model: do the best hyperparameters differ between them?")
    doc.table(["model", "trials", f"best {s.metric}", f"mean {s.metric}", "best trial", *others], rows)
    _add_figure(doc, figures, "models.png", f"{s.metric} by model", fig_models(sweep, figures / "models.png"))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
