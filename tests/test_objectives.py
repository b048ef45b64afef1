"""Several objectives and constraints: Pareto sets from hand-made results, constraints parsed safely and
measured on the meta device, infeasible configurations never trained; then a real sweep."""
from __future__ import annotations

import pytest

from tests.helpers import write
from trainables.errors import SpecError
from trainables.results.pareto import dominates, front, hypervolume
from trainables.spec.constraints import Constraint, ConstraintError
from trainables.spec.load import parse_spec


def test_pareto_front_of_hand_made_results():
    modes = ["max", "min"]  # val_acc up, total_params down
    points = [(0.90, 100), (0.80, 50), (0.95, 200), (0.85, 150), (0.90, 100), (0.70, 60), (0.95, 250)]
    assert front(points, modes) == [0, 1, 2, 4]  # ties both stay; (0.85, 150) and (0.70, 60) are dominated
    assert dominates((0.9, 50), (0.9, 60), modes) and not dominates((0.9, 60), (0.9, 60), modes)
    assert front([(1, 2, 3)], ["min"] * 3) == [0]


def test_hypervolume_of_two_objectives():
    assert hypervolume([(1, 1)], ["min", "min"], (2, 2)) == 1.0
    assert hypervolume([(1, 1), (0.5, 1.5), (1.5, 1.5)], ["min", "min"], (2, 2)) == 1.25  # the last adds none
    assert hypervolume([(0.9, 100)], ["max", "min"], (0.0, 1000)) == pytest.approx(810.0)
    assert hypervolume([(3, 3)], ["min", "min"], (2, 2)) == 0.0  # beyond the reference: nothing


@pytest.mark.parametrize("text, violation", [
    ("total_params <= 2e6", 0.0), ("total_params <= 1000", 1500 - 1000), ("batch_size * image_size >= 1024", 0.0),
    ("1 < lr * 10 < 3", 0.0), ("lr < 0.1 and batch_size == 64", 32.1), ("-lr > 0", 0.2 + 1.0 * 0), ("2 ** 3 != 8", 1.0),
])
def test_constraints_are_arithmetic_and_comparisons(text, violation):
    values = {"total_params": 1500, "batch_size": 32, "image_size": 32, "lr": 0.2}
    assert Constraint.parse(text).violation(values) == pytest.approx(violation)


@pytest.mark.parametrize("text", [
    "__import__('os').system('true') == 0", "total_params.real <= 1", "[1][0] < 2", "max(1, 2) < 3", "lr",
    "lambda: 1", "'a' < 'b'", "lr < 0.1 or lr > 1", "not lr < 1", "x := 1", "", 5, "10 ** 10 ** 10 > 1",
])
def test_anything_else_is_refused(text):
    with pytest.raises(ConstraintError):
        c = Constraint.parse(text)
        c.violation({"lr": 0.1, "total_params": 1})


def test_the_meta_device_counts_what_the_real_model_has():
    from trainables.core.data import DatasetConfig
    from trainables.core.size import model_size
    from trainables.core.trial import build

    config = {"model": "cnn", "filters": [4, 8, 8, 16, 16], "dense_units": 32}
    dataset = DatasetConfig(name="digits", limit=60)
    model, _, _ = build(config, dataset)
    measured = model_size(config, dataset)
    assert measured["total_params"] == sum(p.numel() for p in model.parameters())
    assert measured["activations"] > measured["total_params"] / 100 > 0


SPEC = """\
name: mo
dataset: {name: digits, limit: 200}
epochs: 2
metric: [val_acc, total_params]
mode: [max, min]
constraints: ["total_params <= 4000"]
parameters:
  model: cnn
  filters: {choice: [[4, 4, 8, 8, 8], [8, 8, 8, 16, 16], [8, 16, 16, 32, 32]]}
  dense_units: {choice: [16, 64]}
  lr: {loguniform: [1.0e-3, 1.0e-2]}
search: {algorithm: optuna, num_samples: 4, max_concurrent: 2, seed: 0}
scheduler: {name: fifo}
final: {report: true, select: {val_acc: max}}
"""


