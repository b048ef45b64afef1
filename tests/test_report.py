"""reports/<name>/ (design §8): from sweeps made here (fast) and from a real sweep through `tune report`."""
from __future__ import annotations

import base64
import math
import random
import re
import shutil
from html.parser import HTMLParser

import pandas as pd
import pytest
import torch
import yaml

from tests.helpers import run_cli, write
from trainables.core.engine import Retrained
from trainables.core.retrained import packed
from trainables.report.figures import fig_metric_vs_param, fig_parallel
from trainables.report.importance import importances
from trainables.report.values import label
from trainables.report.write import write_report, yaml_value
from trainables.results.read import Sweep, TrialRecord
from trainables.results.retrained import load_retrained, save_retrained
from trainables.spec.load import parse_spec
from trainables.tracking.models import package_model

SYNTH = """\
name: synth
dataset: {name: digits}
epochs: 4
parameters:
  model: {grid: [cnn, mnist_mode]}
  lr: {loguniform: [1.0e-4, 1.0e-2]}
  batch_size: {choice: [32, 64]}
  optimizer: {choice: [adam, sgd]}
  momentum: {uniform: [0.5, 0.9], when: {optimizer: sgd}}
search: {algorithm: random, num_samples: 5}
scheduler: {name: asha, grace_period: 1}
"""


def synthetic_sweep(path, n: int = 12, seed: int = 0) -> Sweep:
    """A sweep as results.load_sweep returns it: val_acc rises with lr (so lr matters), one trial errored."""
    rng = random.Random(seed)
    spec = parse_spec(SYNTH, file="synth.yaml")
    trials = []
    for i in range(n):
        config = {"model": ["cnn", "mnist_mode"][i % 2], "lr": 10 ** rng.uniform(-4, -2),
                  "batch_size": rng.choice([32, 64]), "optimizer": rng.choice(["adam", "sgd"])}
        if config["optimizer"] == "sgd":
            config["momentum"] = rng.uniform(0.5, 0.9)
        if i == n - 1:
            trials.append(TrialRecord(f"t{i:02d}", "errored", config, {}, None, error="boom"))
            continue
        epochs = 4 if i % 3 else 2
        quality = (math.log10(config["lr"]) + 4) / 2  # 0 .. 1
        rows = [{"epoch": e, "training_iteration": e, "val_acc": 0.3 + 0.5 * quality * e / 4 + 0.01 * rng.random(),
                 "val_loss": 2 - quality * e / 4, "train_loss": 2.1 - quality * e / 4,
                 "train_acc": 0.3 + 0.6 * quality * e / 4,
                 "time_total_s": 1.5 * e, "config/lr": config["lr"]} for e in range(1, epochs + 1)]
        history = pd.DataFrame(rows)
        status = "completed" if epochs == 4 else "stopped early"
        trials.append(TrialRecord(f"t{i:02d}", status, config, dict(rows[-1]), history))
    return Sweep(spec=spec, path=str(path), trials=trials)


def test_report_has_every_section_and_figure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = synthetic_sweep(tmp_path / "results" / "synth")
    folder = write_report(sweep)  # relative to the current directory: ./reports/synth
    assert folder == tmp_path / "reports" / "synth" or folder.resolve() == tmp_path / "reports" / "synth"
    figures = {p.name for p in (tmp_path / "reports/synth/figures").glob("*.png")}
    assert figures == {"param_model.png", "param_lr.png", "param_batch_size.png", "param_optimizer.png",
                       "param_momentum.png", "parallel_coordinates.png", "importance.png", "learning_curves.png",
                       "wall_time.png", "models.png"}
    md = (tmp_path / "reports/synth/report.md").read_text()
    for heading in ("Best hyperparameters", "Leaderboard", "val_acc vs each searched parameter", "Parallel coordinates",
                    "Parameter importance", "Learning curves and wall time", "Architecture comparison"):
        assert f"## {heading}" in md
    for name in figures:  # every figure is shown, in both documents
        assert f"(figures/{name})" in md
    html = (tmp_path / "reports/synth/report.html").read_text()
    assert html.count("<img ") == len(figures) and html.count("<table>") >= 5
    assert "mnist_mode" in md.split("## Architecture comparison", 1)[1] and "| cnn |" in md
    assert "| t11 |" in md and "errored" in md  # the errored trial is on the leaderboard, unranked


