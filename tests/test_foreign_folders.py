"""A sweep folder from anywhere, read by `tune best` and `tune report` (no Ray): whatever its files hold,
reading it prints no secret, writes nothing outside the report, never hangs and ends in a report or one
message (exit 2), never a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import tune, write
from tests.test_faults import SPEC as FAULTS_SPEC
from trainables.results.layout import save_spec
from trainables.spec.load import load_spec

# test_faults' sweep, with a choice among its searched parameters
SPEC = FAULTS_SPEC.replace("  lr: {loguniform", "  activation: {choice: [relu, gelu]}\n  lr: {loguniform")


def _folder(tmp_path: Path, trials: list[tuple[dict, dict]], state_text: str | None = None) -> Path:
    spec = load_spec(write(tmp_path / "s.yaml", SPEC))
    folder = tmp_path / "r" / spec.name
    save_spec(spec, str(folder))
    state = state_text or json.dumps({"trial_data": [[json.dumps(t), json.dumps(m)] for t, m in trials]})
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(state)
    return folder


def _trial(trial_id: str, config: dict, val_acc, logdir: str | None = None) -> tuple[dict, dict]:
    return ({"trial_id": trial_id, "status": "TERMINATED", "config": config, "relative_logdir": logdir},
            {"last_result": {"val_acc": val_acc, "training_iteration": 2, "time_total_s": 1.0}})


def test_a_hostile_sweep_folder_gives_a_report_and_nothing_else(tmp_path):
    good = _trial("t1", {"lr": 0.005, "activation": "relu"}, 0.75, "trial_t1")
    trials = [good, good,  # the same entry twice
              _trial("x\nparameters: {lr: 999}\n#", {"lr": "abc", "activation": "gelu"}, 0.5),
              _trial("$\\frac{$t4", {"lr": 0, "activation": "$\\frac{$"}, 0.25),
              _trial("t5", {"lr": -1.0, "activation": "relu"}, 0.5, "../../outside")]
    folder = _folder(tmp_path, trials)
    (folder / "trial_t1").mkdir()
    rows = [{"epoch": 1, "training_iteration": 1, "val_acc": 0.5}, {"training_iteration": 2, "val_acc": "x"},
            {"epoch": "one", "training_iteration": 3, "val_acc": 0.75}]
    (folder / "trial_t1" / "result.json").write_text("\n".join(map(json.dumps, rows)) + "\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "result.json").write_text(json.dumps({"training_iteration": 1, "val_acc": 0.125}) + "\n")
    (folder / "retrain.json").write_text(json.dumps({"history": {"a": 1}, "trial_id": "t1", "epochs": 2}))
    (folder / "skipped.jsonl").write_text(json.dumps({"config": {"lr": 0.1}, "violations": ["a"]}) + "\n")
    (folder / "mlflow_run.json").write_text(json.dumps({"tracking_uri": "http://alice:s3cretPW@127.0.0.1:9/",
                                                        "run_id": "abc"}))
    victim = tmp_path / "outside" / "victim.db"
    victim.write_bytes(b"")
    (folder / "optuna.db").symlink_to(victim)  # Optuna would create its tables in the link's target

    result = tune("best", folder / "spec.yaml", cwd=tmp_path)  # the folder's own spec.yaml: that folder
    assert result.exit_code == 0, result.output
    assert result.output.count("parameters:") == 1 and "lr: 0.005" in result.output, result.output
    result = tune("report", folder, "--out", tmp_path / "reports", cwd=tmp_path)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    report = (tmp_path / "reports" / "f" / "report.md").read_text()
    assert "s3cretPW" not in result.output + report and "127.0.0.1:9" in report
    assert victim.stat().st_size == 0 and "0.125" not in report
    assert "could not be written" not in report  # every section drawn from what the records hold
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "r", "reports", "s.yaml"]


def test_files_that_would_block_or_fill_the_memory_are_not_read(tmp_path):
    """A FIFO blocks a read forever; /dev/zero behind a link reads until memory runs out."""
    folder = _folder(tmp_path, [_trial("t1", {"lr": 0.005, "activation": "relu"}, 0.75)])
    for name in ("mlflow_run.json", "skipped.jsonl", "experiment_state-2099-01-01_00-00-00.json"):
        os.mkfifo(folder / name)  # (the newest state's name: the state before it is read)
    (folder / "retrain.json").symlink_to("/dev/zero")
    proc = subprocess.run([sys.executable, "-m", "trainables", "report", str(folder), "--out", str(tmp_path / "o")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "t1" in (tmp_path / "o" / "f" / "report.md").read_text(), proc.stdout + proc.stderr


def test_records_nested_past_the_stack_or_past_floats_are_one_message(tmp_path):
    deep = _folder(tmp_path, [], state_text='{"trial_data": ' + "[" * 100_000 + "]" * 100_000 + "}")
    result = tune("best", deep, cwd=tmp_path)
    assert result.exit_code == 2 and "cannot read the sweep" in result.output and "Traceback" not in result.output
    huge = json.dumps({"trial_data": [[json.dumps(_trial("t1", {"lr": 0.005}, 0)[0]),
                                       '{"last_result": {"val_acc": 1' + "0" * 400 + ', "training_iteration": 2}}']]})
    (deep / "experiment_state-2026-01-01_00-00-00.json").write_text(huge)
    result = tune("best", deep, cwd=tmp_path)
    assert result.exit_code == 2 and "has no trial with val_acc" in result.output, result.output


def test_a_foreign_run_file_creates_no_database(tmp_path):
    from trainables.tracking.models import attach_report

    folder = _folder(tmp_path, [])
    (tmp_path / "elsewhere").mkdir()
    db = tmp_path / "elsewhere" / "mlflow.db"
    (folder / "mlflow_run.json").write_text(json.dumps({"tracking_uri": f"sqlite:///{db}", "run_id": "abc"}))
    assert "not there" in attach_report(str(folder), tmp_path)
    assert not db.exists()


def test_a_report_is_not_attached_to_a_deleted_or_missing_parent_run(tmp_path):
    """MLflow takes artifacts for a run in its trash: `tune report` said 'attached' to a run nobody sees; a run
    id the store does not hold was 'run `tune report` again later', which could never help."""
    from mlflow import MlflowClient

    from trainables.tracking.models import attach_report

    folder = _folder(tmp_path, [])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("x")).info.run_id
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("# report\n")
    (folder / "mlflow_run.json").write_text(json.dumps({"tracking_uri": uri, "run_id": run}))
    client.delete_run(run)
    line = attach_report(str(folder), tmp_path / "report")
    assert "is deleted" in line and f"mlflow runs restore --run-id {run}" in line, line
    assert not client.list_artifacts(run)
    client.restore_run(run)
    assert "attached" in attach_report(str(folder), tmp_path / "report")
    assert [a.path for a in client.list_artifacts(run)] == ["report"]
    (folder / "mlflow_run.json").write_text(json.dumps({"tracking_uri": uri, "run_id": "0" * 32}))
    line = attach_report(str(folder), tmp_path / "report")
    assert f"holds no run {'0' * 32}" in line and "again later" not in line, line


def test_credentials_are_not_sent_to_a_server_a_folder_names(tmp_path, monkeypatch):
    """`tune report` of a folder from anywhere sent MLFLOW_TRACKING_TOKEN to the server its run file named."""
    import http.server
    import threading

    from trainables.tracking.models import attach_report

    heard = []

    class Listener(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            heard.append(str(self.headers))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        folder = _folder(tmp_path, [])
        uri = f"http://127.0.0.1:{server.server_port}"
        (folder / "mlflow_run.json").write_text(json.dumps({"tracking_uri": uri, "run_id": "abc"}))
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "SECRETTOKEN123")
        line = attach_report(str(folder), tmp_path)
        assert "not attached" in line and "MLFLOW_TRACKING_TOKEN" in line and "SECRETTOKEN123" not in line, line
        assert not any("SECRETTOKEN123" in h for h in heard)
    finally:
        server.shutdown()


def test_odd_entries_hide_nothing_of_a_sweep(tmp_path):
    """A dangling link in a sweep folder made its listing empty: a new `tune run` of that name went ahead into
    it; a file called spec.yaml beside no sweep is a spec, not a sweep folder's copy; a run file nested past the
    stack, or a state that is a JSON list, is read as nothing."""
    from trainables.errors import SpecError
    from trainables.results.layout import check_fresh, read_run_file
    from trainables.results.read import load_sweep, resolve

    folder = _folder(tmp_path, [_trial("t1", {"lr": 0.005, "activation": "relu"}, 0.75)])
    (folder / "tuner.pkl").write_bytes(b"x")
    (folder / "gone").symlink_to(tmp_path / "nowhere")
    spec = load_spec(folder / "spec.yaml", checks=False)
    try:
        check_fresh(spec, str(folder))
        raise AssertionError("a second sweep of that name was let into the folder")
    except SpecError as e:
        assert "already holds a sweep" in e.message
    (tmp_path / "proj").mkdir()
    write(tmp_path / "proj" / "spec.yaml", SPEC)
    assert resolve(str(tmp_path / "proj" / "spec.yaml"), str(tmp_path / "r")) == str(folder)
    (folder / "mlflow_run.json").write_text("[" * 100_000)
    assert read_run_file(str(folder)) == {}
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text("[1, 2]")
    assert load_sweep(str(folder)).trials == []


def test_a_saved_spec_that_is_a_wandb_config_is_not_a_sweep(tmp_path):
    """A sweep folder's spec.yaml is always ours: a W&B config there was translated and read as a sweep."""
    folder = _folder(tmp_path, [_trial("t1", {"lr": 0.005, "activation": "relu"}, 0.75)])
    (folder / "spec.yaml").write_text("program: train.py\nmethod: random\nparameters:\n  lr: {values: [0.1]}\n")
    result = tune("best", folder, cwd=tmp_path)
    assert result.exit_code == 2 and "spec.yaml" in result.output, result.output