@pytest.mark.parametrize("change, where", [
    ({"scheduler": "{name: asha}"}, "scheduler.name"),
    ({"final": "{select: {train_acc: max}}"}, "final.select"),
    ({"constraints": '["total_parms <= 1"]'}, "did you mean 'total_params'"),
    ({"constraints": '["open(1) < 2"]'}, "constraints[0]"),
    ({"metric": "[val_acc, bogus]"}, "bogus"),
    ({"mode": "[max]"}, "one mode per metric"),
])
def test_multi_objective_mistakes(change, where):
    text = SPEC
    for key, value in change.items():
        text = "\n".join(f"{key}: {value}" if line.startswith(f"{key}:") else line for line in text.splitlines())
    with pytest.raises(SpecError, match=where.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(text)


def test_infeasible_configurations_are_told_to_optuna_and_never_suggested(tmp_path):
    from trainables.tune.tuner import _search_alg

    spec = parse_spec(SPEC, overrides=["search.max_concurrent=null"])
    alg, _ = _search_alg(spec, storage=str(tmp_path))
    suggested = [alg.suggest(f"t{i}") for i in range(8)]
    from trainables.core.size import model_size

    assert all(model_size(c, spec.dataset)["total_params"] <= 4000 for c in suggested)
    study = alg._ot_study
    told = [t for t in study.trials if any(v > 0 for v in t.constraints.values())]
    assert told and alg.skipped == len(told)  # filters [8, 16, 16, 32, 32] make ~20,000 parameters
    assert all(t.state.name == "COMPLETE" for t in told)
    from trainables.results.layout import read_skipped

    assert len(read_skipped(str(tmp_path / "mo"))) == len(told)


def test_grid_search_skips_and_counts(tmp_path):
    from trainables.core.size import model_size
    from trainables.tune.tuner import _search_alg

    spec = parse_spec(SPEC, overrides=["search.algorithm=grid", "parameters.lr=0.003", "search.max_concurrent=null",
                                       "search.num_samples=1"])
    alg, _ = _search_alg(spec, storage=str(tmp_path))
    points = []
    while isinstance(point := alg.suggest(f"t{len(points)}"), dict):
        points.append(point)
    sizes = [model_size({"model": "cnn", "filters": f, "dense_units": d}, spec.dataset)["total_params"]
             for f in spec.space["filters"].values for d in (16, 64)]
    assert len(points) == sum(s <= 4000 for s in sizes) and alg.skipped == sum(s > 4000 for s in sizes) > 0


@pytest.mark.slow
def test_a_multi_objective_sweep(tune_in_process, tmp_path):
    spec = write(tmp_path / "mo.yaml", SPEC)
    out = tune_in_process("run", spec, "-o", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "-o", "epochs=1",
                          cwd=tmp_path)
    assert "Pareto-optimal trials (val_acc max, total_params min)" in out
    assert "configurations never trained (they violate the constraints)" in out
    from trainables.results.read import load_sweep

    sweep = load_sweep(str(tmp_path / "results" / "mo"))
    assert len(sweep.trials) == 4 and all(t.value("total_params") <= 4000 for t in sweep.trials)
    best = sweep.best()
    assert best in sweep.pareto() and best.value("val_acc") == max(t.value("val_acc") for t in sweep.pareto())
    printed = tune_in_process("best", "mo", cwd=tmp_path)
    assert "# Pareto-optimal trials of mo" in printed and "<- best" in printed
    assert (tmp_path / "reports" / "mo" / "figures" / "pareto.png").is_file()
    assert "Pareto front" in (tmp_path / "reports" / "mo" / "report.md").read_text()
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = [r for r in client.search_runs([client.get_experiment_by_name("mo").experiment_id])
              if "pareto_trials" in r.data.tags]
    assert parent and set(parent[0].data.tags["pareto_trials"].split(",")) == {t.trial_id for t in sweep.pareto()}


@pytest.mark.parametrize("constraint, holds", [
    ("total_params <= 1", False),                 # no model is that small
    ("total_params / 0 < 1", False),              # cannot be computed: never trains
    ("batch_size * image_size <= 100", False),    # digits reach the cnn at 32 px, not 0
    ("image_size == 32 and total_params <= 4000", True),
])
def test_constraints_nothing_can_satisfy_are_found_before_the_sweep(constraint, holds, tmp_path):
    from click.testing import CliRunner

    from trainables.cli import cli
    from trainables.search.feasible import check_feasible

    text = SPEC.replace('constraints: ["total_params <= 4000"]', f'constraints: ["{constraint}"]')
    text = text.replace("  model: cnn\n", "  model: cnn\n  batch_size: 32\n")
    held, tried = check_feasible(parse_spec(text))
    assert (held == 1) == holds and tried >= 1
    if not holds and constraint.startswith("total_params <="):
        out = CliRunner().invoke(cli, ["validate", "--offline", str(write(tmp_path / "s.yaml", text))])
        assert out.exit_code == 2 and "none of 200 configurations drawn from the space satisfies" in out.output