def test_best_table_is_tune_best(tmp_path):
    sweep = synthetic_sweep(tmp_path)
    folder = write_report(sweep, tmp_path / "out")
    md = (folder / "report.md").read_text()
    section = md.split("## Best hyperparameters\n", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ")][1:]
    table = {r.strip("|").split(" | ")[0].strip(): r.strip("|").split(" | ")[1].strip() for r in rows}
    best = sweep.best()
    assert {k: yaml.safe_load(v) for k, v in table.items()} == best.config
    assert yaml_value([3, 5, 7]) == "[3, 5, 7]" and yaml.safe_load(yaml_value(1e-4)) == 1e-4


def test_fanova_importance_over_finished_trials(tmp_path):
    sweep = synthetic_sweep(tmp_path, n=16)
    imp, note = importances(sweep)
    assert set(imp) == {"model", "lr", "batch_size", "optimizer"}  # momentum exists only with sgd
    assert max(imp, key=imp.get) == "lr" and sum(imp.values()) == pytest.approx(1.0)
    assert "15 finished trials" in note and "momentum" in note
    one = Sweep(spec=sweep.spec, path=str(tmp_path), trials=sweep.trials[:1])
    assert importances(one)[0] is None and "at least 2" in importances(one)[1]


def test_a_model_that_cannot_be_packed_keeps_its_weights_and_scores(tmp_path):
    """MLflow failing to save the model (a class it cannot pickle, a full temporary disk) must not lose
    the retrain: the weights and test scores are kept, and why there is no MLflow model is recorded."""
    def refuse(model, example):
        raise OSError(28, "No space left on device")

    model = torch.nn.Linear(4, 2)
    r = packed(Retrained(model, test_loss=0.5, test_acc=0.75, history=[], example=torch.zeros(1, 4), classes=["a"]),
               refuse)
    assert r.files == {} and "No space left on device" in r.package_error
    info = save_retrained(str(tmp_path), trial_id="t", config={"lr": 0.1}, epochs=1, retrained=r)
    assert info["package_error"] == r.package_error and "model_dir" not in info
    assert not (tmp_path / "best_model").exists()
    weights = torch.load(tmp_path / "best_model.pt", weights_only=True)
    assert torch.equal(weights["weight"], model.weight)


def test_the_retrained_model_takes_its_place_in_a_damaged_sweep_folder(tmp_path):
    """What a damaged results folder holds where the model goes (a file named best_model, a folder named
    best_model.pt, a link to somewhere else) is replaced; what a link pointed at is left alone."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the sweep's")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    model = torch.nn.Linear(4, 2)
    for damage in ("file", "folder", "link"):
        for name in ("best_model", "best_model.pt"):
            path = sweep / name
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)
            if damage == "file":
                path.write_text("junk")
            elif damage == "folder":
                (path / "inner").mkdir(parents=True)
            else:
                path.symlink_to(elsewhere)
        r = packed(Retrained(model, test_loss=0.5, test_acc=0.75, history=[], example=torch.zeros(1, 4),
                             classes=["a", "b"]), package_model)
        info = save_retrained(str(sweep), trial_id="t", config={"lr": 0.1}, epochs=1, retrained=r)
        assert info["model_dir"] == "best_model" and (sweep / "best_model" / "MLmodel").is_file(), damage
        assert not (sweep / "best_model").is_symlink() and (sweep / "best_model.pt").is_file(), damage
        assert torch.equal(torch.load(sweep / "best_model.pt", weights_only=True)["weight"], model.weight)
    assert (elsewhere / "keep.txt").read_text() == "not the sweep's" and len(list(elsewhere.iterdir())) == 1


def test_a_retrain_json_naming_another_folder_is_not_followed(tmp_path):
    """retrain.json is a file in the sweep folder: a model_dir it names elsewhere is never the model logged."""
    from trainables.results.retrained import model_dir

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "MLmodel").write_text("flavors: {}")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    assert model_dir(str(sweep), {"model_dir": "../elsewhere"}) is None
    (sweep / "best_model").mkdir()
    (sweep / "best_model" / "MLmodel").write_text("flavors: {}")
    assert model_dir(str(sweep), {"model_dir": "../elsewhere"}) == sweep / "best_model"
    assert model_dir(str(sweep), {}) is None  # a record made before there was an MLflow model folder


def test_retrained_model_in_the_report(tmp_path):
    sweep_dir = tmp_path / "results" / "synth"
    sweep_dir.mkdir(parents=True)
    sweep = synthetic_sweep(sweep_dir)
    best = sweep.best()
    history = [{"epoch": e, "train_acc": 0.5 + e / 10, "val_acc": 0.4 + e / 10, "train_loss": 1.0 / e}
               for e in (1, 2, 3, 4)]
    model = torch.nn.Linear(4, 2)
    r = packed(Retrained(model, test_loss=0.4321, test_acc=0.8765, history=history, example=torch.zeros(1, 4),
                         classes=["a", "b"]), package_model)
    save_retrained(str(sweep_dir), trial_id=best.trial_id, config=best.config, epochs=4, retrained=r)
    assert load_retrained(str(sweep_dir))["test_acc"] == 0.8765
    # the weights, and the model as an MLflow model folder, as the driver got them (bytes: it has no torch)
    weights = torch.load(sweep_dir / "best_model.pt", weights_only=True)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    import mlflow.pytorch

    x = torch.randn(5, 4)
    assert torch.equal(mlflow.pytorch.load_model(str(sweep_dir / "best_model"))(x), model(x))
    folder = write_report(sweep, tmp_path / "reports")
    md = (folder / "report.md").read_text()
    section = md.split("## Retrained best model", 1)[1].split("\n## ", 1)[0]
    assert "| test_acc | 0.8765 |" in section and "| test_loss | 0.4321 |" in section and best.trial_id in section
    assert (folder / "figures/retrain.png").is_file()


def test_a_rewritten_report_keeps_no_stale_figure(tmp_path):
    sweep = synthetic_sweep(tmp_path)
    folder = write_report(sweep, tmp_path / "reports")
    (folder / "figures/param_gone.png").write_bytes(b"old")
    write_report(sweep, tmp_path / "reports")
    assert not (folder / "figures/param_gone.png").exists()


def test_report_of_an_unknown_sweep_exits_2(tmp_path):
    proc = run_cli("report", "nothing-here", cwd=tmp_path)
    assert proc.returncode == 2 and "no sweep named 'nothing-here'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_tune_report_of_a_real_sweep_matches_tune_best(ray_address, tmp_path):
    spec = write(tmp_path / "real.yaml", """\
name: real
dataset: {name: digits, limit: 300}
epochs: 2
parameters:
  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 16
  lr: {loguniform: [1.0e-3, 1.0e-2]}
  activation: {choice: [relu, gelu]}
  batch_norm: {choice: [true, false]}
search: {algorithm: optuna, num_samples: 3, max_concurrent: 2, seed: 0}
scheduler: {name: fifo}
final: {report: false}
""")
    run_cli("run", spec, cwd=tmp_path, check=0)  # tracking: the default sqlite:///mlflow.db here
    assert not (tmp_path / "reports/real").exists()  # final.report: false
    proc = run_cli("report", "real", cwd=tmp_path, check=0)
    assert "attached to parent run" in proc.stdout and (tmp_path / "mlflow.db").is_file()
    folder = tmp_path / "reports/real"
    md = (folder / "report.md").read_text()
    section = md.split("## Best hyperparameters\n", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ")][1:]
    table = {r.strip("|").split(" | ")[0].strip(): yaml.safe_load(r.strip("|").split(" | ")[1]) for r in rows}
    best = yaml.safe_load(run_cli("best", "real", cwd=tmp_path, check=0).stdout)["parameters"]
    assert table == best
    assert len(list((folder / "figures").glob("*.png"))) >= 6
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "figures/" not in html


BOOLS = """\
name: bools
dataset: {name: digits}
epochs: 4
parameters:
  model: cnn
  lr: {loguniform: [LOW, HIGH]}
  batch_norm: {choice: [true, false]}
  filters: {choice: [[8, 8, 8, 8, 8], [16, 32, 64, 128, 256]]}
search: {algorithm: random, num_samples: 6}
scheduler: {name: asha, grace_period: 1}
"""


def bools_sweep(path, epochs=(1, 2, 4, 4, 2, 4), lr=(1.0e-3, 3.0e-3)) -> Sweep:
    """Booleans, long list categories and a log range (narrow by default); trial i stopped after epochs[i]
    (ASHA's rungs)."""
    spec = parse_spec(BOOLS.replace("LOW", repr(lr[0])).replace("HIGH", repr(lr[1])), file="bools.yaml")
    trials = []
    for i, n in enumerate(epochs):
        config = {"lr": lr[0] * (lr[1] / lr[0]) ** (i / (len(epochs) - 1)), "batch_norm": i % 2 == 0,
                  "filters": [[8, 8, 8, 8, 8], [16, 32, 64, 128, 256]][i // 3]}
        rows = [{"epoch": e, "training_iteration": e, "val_acc": 0.1 * e + 0.01 * i, "time_total_s": float(e)}
                for e in range(1, n + 1)]
        trials.append(TrialRecord(f"b{i}", "completed" if n == 4 else "stopped early", config, dict(rows[-1]),
                                  pd.DataFrame(rows)))
    return Sweep(spec=spec, path=str(path), trials=trials)


@pytest.fixture
def saved_figures(monkeypatch):
    """Every figure the report saves, with savefig's keywords; the figure stays inspectable after it is closed."""
    from matplotlib.figure import Figure

    saved = []
    original = Figure.savefig

    def record(self, fname, *args, **kwargs):
        saved.append((self, kwargs))
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


def test_html_embeds_every_figure_and_markdown_links_them(tmp_path):
    folder = write_report(synthetic_sweep(tmp_path), tmp_path / "reports")
    files = sorted((folder / "figures").glob("*.png"))
    html = (folder / "report.html").read_text()
    parser = _Images()
    parser.feed(html)
    assert len(parser.srcs) == len(files) == 10
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src in parser.srcs)
    embedded = [base64.b64decode(src[len(prefix):], validate=True) for src in parser.srcs]
    assert all(b.startswith(b"\x89PNG") for b in embedded)
    assert sorted(embedded) == sorted(f.read_bytes() for f in files)  # the very figures written beside it
    assert "figures/" not in html  # nothing that breaks once the page is opened from MLflow's artifacts
    md_links = re.findall(r"!\[[^]]*\]\((figures/[^)]+\.png)\)", (folder / "report.md").read_text())
    assert len(md_links) == len(files) and all((folder / link).is_file() for link in md_links)


def test_parallel_coordinates_has_a_colour_bar_of_the_line_colours(tmp_path, saved_figures):
    sweep = synthetic_sweep(tmp_path)
    assert fig_parallel(sweep, tmp_path / "p.png")
    fig = saved_figures[0][0]
    bars = [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
    assert len(fig.axes) == 2 and len(bars) == 1
    bar, vals = bars[0], [t.value("val_acc") for t in sweep.trials if t.value("val_acc") is not None]
    assert (bar.norm.vmin, bar.norm.vmax) == pytest.approx((min(vals), max(vals)))
    plot = next(ax for ax in fig.axes if ax is not bar.ax)
    colours = sorted(tuple(line.get_color()) for line in plot.lines if len(set(line.get_xdata())) > 1)
    assert colours == pytest.approx(sorted(tuple(bar.cmap(bar.norm(v))) for v in vals))


def _x_tick_labels(ax, which: str) -> list:
    """The non-empty x tick labels drawn inside the view."""
    axis = ax.xaxis
    locs = axis.get_majorticklocs() if which == "major" else axis.get_minorticklocs()
    texts = axis.get_majorticklabels() if which == "major" else axis.get_minorticklabels()
    lo, hi = sorted(ax.get_xlim())
    return [t for x, t in zip(locs, texts, strict=False) if lo <= x <= hi and t.get_visible() and t.get_text()]


@pytest.mark.parametrize("bounds", [(1.0e-3, 3.0e-3), (2.0e-3, 9.0e-3), (3.0e-4, 5.0e-3), (1.0e-7, 1.0e-1)])
def test_log_axis_labels_are_few_and_apart(tmp_path, saved_figures, bounds):
    sweep = bools_sweep(tmp_path, lr=bounds)
    assert fig_metric_vs_param(sweep, "lr", tmp_path / "lr.png")
    fig, kwargs = saved_figures[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and not _x_tick_labels(ax, "minor")
    labels = _x_tick_labels(ax, "major")
    assert 2 <= len(labels) <= 7
    boxes = [t.get_window_extent() for t in labels]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_figures_are_saved_with_every_label_inside(tmp_path, saved_figures):
    folder = write_report(bools_sweep(tmp_path), tmp_path / "reports")
    assert len(saved_figures) == len(list((folder / "figures").glob("*.png")))
    assert all(kw.get("bbox_inches") == "tight" for _, kw in saved_figures)  # what is drawn is what is saved


def test_booleans_read_true_false_in_plots_and_tables(tmp_path, saved_figures):
    assert (label(True), label(False), label(None), label([True, 0.5])) == ("true", "false", "null", "[true,0.5]")
    sweep = bools_sweep(tmp_path)
    assert fig_metric_vs_param(sweep, "batch_norm", tmp_path / "bn.png")
    assert fig_parallel(sweep, tmp_path / "par.png")
    ticks = [t.get_text() for t in saved_figures[0][0].axes[0].get_xticklabels()]
    assert ticks == ["true", "false"]
    texts = {t.get_text() for ax in saved_figures[1][0].axes for t in ax.texts}
    assert {"true", "false"} <= texts and not {"True", "False"} & texts
    md = (write_report(sweep, tmp_path / "reports") / "report.md").read_text()
    assert "True" not in md and "False" not in md
    table = md.split("### batch_norm\n", 1)[1].split("\n### ", 1)[0]
    assert "| true | 3 |" in table and "| false | 3 |" in table


def _table(md: str, name: str) -> tuple[list[str], list[list[str]], str]:
    section = md.split(f"### {name}\n", 1)[1].split("\n#", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    cells = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in lines]
    return cells[0], cells[1:], section


def test_per_value_tables_compare_trials_at_a_common_epoch(tmp_path):
    sweep = bools_sweep(tmp_path)  # epochs 1, 2, 4, 4, 2, 4; batch_norm true for trials 0, 2, 4
    md = (write_report(sweep, tmp_path / "reports") / "report.md").read_text()
    headers, rows, section = _table(md, "batch_norm")
    assert headers == ["batch_norm", "trials", "epochs", "mean val_acc", "best val_acc", "mean val_acc at epoch 1"]
    # last val_acc: 0.10 0.21 0.42 0.43 0.24 0.45; at epoch 1 (trial b0 went no further): 0.10 + 0.01 * i
    assert rows == [["true", "3", "1–4", "0.2533", "0.4200", "0.1200"],
                    ["false", "3", "2–4", "0.3633", "0.4500", "0.1300"]]
    assert "different epochs" in section and "epoch 1" in section

    even = bools_sweep(tmp_path, epochs=(4,) * 6)
    md = (write_report(even, tmp_path / "reports") / "report.md").read_text()
    headers, rows, section = _table(md, "batch_norm")
    assert headers == ["batch_norm", "trials", "epochs", "mean val_acc", "best val_acc"]
    assert [r[2] for r in rows] == ["4", "4"] and "different epochs" not in section


def test_a_tie_for_best_goes_to_the_first_trial_id_whatever_the_order_read():
    """Trials that tie on the metric (all at chance) were ranked in the order the folder was read, which
    differed between `tune run` and its --resume: another best trial, retrained and registered again."""
    from trainables.results.read import Sweep, TrialRecord
    from trainables.spec.load import parse_spec

    for mode, best in (("max", "b"), ("min", "d")):
        spec = parse_spec(f"name: t\ntrainable: tests.trainables_for_tests:reports_score\nmetric: score\nmode: {mode}\n"
                          "epochs: 3\nparameters: {x: {choice: [1, 2]}}\ntracking: {enabled: false}\n")
        trials = [TrialRecord(trial_id=i, status="completed", config={}, last={"score": v})
                  for i, v in (("c", 0.5), ("a", 0.5), ("b", 0.9), ("d", 0.1))]
        for order in (trials, trials[::-1]):
            ranked = [t.trial_id for t in Sweep(spec=spec, path="x", trials=order).ranked()]
            assert ranked[0] == best and ranked.index("a") < ranked.index("c"), ranked
