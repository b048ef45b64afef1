"""The YAML format: every spec in the repository validates; bad input gets one clear message and exit 2."""
from __future__ import annotations

import os
import subprocess

import pytest
from click.testing import CliRunner

from tests.helpers import ROOT, run_cli, write
from trainables.cli import cli
from trainables.errors import SpecError
from trainables.spec.load import load_spec, parse_spec

SPECS = sorted((ROOT / "search_spaces").glob("*.yaml"))

GOOD = """\
name: t
dataset: {name: digits}
epochs: 3
parameters:
  model: cnn
  lr: {loguniform: [1.0e-4, 1.0e-2]}
  filters: {choice: [[8, 8, 8, 8, 8], [16, 16, 16, 16, 16]]}
  dropout: {choice: [0.0, 0.2]}
  optimizer: {choice: [adam, sgd]}
  momentum: {uniform: [0.5, 0.9], when: {optimizer: sgd}}
  dense_units: {int: [16, 64], step: 16}
search: {num_samples: 4}
"""


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_in_the_repository_validates(path):
    spec = load_spec(path)
    assert spec.name and spec.num_samples >= 1


def test_good_spec_resolves():
    spec = parse_spec(GOOD)
    assert spec.searched == ["lr", "filters", "dropout", "optimizer", "momentum", "dense_units"]
    assert spec.space["momentum"].when == (("optimizer", ("sgd",)),)
    assert spec.space["dense_units"].grid_values() == [16, 32, 48, 64]


def test_overrides_set_nested_keys_and_parse_yaml_values():
    spec = parse_spec(GOOD, overrides=["search.num_samples=2", "parameters.lr={uniform: [0.001, 0.01]}",
                                       "dataset.limit=100"])
    assert spec.num_samples == 2 and spec.dataset.limit == 100
    assert spec.space["lr"].low == 0.001 and not spec.space["lr"].log


