"""Real sweeps on the session's Ray head, driven through the `tune` CLI as a user would."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray.tune import ExperimentAnalysis

from tests.helpers import ROOT, recorded_finished, run_cli, write

pytestmark = pytest.mark.slow

TINY = """\
name: {name}
dataset: {{name: digits, limit: 300}}
epochs: {epochs}
parameters:
  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 32
  lr: {{loguniform: [1.0e-3, 1.0e-2]}}
  optimizer: {{choice: [adam, sgd]}}
  momentum: {{uniform: [0.5, 0.9], when: {{optimizer: sgd}}}}
search: {{algorithm: {algorithm}, num_samples: {samples}, max_concurrent: 2, seed: 0}}
scheduler: {{name: {scheduler}}}
tracking: {{enabled: false}}
"""


def tiny(tmp_path, name="tiny", epochs=2, algorithm="optuna", samples=3, scheduler="fifo", extra=""):
    return write(tmp_path / f"{name}.yaml", TINY.format(name=name, epochs=epochs, algorithm=algorithm, samples=samples,
                                                         scheduler=scheduler) + extra)


def analysis(path: Path) -> ExperimentAnalysis:
    return ExperimentAnalysis(str(path))


def test_quickstart_reaches_095(ray_address, tmp_path):
    proc = run_cli("run", ROOT / "search_spaces/quickstart.yaml", "-o", "tracking.enabled=false",
                   "-o", "final.report=false", "-o", "final.retrain_best=false", cwd=tmp_path, check=0)
    assert "best trials by val_acc" in proc.stdout
    a = analysis(tmp_path / "results/quickstart")
    assert len(a.trials) == 12
    best = a.get_best_trial("val_acc", "max", scope="all")
    assert best.metric_analysis["val_acc"]["max"] >= 0.95
    # `tune best` prints that trial's configuration as YAML
    out = run_cli("best", "quickstart", cwd=tmp_path, check=0).stdout
    assert "parameters:" in out and "model: cnn" in out


def test_errored_trials_are_counted_and_the_sweep_goes_on(tune_in_process, tmp_path):
    spec = write(tmp_path / "e.yaml", """\
name: errors
trainable: tests.trainables_for_tests:fail_when_x_is_1
epochs: 2
max_failures: 0
parameters: {x: {grid: [0, 1, 2]}}
search: {algorithm: grid}
scheduler: {name: fifo}
tracking: {enabled: false}
final: {report: false}
""")
    out = tune_in_process("run", spec, cwd=tmp_path, check=0)
    assert "2 completed, 0 stopped early, 1 errored" in out
    out = tune_in_process("run", spec, "-o", "trainable=tests.trainables_for_tests:always_fail", "-o", "name=all-fail",
                          cwd=tmp_path, check=1)
    assert "0 completed, 0 stopped early, 3 errored" in out


def test_a_nested_metric_is_named_as_ray_tune_names_it(tune_in_process, tmp_path):
    """`tune.report({"val": {"acc": a}})` with `metric: val/acc`, as Ray Tune's searchers and schedulers read it:
    the sweep stopped at once with "reports no 'val/acc'"."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = write(tmp_path / "n.yaml", f"""\
