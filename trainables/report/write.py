"""write_report: a sweep -> reports/<name>/ (design §8): report.md, report.html and figures/*.png.

`write_report(sweep, out)` takes a results.Sweep (finished or interrupted) and writes the
best hyperparameters, a leaderboard, metric-vs-parameter plots for every searched parameter,
a parallel-coordinates plot, fANOVA parameter importance, learning curves of the top trials,
wall time per trial, the architecture comparison when `model` was searched, and the
retrained best model's test metrics. The figures are figures.py's, the importance importance.py's.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trainables.errors import redact
from trainables.report.document import Document
from trainables.report.figures import (
    TOP_CURVES,
    fig_importance,
    fig_learning_curves,
    fig_metric_vs_param,
    fig_models,
    fig_parallel,
    fig_retrain,
    fig_wall_time,
)
from trainables.report.importance import importances
from trainables.report.pareto import pareto_section
from trainables.report.per_value import per_value_table
from trainables.report.values import by_model, fmt, label, numeric
from trainables.results.layout import atomic_write, read_run_file, sweep_arg
from trainables.results.retrained import load_retrained

LAYERS_SHOWN = 40  # names of the best trial's trainable layers in the report
LEADERBOARD = 25  # rows of the leaderboard


def yaml_value(v: Any) -> str:
    """A value as `tune best` prints it (YAML flow style): what the best-hyperparameters table shows."""
    import yaml

    text = yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def write_report(sweep, out: str | os.PathLike = "reports") -> Path:
    """Write <out>/<name>/report.md, report.html (its figures inside it) and figures/*.png; returns the folder.

    `out` is relative to the current directory (the default: ./reports)."""
    import shutil
    import tempfile

    folder = Path(out) / sweep.spec.name
    folder.mkdir(parents=True, exist_ok=True)
    # drawn beside the report, then put in place whole: an earlier report keeps its figures until this one has
    # its own, and no figure of the earlier one stays
    staged = Path(tempfile.mkdtemp(prefix=".figures-", dir=folder))
    staged.chmod(0o755)  # a folder as mkdir makes it (mkdtemp's is private)
    try:
        doc = _document(sweep, staged)
        figures = folder / "figures"
        if figures.is_dir() and not figures.is_symlink():
            shutil.rmtree(figures)
        elif figures.exists() or figures.is_symlink():
            figures.unlink()
        staged.rename(figures)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    atomic_write(folder / "report.md", doc.markdown())
    atomic_write(folder / "report.html", doc.html(f"Sweep {sweep.spec.name}", folder))
    return folder


def _document(sweep, figures: Path) -> Document:
    """The report's text, its figures drawn into `figures`."""
    doc = Document()
    retrained = load_retrained(sweep.path)
    _overview(doc, sweep)
    sections = {"best configuration": lambda: _best_section(doc, sweep),
                "Pareto front": lambda: pareto_section(doc, sweep, figures),
                "retrained model": lambda: _retrain_section(doc, sweep, retrained, figures),
                "leaderboard": lambda: _leaderboard(doc, sweep),
                "parameters": lambda: _parameters_section(doc, sweep, figures),
                "importance": lambda: _importance_section(doc, sweep, figures),
                "learning curves": lambda: _curves_section(doc, sweep, figures),
                "models": lambda: _models_section(doc, sweep, figures)}
    for title, section in sections.items():
        try:
            section()
        except Exception as e:  # noqa: BLE001 - records a damaged folder holds: the rest is still reported
            doc.p(f"(The {title} section could not be written from this sweep's records: "
                  f"{type(e).__name__}: {redact(str(e))[:200]})")
    return doc


def _add_figure(doc: Document, name: str, caption: str, made: bool) -> None:
    if made:
        doc.img(f"figures/{name}", caption)


def _overview(doc: Document, sweep) -> None:
    s, c = sweep.spec, sweep.counts()
    doc.h(1, f"Sweep {s.name}")
    if s.description:
        doc.p(s.description)
    goal = (f"Objectives {', '.join(f'**{m}** ({d})' for m, d in s.objectives)}" if s.multi
            else f"Metric **{s.metric}** ({s.mode})")
    what = (f"program `{s.program.file}`, run until it ends" if s.program is not None
            else f"dataset {s.dataset.name}; up to {s.epochs} epochs per trial")
    doc.p(f"{len(sweep.trials)} trials: {c['completed']} completed, {c['stopped early']} stopped early, "
          f"{c['errored']} errored. {goal}; {s.search.algorithm} search, {s.scheduler.name} scheduler; {what}; "
          f"{sum(t.seconds for t in sweep.trials):.0f}s of training over all trials.")
    doc.p(f"Results: `{redact(sweep.path)}`. Best configuration as YAML: `tune best {sweep_arg(sweep.path, s.name)}`.")
    run = read_run_file(sweep.path)
    if run.get("run_id"):
        doc.p(f"MLflow: experiment `{run.get('experiment', s.experiment)}`, parent run `{run['run_id']}` at "
              f"`{redact(str(run.get('tracking_uri', '')))}` (one nested child run per trial; this report is attached "
              f"to the parent run's artifacts under report/).")


def _best_section(doc: Document, sweep) -> None:
    s, best = sweep.spec, sweep.best()
    doc.h(2, "Best hyperparameters")
    if best is None:
        doc.p(f"No trial reported {s.metric} yet.")
        return
    doc.p(f"Trial `{best.trial_id}`: {s.metric} = {fmt(best.value(s.metric))} after {best.epochs} epochs "
          f"({best.status}).")
    searched = set(s.searched)
    doc.table(["parameter", "value", "searched"],
              [[k, yaml_value(v), "yes" if k in searched else ""] for k, v in best.config.items()])
    layers = best.trainable_layers
    if layers:
        shown = ", ".join(f"`{n}`" for n in layers[:LAYERS_SHOWN]) + (
            f" and {len(layers) - LAYERS_SHOWN} more" if len(layers) > LAYERS_SHOWN else "")
        doc.p(f"Layers that train in this trial ({len(layers)}, input to output): {shown}. Every trial's list is "
              f"in its MLflow run (trainable_layers.txt).")


def _retrain_section(doc: Document, sweep, info: dict[str, Any] | None, figures: Path) -> None:
    if not info:
        return
    doc.h(2, "Retrained best model (held-out test split)")
    last = info["history"][-1] if info.get("history") else {}
    rows = [["trial", info["trial_id"]], ["epochs", info["epochs"]], ["test_acc", fmt(info.get("test_acc"))],
            ["test_loss", fmt(info.get("test_loss"))], ["final val_acc", fmt(last.get("val_acc"))]]
    if info.get("node"):
        rows.append(["trained on", f"{info['node']}, {info.get('precision', 'fp32')}"])
    if info.get("model_uri"):
        rows.append(["MLflow model", info["model_uri"]])
    if info.get("registered_model"):
        rows.append(["registered model", f"{info['registered_model']} version {info.get('registered_model_version')}"])
    doc.table(["", "value"], rows)
    _add_figure(doc, "retrain.png", "the retrained model's accuracy per epoch and its test accuracy",
                fig_retrain(info, sweep.spec.metric, figures / "retrain.png"))


def _leaderboard(doc: Document, sweep) -> None:
    s = sweep.spec
    ranked = sweep.ranked()
    rest = [t for t in sweep.trials if t not in ranked]
    doc.h(2, "Leaderboard")
    rows = []
    for i, t in enumerate((ranked + rest)[:LEADERBOARD], 1):
        rows.append([i if t in ranked else "-", t.trial_id, fmt(t.value(s.metric)), t.epochs, t.status,
                     f"{t.seconds:.0f}", *(label(t.config[k]) if k in t.config else "-" for k in s.searched)])
    doc.table(["rank", "trial", s.metric, "epochs", "status", "seconds", *s.searched], rows)
    if len(sweep.trials) > LEADERBOARD:
        doc.p(f"({len(sweep.trials) - LEADERBOARD} more trials not shown.)")


def _parameters_section(doc: Document, sweep, figures: Path) -> None:
    s = sweep.spec
    if not s.searched:
        return
    doc.h(2, f"{s.metric} vs each searched parameter")
    for name in s.searched:
        doc.h(3, name)
        _add_figure(doc, f"param_{_safe(name)}.png", f"{s.metric} vs {name} (star: best trial)",
                    fig_metric_vs_param(sweep, name, figures / f"param_{_safe(name)}.png"))
        if not numeric(s.space[name]):
            headers, rows, note = per_value_table(sweep, name)
            doc.table(headers, rows)
            if note:
                doc.p(note)
    doc.h(2, "Parallel coordinates")
    _add_figure(doc, "parallel_coordinates.png", "every trial across the searched parameters",
                fig_parallel(sweep, figures / "parallel_coordinates.png"))


def _importance_section(doc: Document, sweep, figures: Path) -> None:
    doc.h(2, "Parameter importance")
    imp, note = importances(sweep)
    doc.p(note)
    if imp:
        doc.table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in imp.items()])
        _add_figure(doc, "importance.png", "fANOVA parameter importance",
                    fig_importance(imp, figures / "importance.png"))


def _curves_section(doc: Document, sweep, figures: Path) -> None:
    doc.h(2, "Learning curves and wall time")
    _add_figure(doc, "learning_curves.png", f"learning curves of the top {TOP_CURVES} trials",
                fig_learning_curves(sweep, figures / "learning_curves.png"))
    _add_figure(doc, "wall_time.png", "wall time per trial", fig_wall_time(sweep, figures / "wall_time.png"))


def _models_section(doc: Document, sweep, figures: Path) -> None:
    s = sweep.spec
    p = s.space.get("model")
    if p is None or not p.searched:
        return
    doc.h(2, "Architecture comparison")
    others = [k for k in s.searched if k != "model"]
    rows = []
    for name, trials in by_model(sweep).items():
        vals = [t.value(s.metric) for t in trials]
        best = trials[0]
        rows.append([name, len(trials), fmt(best.value(s.metric)), fmt(sum(vals) / len(vals)), best.trial_id,
                     *(label(best.config[k]) if k in best.config else "-" for k in others)])
    doc.p("The best configuration found for each model: do the best hyperparameters differ between them?")
    doc.table(["model", "trials", f"best {s.metric}", f"mean {s.metric}", "best trial", *others], rows)
    _add_figure(doc, "models.png", f"{s.metric} by model", fig_models(sweep, figures / "models.png"))


def _safe(name: str) -> str:
    """A parameter name as a file name: anything but letters, digits and -_. becomes _."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