# (description, spec text or override, key path the message must name)
BAD = [
    ("unknown top-level key", ["epocs=3"], "epocs", "did you mean 'epochs'"),
    ("unknown nested key", ["search.num_sample=3"], "search.num_sample", "did you mean 'num_samples'"),
    ("wrong type", ["epochs=ten"], "epochs", "integer"),
    ("empty choice", ["parameters.dropout={choice: []}"], "parameters.dropout.choice", "at least one value"),
    ("bounds reversed", ["parameters.lr={loguniform: [0.1, 0.001]}"], "parameters.lr.loguniform", "low < high"),
    ("loguniform from 0", ["parameters.lr={loguniform: [0, 0.1]}"], "parameters.lr.loguniform", "low > 0"),
    ("int bounds reversed", ["parameters.dense_units={int: [64, 16]}"], "parameters.dense_units.int", "low <= high"),
    ("unknown distribution", ["parameters.lr={log_uniform: [0.1, 1]}"], "parameters.lr.log_uniform",
     "did you mean 'loguniform'"),
    ("unknown model", ["parameters.model=resnet9000"], "parameters.model", "unknown model"),
    ("unknown model in a choice", ["parameters.model={choice: [cnn, cnnn]}"], "parameters.model.choice[1]",
     "did you mean 'cnn'"),
    ("unknown activation", ["parameters.activation={choice: [relu, swish]}"], "parameters.activation.choice[1]",
     "'relu'"),
    ("dropout out of range", ["parameters.dropout={choice: [0.1, 1.5]}"], "parameters.dropout.choice[1]",
     "less than 1"),
    ("four filters for five blocks", ["parameters.filters=[8, 8, 8, 8]"], "parameters.filters", "5 values"),
    ("unknown hyperparameter", ["parameters.learning_rate=0.1"], "parameters.learning_rate", "unknown hyperparameter"),
    ("unknown dataset", ["dataset.name=imagenet"], "dataset.name", "digits"),
    ("unknown optimizer", ["parameters.optimizer=adamm"], "parameters.optimizer", "sgd"),
    ("when on a missing parameter", ["parameters.momentum={uniform: [0.1, 0.9], when: {optim: sgd}}"],
     "parameters.momentum.when", "not a parameter"),
    ("grid with optuna", ["parameters.dropout={grid: [0.1, 0.2]}"], "parameters.dropout.grid", "optuna"),
    ("grid algorithm over a continuous range", ["search.algorithm=grid"], "parameters.lr", "enumerates"),
    ("pbt with optuna", ["scheduler.name=pbt"], "scheduler.name", "random"),
    ("pbt cloning from checkpoints it does not take", ["scheduler.name=pbt", "search.algorithm=random",
     "scheduler.perturbation_interval=4", "performance.checkpoint_every=3"], "performance.checkpoint_every",
     "divisor of 4"),
    ("no checkpoints", ["performance.checkpoint_every=0"], "performance.checkpoint_every", "greater than or equal"),
    ("unknown cache", ["dataset.cache=ram"], "dataset.cache", "'auto', 'node' or 'none'"),
    ("negative gpu", ["resources.gpu=-1"], "resources.gpu", "greater than or equal to 0"),
    ("unknown metric", ["metric=accuracy"], "metric", "val_acc"),
    ("bad experiment name", ["name=a b"], "name", "pattern"),
    ("imagefolder without root", ["dataset.name=imagefolder"], "dataset", "root"),
    ("custom trainable that does not import", ["trainable=nosuchpkg.mod:fn"], "trainable", "cannot import"),
    ("an experiment name MLflow refuses", ["tracking.experiment=" + "x" * 600], "tracking.experiment", "500"),
    ("an experiment name over two lines", ['tracking.experiment="a\\nb"'], "tracking.experiment", "pattern"),
    ("data-parallel workers for a user's trainable", ["trainable=tests.trainables_for_tests:reports_score",
     "resources.workers=2"], "resources.workers", "data-parallel"),
    ("retrain_best for a user's trainable", ["trainable=tests.trainables_for_tests:reports_score",
     "final.retrain_best=true"], "final.retrain_best", "set it to false"),
    ("a misspelt trainable", ["trainable=programm"], "trainable", "'program' (a script, with program:) or "
     "'package.module:function', got 'programm'; did you mean 'program'?"),
    ("custom trainable that exits on import", ["trainable=tests.exits_on_import:f"], "trainable", "SystemExit"),
    ("a class that is no ray.tune.Trainable", ["trainable=tests.trainables_for_tests:NotATrainable"], "trainable",
     "is a class"),
    ("a builtin as the trainable", ["trainable=builtins:len"], "trainable", "builtin_function_or_method"),
    ("image too small for cnn", ["dataset.image_size=16"], "dataset.image_size", ">= 32"),
    ("select against the one objective", ["final.select={val_acc: min}"], "final.select", "change mode instead"),
    ("starting points that never run", ["search.num_samples=1", "search.points_to_evaluate=[{lr: 0.001}, {lr: 0.002}]"],
     "search.points_to_evaluate", "only the first 1 would run"),
    ("choice values optuna cannot tell apart", ["parameters.dropout={choice: [0.0, 0.2, 0]}"],
     "parameters.dropout.choice[2]", "one value to Optuna"),
    ("an empty metric list", ["metric=[]"], "metric", "an empty list"),
    ("a continuous range for a whole number", ["parameters.dense_units={uniform: [16, 64]}"],
     "parameters.dense_units.uniform", "takes whole numbers"),
    ("values valid alone but not together", ["parameters={model: finetune, freeze: last_k_trainable, "
                                             "k: {int: [0, 2]}}"], "parameters.k", "leaves nothing to train"),
    ("an optuna sampler for random search", ["search.algorithm=random", "search.sampler=nsga2"], "search.sampler",
     "optuna sampler"),
    ("a searched depth too deep for the images", ["parameters={model: cnn_basic, blocks: {int: [2, 6]}, lr: 0.01}"],
     "parameters.blocks", "blocks=6 needs image_size >= 64, got 32"),
    ("a searched mode too big for the images", ["parameters={model: mnist_mode, mode: {choice: [1, 4]}}",
     "dataset.image_size=2"], "parameters.mode", "mode=4 needs image_size >="),
]


@pytest.mark.parametrize("what,overrides,path,words", BAD, ids=[b[0] for b in BAD])
def test_bad_spec_names_the_key(what, overrides, path, words):
    with pytest.raises(SpecError) as exc:
        parse_spec(GOOD, file="bad.yaml", overrides=overrides)
    msg = str(exc.value)
    assert msg.startswith("bad.yaml")
    assert f" {path}:" in msg, msg
    assert words in msg, msg


@pytest.mark.parametrize("text,where", [
    ("name: t\nparameters:\n  lr: [1, 2\n", "line"),  # YAML syntax error
    ("name: t\nepochs: !!python/object/apply:os.system ['echo pwned']\n", "line 2"),
    ("- just\n- a list\n", "mapping"),
    ("name: t\nparameters:\n  lr:\n    loguniform: [0.1, 0.01]\n", "line 4"),
])
def test_yaml_problems_point_at_the_line(text, where):
    with pytest.raises(SpecError) as exc:
        parse_spec(text, file="x.yaml")
    assert where in str(exc.value)