name: nested
trainable: tests.trainables_for_tests:reports_nested
metric: val/acc
epochs: 2
parameters: {{x: {{choice: [1, 2, 3]}}}}
search: {{algorithm: optuna, num_samples: 3}}
scheduler: {{name: asha, grace_period: 1}}
tracking: {{uri: '{uri}'}}
""")
    out = tune_in_process("run", spec, cwd=tmp_path, check=0)
    assert "3 trials: 3 completed" in out and "best trials by val/acc (max)" in out, out
    assert re.search(r"trial \w+ completed +val/acc=0.6000 after 2 epochs", out), out
    best = run_cli("best", "nested", cwd=tmp_path, check=0).stdout
    assert "x: 3" in best, best
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("nested").experiment_id])
    children = [r for r in runs if "trial_id" in r.data.tags]
    assert len(children) == 3 and all(len(client.get_metric_history(r.info.run_id, "val/acc")) == 2
                                      for r in children)
    assert "val/acc" in (tmp_path / "reports" / "nested" / "report.md").read_text()


def test_a_sweep_on_remote_storage_is_a_sweep_like_any_other(tune_in_process, tmp_path):
    """--storage as a URI (s3:// on a cluster; file:// here goes through the same pyarrow filesystem): the
    sweep ends with its summary, retrain and report, and keeps its spec there, so that `tune best`, `tune
    report`, a later sweep's warm_start, a second run of the name and --resume find it (each said "no sweep
    named ..." or went unchecked: the spec was kept only in MLflow)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    bucket = f"file://{tmp_path / 'bucket'}"
    spec = tiny(tmp_path, name="remote", epochs=1, samples=2, extra="final: {retrain_best: true}\n")
    tracking = f"tracking={{uri: '{uri}'}}"
    out = tune_in_process("run", spec, "--storage", bucket, "-o", tracking, cwd=tmp_path, check=0)
    assert "2 trials: 2 completed" in out and "final: retrained best: test_acc=" in out, out
    assert f"best config: tune best {bucket}/remote" in out, out  # the name alone would look under ./results
    assert (tmp_path / "reports" / "remote" / "report.md").is_file()
    assert (tmp_path / "bucket" / "remote" / "spec.yaml").is_file()
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("remote").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.data.tags["model_uri"].startswith("models:/")
    assert "spec/remote.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id, "spec")}

    for args in (["remote", "--storage", bucket], [f"{bucket}/remote"]):
        assert "# best of remote: val_acc=" in tune_in_process("best", *args, cwd=tmp_path)
    out = tune_in_process("report", "remote", "--storage", bucket, "--out", tmp_path / "again", cwd=tmp_path)
    assert (tmp_path / "again" / "remote" / "report.md").is_file()
    assert f"attached to parent run {parent.info.run_id}" in out, out
    out = tune_in_process("run", spec, "--storage", bucket, "-o", tracking, cwd=tmp_path, check=2)
    assert "already holds a sweep named 'remote'" in out and "--resume" in out
    out = tune_in_process("run", spec, "--storage", bucket, "-o", tracking, "-o", "epochs=3", "--resume", cwd=tmp_path,
                          check=2)
    assert "cannot resume with a different spec: epochs" in out
    out = tune_in_process("run", spec, "--storage", bucket, "-o", "name=later", "-o", "search.warm_start=[remote]",
                          "--dry-run", cwd=tmp_path)
    assert "warm start: 2 of 2 trials of sweep 'remote' given to the search" in out, out
    assert "no sweep named 'nope' under " + bucket in tune_in_process("best", "nope", "--storage", bucket,
                                                                       cwd=tmp_path, check=2)


def test_random_search_with_grid_and_conditionals(tune_in_process, tmp_path):
    spec = tiny(tmp_path, name="mixed", algorithm="random", samples=2,
                extra="")
    out = tune_in_process("run", spec, "-o", "parameters.dense_units={grid: [16, 32]}", "-o", "final.report=false",
                          cwd=tmp_path)
    configs = [t.config for t in analysis(tmp_path / "results/mixed").trials]
    assert len(configs) == 4 and sorted(c["dense_units"] for c in configs) == [16, 16, 32, 32]
    for c in configs:
        assert (c["momentum"] is not None) == (c["optimizer"] == "sgd")
    assert "4 trials" in out


def test_pbt_and_a_fresh_run_refuses_to_overwrite(tune_in_process, tmp_path):
    spec = tiny(tmp_path, name="pbt", algorithm="random", samples=2, epochs=3, scheduler="pbt",
                extra="")
    tune_in_process("run", spec, "-o", "scheduler.perturbation_interval=1", "-o", "scheduler.mutations=[lr]",
                    "-o", "final.report=false", cwd=tmp_path)
    a = analysis(tmp_path / "results/pbt")
    assert len(a.trials) == 2 and all(t.last_result["training_iteration"] == 3 for t in a.trials)
    proc = run_cli("run", spec, "-o", "scheduler.perturbation_interval=1", "-o", "scheduler.mutations=[lr]",
                   cwd=tmp_path)
    assert proc.returncode == 2 and "--resume" in proc.stderr
    assert len(analysis(tmp_path / "results/pbt").trials) == 2  # untouched
    # Ray's own subcommands work through ours
    ls = run_cli("ls", tmp_path / "results/pbt", cwd=tmp_path, check=0)
    assert "trial_id" in ls.stdout or "Trial" in ls.stdout


def _result_lines(trial_dir: Path) -> int:
    f = trial_dir / "result.json"
    return len(f.read_text().splitlines()) if f.exists() else 0


def _start_driver(spec: Path, cwd: Path) -> subprocess.Popen:
    """`tune run SPEC` in its own process group, to be SIGKILLed mid-sweep."""
    return subprocess.Popen([sys.executable, "-m", "trainables", "run", str(spec), "-o", "final.report=false"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0.5"})  # the saved state close behind


def test_sigkill_then_resume_finishes_exactly_num_samples(ray_address, tmp_path):
    spec = tiny(tmp_path, name="killed", samples=6, epochs=4)
    exp = tmp_path / "results/killed"
    driver = _start_driver(spec, tmp_path)
    finished: dict[str, str] = {}
    deadline = time.time() + 240
    # Kill once the saved state (what --resume reads) records two trials as finished: a trial whose
    # last epoch reached result.json a moment before the kill, but not the saved state, may be
    # trained again from its last checkpoint, and that is as it should be.
    while time.time() < deadline and driver.poll() is None:
        if len(recorded_finished(exp)) >= 2:
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the sweep ended before it could be killed: " + driver.stdout.read()
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    for trial_id in recorded_finished(exp):
        finished[f"trial_{trial_id}"] = (exp / f"trial_{trial_id}" / "result.json").read_text()
    assert len(finished) >= 2
    out = run_cli("run", spec, "--resume", "-o", "final.report=false", cwd=tmp_path, check=0).stdout
    a = analysis(exp)
    assert len(a.trials) == 6
    errors = {t.trial_id: (Path(t.path) / "error.txt").read_text()[-3000:] for t in a.trials
              if t.path and (Path(t.path) / "error.txt").exists()}
    states = [(t.trial_id, t.status, t.last_result.get("training_iteration")) for t in a.trials]
    assert all(t.status == "TERMINATED" and t.last_result["training_iteration"] == 4 for t in a.trials), (
        states, errors
    )
    for name, results in finished.items():  # finished before the kill: not one epoch trained again
        assert (exp / name / "result.json").read_text() == results, (name, out)
    # The optuna study in the sweep folder went on through the kill: every trial once, finished.
    import optuna

    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{exp / 'optuna.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 6, [(t.number, t.state) for t in study.trials]


def test_resume_when_the_saved_state_names_a_deleted_checkpoint(ray_address, tmp_path):
    """Tune deletes a trial's older checkpoints before its next state snapshot names the newer
    one: a driver killed in between leaves a snapshot naming a deleted checkpoint (a CI run
    failed on it: the trial errored on --resume). Widened here: the snapshot, saved when it named
    a checkpoint, is put back after Tune has deleted that checkpoint and the driver is killed."""
    spec = write(tmp_path / "stale.yaml", TINY.format(name="stale", epochs=12, algorithm="random", samples=1,
                                                     scheduler="fifo").replace("limit: 300", "limit: 1200")
                 + "performance: {checkpoint_every: 1}\n")
    exp = tmp_path / "results/stale"
    driver = _start_driver(spec, tmp_path)
    saved: dict[Path, bytes] = {}
    existing: set[str] = set()  # the trial's checkpoints when the snapshot was taken: its record names one
    deadline = time.time() + 180
    while time.time() < deadline and driver.poll() is None:
        trial_dirs = list(exp.glob("trial_*"))
        if not existing:
            try:  # the snapshot: Tune's state files and the trial's result.json, saved together
                files = {p: p.read_bytes() for p in [*exp.glob("*state*"), *exp.glob("trial_*/result.json")]}
                state = json.loads(next(v for p, v in files.items() if p.name.startswith("experiment_state")))
                named = json.loads(state["trial_data"][0][1])["last_result"].get("checkpoint_dir_name") or ""
                # not the first: the result naming a checkpoint can be saved before the checkpoint's record
                # (a snapshot between them names none, and the resume rightly starts afresh); the one before it
                # is recorded by then
                later = named.startswith("checkpoint_") and named[len("checkpoint_"):].isdigit() and int(
                    named[len("checkpoint_"):]) >= 1
                existing = {p.name for p in trial_dirs[0].glob("checkpoint_*")} if later and trial_dirs else set()
                saved = files if existing else {}
            except (StopIteration, IndexError, ValueError, OSError):
                pass  # not written yet, or caught mid-write
        # Tune keeps a trial's two newest checkpoints (num_to_keep=2): kill once every checkpoint there was at the
        # snapshot is deleted, whichever the state's record names (its JSON can lag behind the record)
        elif trial_dirs and not any((trial_dirs[0] / n).exists() for n in existing):
            break
        time.sleep(0.02)
    assert driver.poll() is None and existing, "the sweep ended before it could be killed: " + driver.stdout.read()
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    for path, data in saved.items():
        path.write_bytes(data)

    out = run_cli("run", spec, "--resume", "-o", "final.report=false", cwd=tmp_path, check=0).stdout
    (t,) = analysis(exp).trials
    gone = re.search(rf"trial {t.trial_id}'s (checkpoint_\d+), named by the sweep's last saved state, is gone", out)
    assert gone and gone.group(1) in existing, (existing, out)
    assert t.status == "TERMINATED" and t.last_result["training_iteration"] == 12, out
