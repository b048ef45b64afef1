"""Signals and faults around a running sweep, on the session's Ray head: Ctrl-C and SIGTERM, a trial
bigger than the machine, a trainable that never reports the metric, a Ray address file of a dead head."""
from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port, run_cli, write

pytestmark = pytest.mark.slow

SPEC = """\
name: {name}
dataset: {{name: digits, limit: 300}}
epochs: {epochs}
parameters:
  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 16
  lr: {{loguniform: [1.0e-3, 1.0e-2]}}
search: {{algorithm: random, num_samples: 4, max_concurrent: 2, seed: 0}}
scheduler: {{name: fifo}}
tracking: {{uri: {uri}}}
"""


def _driver(spec: Path, cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trainables", "run", str(spec), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_a_result(exp: Path, driver: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        if any(f.stat().st_size for f in exp.glob("trial_*/result.json")):
            return
        time.sleep(0.1)
    raise AssertionError("no trial reported before the deadline: " + (driver.stdout.read() if driver.poll() else ""))


def _parent_status(uri: str, experiment: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.sweep_name = '%s'" % experiment)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent.info.status


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_sweep_saves_it_and_says_how_to_continue(ray_address, tmp_path, signum, code):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name = f"sig{code}"
    spec = write(tmp_path / "s.yaml", SPEC.format(name=name, epochs=20, uri=uri))
    # a checkpoint (and so a sync of the results into the sweep folder) every epoch: the first result is
    # seen, and the signal sent, early in the sweep, not when its 5-second state save happens to come
    driver = _driver(spec, tmp_path, "-o", "performance.checkpoint_every=1")
    _wait_for_a_result(tmp_path / "results" / name, driver)
    t0 = time.time()
    driver.send_signal(signum)
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == code, out
    assert time.time() - t0 < 60 and "Traceback" not in out
    assert "state is saved" in out and not (tmp_path / "reports" / name).exists()
    assert _parent_status(uri, name) == "KILLED"
    assert not (tmp_path / "results" / f".{name}.lock").exists()
    again = shlex.split(out.split("Continue it with:")[1].strip().splitlines()[0])
    assert again[:2] == ["tune", "run"] and again[-1] == "--resume"
    if signum != signal.SIGINT:
        return
    done = run_cli(*again[1:], cwd=tmp_path, check=0)
    assert "4 trials: 4 completed" in done.stdout, done.stdout
    assert _parent_status(uri, name) == "FINISHED"


def test_a_signal_during_the_final_steps_ends_the_command_and_says_what_is_done(tune_in_process, tmp_path,
                                                                              monkeypatch):
    """Ctrl-C after the trials, while the report is written, even one whose exception the report's
    libraries swallowed: 130, the sweep's results kept, and how to write the report."""
    import trainables.report.write as report_write

    def interrupted_report(sweep, out):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except BaseException:  # noqa: BLE001 - what a library's `except BaseException: ... go on` does
            pass
        return Path(out)

    monkeypatch.setattr(report_write, "write_report", interrupted_report)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = write(tmp_path / "s.yaml", SPEC.format(name="late", epochs=1, uri=uri))
    out = tune_in_process("run", spec, "-o", "search.num_samples=2", cwd=tmp_path, check=130)
    assert "2 trials: 2 completed" in out and "during the final steps" in out and "tune report late" in out
    assert "Traceback" not in out and _parent_status(uri, "late") == "KILLED"


def test_a_trial_bigger_than_the_machine_is_bad_input(ray_address, tmp_path):
    spec = write(tmp_path / "s.yaml", SPEC.format(name="big", epochs=1, uri="sqlite:///m.db"))
    proc = run_cli("run", spec, "-o", "resources.cpu=64", "-o", "tracking.enabled=false", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "resources.cpu" in proc.stderr and "asks for 64 CPUs" in proc.stderr and "has 2" in proc.stderr


def test_a_trainable_that_never_reports_the_metric_stops_the_sweep(ray_address, tmp_path):
    spec = write(tmp_path / "s.yaml", "name: nometric\ntrainable: tests.trainables_for_tests:reports_score\n"
                                      "metric: val_acc\nepochs: 3\nparameters: {x: {choice: [1, 2, 3]}}\n"
                                      "search: {algorithm: random, num_samples: 3}\ntracking: {enabled: false}\n")
    proc = run_cli("run", spec, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "reports no 'val_acc'" in proc.stderr and "score" in proc.stderr and "Traceback" not in proc.stderr


def test_a_metric_that_is_no_number_stops_the_sweep(ray_address, tmp_path):
    """10**400 crashed the driver (the live table's float()); text reached ASHA's arithmetic (TypeError)."""
    spec = write(tmp_path / "s.yaml", "name: huge\ntrainable: tests.trainables_for_tests:reports_a_huge_integer\n"
                                      "epochs: 2\nparameters: {x: {choice: [1, 2]}}\nscheduler: {name: asha}\n"
                                      "search: {algorithm: optuna, num_samples: 2}\ntracking: {enabled: false}\n")
    proc = run_cli("run", spec, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "reports val_acc = 1000" in proc.stderr and "not a number" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_sweep_where_no_trial_reached_a_value_exits_1(ray_address, tmp_path):
    """Every trial reported NaN (diverged): 'no trial reported val_acc.' and exit 0, as if something was found."""
    spec = write(tmp_path / "s.yaml", "name: nan\ntrainable: tests.trainables_for_tests:reports_nan\nepochs: 3\n"
                                      "parameters: {x: {choice: [1, 2]}}\nsearch: {algorithm: random, num_samples: 2}"
                                      "\ntracking: {enabled: false}\nfinal: {report: false}\n")
    proc = run_cli("run", spec, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, check=None)
    assert proc.returncode == 1 and "no trial reported val_acc" in proc.stdout, proc.stdout + proc.stderr
    # a function that returned after one of `epochs: 3` ended itself: completed, not "stopped early"
    assert "2 trials: 2 completed, 0 stopped early" in proc.stdout, proc.stdout


def test_metric_check_tells_a_diverged_trial_from_no_number():
    from trainables.tune.callbacks import MetricCheck

    check = MetricCheck("score")
    assert not check("t", {"score": float("nan")}) and not check("t", {"score": 3})  # a trial that diverged
    for value in ("high", None, True, [0.5], 10**400):
        check = MetricCheck("score")
        assert check("t", {"score": value}) and check.stop_all() and check.absent == "score", value
    # a nested value, as Ray Tune names it: found, and its text replaced where the scheduler reads it
    check = MetricCheck("val/acc")
    assert not check("t", {"val": {"acc": 0.5}})
    nested = {"val": {"acc": "high"}, "epoch": 1}
    assert check("t", nested) and check.not_number == "'high'" and math.isnan(nested["val"]["acc"])
    check = MetricCheck("val/acc")
    assert check("t", {"val": {"loss": 0.5}}) and check.missing == ["val/loss"]
    # once the metric has been reported, a result without it (a script that logs it for some configurations
    # only) ends that trial, not the sweep
    check = MetricCheck("score")
    assert not check("t1", {"score": 0.5}) and check("t2", {"epoch": 1}) and not check.stop_all()


def test_a_ray_address_file_of_a_dead_head_does_not_hang(tmp_path):
    """A killed `ray start --head` leaves Ray's address file behind; ray.init() would wait minutes for it."""
    with tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as temp:  # short: Ray's socket paths live under it
        _dead_head_starts_a_local_ray(temp)


def _dead_head_starts_a_local_ray(temp: str) -> None:
    Path(temp, "ray").mkdir()
    Path(temp, "ray", "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = temp
    code = ("from trainables.tune.cluster import connect; import ray; connect(None); "
            "print('nodes', len(ray.nodes())); ray.shutdown()")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no longer answers" in proc.stdout and "starting a local Ray" in proc.stdout and "nodes 1" in proc.stdout
    assert time.time() - t0 < 90


def test_a_signal_whose_exception_a_library_swallowed_is_still_honoured():
    # MLflow creating its tables caught the Interrupted raised inside it and went on (seen in the suite:
    # a Ctrl-C while the command started, and the sweep then ran to its end)
    from trainables.tune.interrupt import Interrupted, Interrupts, raise_pending

    with pytest.raises(Interrupted) as exc:
        with Interrupts() as interrupts:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            except Interrupted:
                pass  # what a library's `except BaseException: ... go on` does
            interrupts.check()
    assert exc.value.exit_code == 130
    with Interrupts():
        raise_pending()  # a new command starts clean


def test_ctrl_c_while_the_command_starts_ends_it_at_once(ray_address, tmp_path):
    """Before any sweep (imports, joining Ray): 130 and one line, no traceback, no sweep written.
    (RAY_ADDRESS: if the signal lands while joining, no local Ray is left behind.)"""
    spec = write(tmp_path / "s.yaml", SPEC.format(name="early", epochs=1, uri="sqlite:///m.db"))
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "trainables", "run", str(spec), "--storage", str(tmp_path / "r")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # importing torch, click, pydantic...
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "interrupted (SIGINT)" in err and "Traceback" not in err
    assert not list((tmp_path / "r").glob("early/trial_*"))