def test_python_tags_are_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f"name: t\nepochs: !!python/object/apply:os.system ['touch {marker}']\n")
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 2
    assert "tag not allowed" in result.output and "python/object/apply" in result.output
    assert not marker.exists()


def test_cli_bad_input_exit_2_without_traceback(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    runner = CliRunner()
    cases = [
        ["validate", str(tmp_path / "missing.yaml")],
        ["validate", str(good), "-o", "parameters.dropout={choice: []}"],
        ["validate", str(good), "-o", "no_equals_sign"],
        ["run", str(good), "-o", "parameters.lr={uniform: [1, 0]}"],
        ["best", "no-such-sweep", "--storage", str(tmp_path)],
    ]
    for args in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and result.output.startswith("error: "), result.output


def test_unreachable_cluster_address_is_bad_input(tmp_path):
    from tests.helpers import free_port

    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    proc = run_cli("run", good, "--address", f"127.0.0.1:{free_port()}", "--storage", tmp_path / "r", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "does not answer" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()  # nothing written
    # the dashboard's address (ray job submit's) was Ray's ValueError, as a traceback
    result = CliRunner().invoke(cli, ["run", str(good), "--address", "http://127.0.0.1:8265", "--storage",
                                      str(tmp_path / "r"), "-o", "tracking.enabled=false"])
    assert result.exit_code == 2 and "is a dashboard's address" in result.output, result.output
    # a scheme Ray knows no module for said "cannot join" with a token-auth hint that does not apply
    result = CliRunner().invoke(cli, ["run", str(good), "--address", "weird://127.0.0.1:1", "--storage",
                                      str(tmp_path / "r"), "-o", "tracking.enabled=false"])
    assert result.exit_code == 2 and "Ray knows no weird:// address" in result.output, result.output
    assert "token" not in result.output


def test_validate_prints_the_resolved_space(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    result = CliRunner().invoke(cli, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "loguniform [0.0001, 0.01]" in result.output
    assert "when optimizer in ['sgd']" in result.output


def test_dry_run_starts_nothing(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    result = CliRunner().invoke(cli, ["run", str(good), "--dry-run", "--storage", str(tmp_path / "r")])
    assert result.exit_code == 0 and "dry run" in result.output
    assert not (tmp_path / "r").exists()


def test_a_dry_run_says_what_the_run_would_refuse(tmp_path):
    """A sweep of that name already there, a storage folder it cannot write: exit 2 from the dry run too,
    not only from the run it was meant to check."""
    good = write(tmp_path / "good.yaml", GOOD)
    (tmp_path / "r" / "t" / "trial_0").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["run", str(good), "--dry-run", "--storage", str(tmp_path / "r")])
    assert result.exit_code == 2 and "already holds a sweep named 't'" in result.output, result.output
    (tmp_path / "f" / "t").parent.mkdir()
    (tmp_path / "f" / "t").write_text("")  # where the sweep's folder goes: Ray's FileExistsError, a traceback
    result = CliRunner().invoke(cli, ["run", str(good), "--dry-run", "--storage", str(tmp_path / "f")])
    assert result.exit_code == 2 and "is there and is not a folder" in result.output, result.output
    (tmp_path / "a-file").write_text("not a folder")
    for storage in (tmp_path / "a-file" / "x", f"file://{tmp_path / 'a-file' / 'x'}"):
        result = CliRunner().invoke(cli, ["run", str(good), "--dry-run", "--storage", str(storage)])
        assert result.exit_code == 2 and "cannot write sweeps" in result.output, result.output


@pytest.mark.parametrize("storage,words", [
    ("bogus://x", "bogus:// is not a storage Ray can write sweeps to"), ("s3://", "no bucket or host after s3://"),
    ("gs:///path", "no bucket or host after gs://"), ("file://relative/x", "takes an absolute path"),
    ("s3://:s3cret@/x", "no bucket"),
])
def test_a_storage_uri_ray_cannot_write_to_is_bad_input(tmp_path, storage, words):
    """Before Ray starts, without contacting anything (it was a pyarrow traceback from inside Tune)."""
    result = CliRunner().invoke(cli, ["run", str(write(tmp_path / "g.yaml", GOOD)), "--dry-run", "--storage", storage])
    assert result.exit_code == 2 and words in result.output and "--storage" in result.output, result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output


def test_a_storage_that_does_not_answer_is_bad_input_naming_it(tmp_path):
    """A bucket behind an endpoint that refuses connections: `tune run` (asking whether a sweep of that name is
    there) and `tune best` (--resume, `tune report`, warm_start read it the same way) end in one line naming the
    storage, its secret elided; the endpoint in the URI's query stays the storage's (the name goes before it)."""
    storage = "s3://key:s3cret@bucket/sweeps?endpoint_override=http://127.0.0.1:9&region=us-east-1"
    good = str(write(tmp_path / "g.yaml", GOOD))
    for args in (["run", good], ["best", "t"]):  # (each ~6 s: the AWS SDK's retries)
        result = CliRunner().invoke(cli, [*args, *(["--dry-run"] if args[0] == "run" else []), "--storage", storage])
        assert result.exit_code == 2, (args, result.output)
        assert "cannot reach the storage" in result.output and "127.0.0.1:9" in result.output, result.output
        assert "bucket/sweeps/" in result.output and "s3cret" not in result.output and "Traceback" not in result.output


def test_scheduler_settings_the_scheduler_does_not_use_are_said(tmp_path):
    """-o scheduler.name=hyperband on a spec written for asha: its grace_period is not silently dropped."""
    text = GOOD + "scheduler: {name: asha, grace_period: 2, brackets: 1}\n"
    result = CliRunner().invoke(cli, ["validate", str(write(tmp_path / "g.yaml", text)), "--offline",
                                      "-o", "scheduler.name=hyperband"])
    assert result.exit_code == 0 and "hyperband scheduler does not use brackets, grace_period: ignored" in result.output


def test_a_built_in_dataset_bigger_than_the_machine_is_said(tmp_path):
    """digits at 4096 px is ~120 GB of tensors in every trial process: validate said "valid" and nothing else."""
    result = CliRunner().invoke(cli, ["validate", str(write(tmp_path / "g.yaml", GOOD)), "--offline",
                                      "-o", "dataset={name: fake, num_samples: 100000, image_size: 4096}"])
    assert result.exit_code == 0 and "~20133 GB of float32 tensors in every trial process" in result.output, \
        result.output


@pytest.mark.parametrize("batch_size", ["1", "{int: [1, 64]}"])
def test_batches_of_one_example_for_a_model_with_batch_norm_are_refused(tmp_path, batch_size):
    """BatchNorm cannot normalise one example in training: every trial failed at its first batch."""
    result = CliRunner().invoke(cli, ["validate", str(write(tmp_path / "g.yaml", GOOD)), "--offline",
                                      "-o", f"parameters.batch_size={batch_size}", "-o", "parameters.batch_norm=true"])
    assert result.exit_code == 2 and "batch_size 1 cannot train model cnn" in result.output, result.output


def test_ray_subcommands_are_kept():
    result = CliRunner().invoke(cli, ["--help"])
    for name in ("run", "validate", "best", "ls", "lsx", "list-trials", "list-experiments", "add-note"):
        assert name in result.output
    result = CliRunner().invoke(cli, ["list-trials", "--help"])
    assert result.exit_code == 0 and "EXPERIMENT_PATH" in result.output


def test_trainables_is_always_ours_and_says_when_ray_took_tune(tmp_path, monkeypatch, capsys):
    import sys
    from pathlib import Path

    from trainables import cli as cli_module

    scripts = Path(sys.executable).parent
    assert all("trainables.cli" in (scripts / name).read_text() for name in ("tune", "trainables"))
    assert cli_module.ray_owns_tune() is None
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text("")
    (fake / "tune").write_text("import re\nfrom ray.tune.cli.scripts import cli\n")
    monkeypatch.setattr(sys, "executable", str(fake / "python"))
    assert cli_module.ray_owns_tune() == str(fake / "tune")
    result = CliRunner().invoke(cli, ["--help"], prog_name="trainables")
    assert result.exit_code == 0 and "Usage: trainables" in result.output
    with pytest.raises(SystemExit) as exc:
        cli_module.main_trainables(["validate", str(tmp_path / "missing.yaml")])
    assert exc.value.code == 2
    assert "is Ray Tune's own script" in capsys.readouterr().err


def test_the_console_script_finds_a_trainable_in_the_folder_it_runs_in(tmp_path):
    """`tune validate` said "cannot import 'mytr:train'" where `python -m trainables` found it (the console
    script's sys.path lacks the current folder)."""
    import shutil

    script = shutil.which("trainables")  # the same main() as our `tune`, under a name Ray does not install
    if script is None:
        pytest.skip("the package's console scripts are not installed")
    (tmp_path / "mytr.py").write_text("def train(config):\n    pass\n")
    write(tmp_path / "s.yaml", "name: t\ntrainable: mytr:train\nparameters: {x: {choice: [1, 2]}}\n"
                               "tracking: {enabled: false}\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([script, "validate", "s.yaml", "--offline"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
