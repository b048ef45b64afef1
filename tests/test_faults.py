"""Ordinary faults around a sweep, without Ray: a second run of one sweep, --resume on a damaged or
different sweep, what preflight finds before any trial starts, credentials, untrusted sweep folders."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Payload, tune, write
from trainables.errors import SpecError, redact
from trainables.results.layout import save_spec
from trainables.results.lock import SweepLock
from trainables.spec.load import load_spec

SPEC = """\
name: f
dataset: {name: digits, limit: 100}
epochs: 2
parameters:
  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 16
  lr: {loguniform: [1.0e-3, 1.0e-2]}
search: {num_samples: 2}
tracking: {enabled: false}
"""


@pytest.fixture(autouse=True)
def _no_ray_started():
    """Each fault here is found before Ray starts; a test that started it would also leave it running."""
    yield
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()  # or every later test here would fail on it too
        pytest.fail("this fault was found only after Ray had started")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- 6. one run per sweep; --resume only onto a sound sweep with the same spec ---------------

def test_a_second_run_of_a_sweep_stops_at_once_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / "r" / ".f.lock"
        lock.parent.mkdir()
        import socket

        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": None, "since": "now"}))
        result = tune("run", write(tmp_path / "s.yaml", SPEC), "--storage", tmp_path / "r", cwd=tmp_path)
        assert result.exit_code == 2, result.output
        assert f"pid {holder.pid}" in result.output and "another `tune run`" in result.output
        assert lock.exists()  # the holder's lock is left alone
    finally:
        holder.kill()
        holder.wait()


def test_a_sweep_on_remote_storage_is_locked_too(tmp_path, monkeypatch):
    """Remote storage had no lock: two `tune run --resume` of one s3 sweep wrote the same state together.
    (file:// reaches the folder through the same pyarrow filesystem as s3://.)"""
    import socket

    from trainables.results.lock import RemoteLock, lock_for

    monkeypatch.setattr(RemoteLock, "SETTLE", 0.05)
    uri = f"file://{tmp_path}/bucket/sweep"
    lock_file = tmp_path / "bucket" / ".sweep.lock"
    first = lock_for(uri).acquire()
    assert isinstance(first, RemoteLock) and lock_file.is_file()
    with pytest.raises(SpecError, match="being run by another `tune run`"):
        RemoteLock(uri).acquire()
    first.release()
    assert not lock_file.exists()
    me = socket.gethostname()
    for holder, taken in [({"pid": _dead_pid(), "host": me, "beat": time.time()}, True),  # its process is gone
                          ({"pid": 1, "host": "elsewhere", "beat": time.time() - 3600}, True),  # not renewed
                          ({"pid": 1, "host": "elsewhere", "beat": time.time()}, False),  # renewed: running
                          ("cut sho", True)]:
        lock_file.write_text(json.dumps(holder) if not isinstance(holder, str) else holder)
        if taken:
            RemoteLock(uri).acquire().release()
            assert not lock_file.exists()
        else:
            with pytest.raises(SpecError, match="elsewhere"):
                RemoteLock(uri).acquire()


def test_a_stale_lock_is_taken_over_and_released(tmp_path):
    path = tmp_path / "r" / "f"
    stale = path.parent / ".f.lock"
    stale.parent.mkdir()
    stale.write_text(json.dumps({"pid": _dead_pid(), "host": __import__("socket").gethostname()}))
    lock = SweepLock(str(path)).acquire()
    assert json.loads(stale.read_text())["pid"] == os.getpid()
    with pytest.raises(SpecError, match="being run by another"):
        SweepLock(str(path)).acquire()
    lock.release()
    assert not stale.exists()


def _saved_sweep(tmp_path: Path, spec_text: str = SPEC) -> Path:
    """A sweep folder as `tune run` leaves it (spec.yaml, Tune's state files), made without Ray."""
    spec = load_spec(write(tmp_path / "s.yaml", spec_text))
    folder = tmp_path / "r" / spec.name
    save_spec(spec, str(folder))
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    (folder / "tuner.pkl").write_bytes(b"x")
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", ["no state", "bad json", "no tuner.pkl", "bad spec.yaml", "bad optuna.db",
                                    "no optuna.db", "another study"])
def test_resume_of_a_damaged_sweep_exits_2_and_changes_nothing(tmp_path, damage):
    folder = _saved_sweep(tmp_path)
    state = next(folder.glob("experiment_state-*.json"))
    if damage == "no state":
        state.unlink()
    elif damage == "bad json":
        state.write_text('{"trial_data": [')
    elif damage == "no tuner.pkl":
        (folder / "tuner.pkl").unlink()
    elif damage == "bad spec.yaml":
        (folder / "spec.yaml").write_text("name: [")
    elif damage == "bad optuna.db":  # SQLAlchemy's "file is not a database", from inside Tune's restore
        (folder / "optuna.db").write_bytes(os.urandom(4096))
    elif damage == "another study":  # an SQLite file, not this sweep's study (Ray's restore failed, then hung)
        import optuna

        optuna.create_study(study_name="other", storage=f"sqlite:///{folder / 'optuna.db'}")
    # "no optuna.db": the optuna search's study deleted (Ray's restore raised KeyError and hung)
    before = _snapshot(folder)
    result = tune("run", tmp_path / "s.yaml", "--storage", tmp_path / "r", "--resume", cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "nothing was changed" in result.output and "Traceback" not in result.output
    assert _snapshot(folder) == before


def test_resume_with_a_different_spec_names_the_keys_that_changed(tmp_path):
    _saved_sweep(tmp_path)
    result = tune("run", tmp_path / "s.yaml", "--storage", tmp_path / "r", "--resume", "-o", "epochs=5",
                  "-o", "parameters.lr={loguniform: [1.0e-4, 1.0e-2]}", "-o", "tracking.enabled=true", cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "epochs" in result.output and "parameters.lr" in result.output and "tracking" not in result.output.split(
        "changed since")[0]


def test_resume_where_nothing_was_saved(tmp_path):
    result = tune("run", write(tmp_path / "s.yaml", SPEC), "--storage", tmp_path / "r", "--resume", cwd=tmp_path)
    assert result.exit_code == 2 and "nothing to resume" in result.output
    assert not (tmp_path / "r").exists()


# ---- 3. preflight: what every trial would find out -------------------------------------------

def _image_folder(root: Path, classes=("a", "b"), n=3) -> Path:
    from PIL import Image

    for c in classes:
        (root / "train" / c).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 32), (i * 40, 90, 200)).save(root / "train" / c / f"{i}.jpg")
    return root


FOLDER_SPEC = SPEC.replace("dataset: {name: digits, limit: 100}", "dataset: {name: imagefolder, root: ROOT}")


def _validate(tmp_path: Path, text: str, *overrides: str):
    return tune("validate", write(tmp_path / "v.yaml", text), "--offline", *(a for o in overrides for a in ("-o", o)),
                cwd=tmp_path)


def test_a_missing_dataset_root_is_named_before_any_trial(tmp_path):
    result = _validate(tmp_path, FOLDER_SPEC.replace("ROOT", str(tmp_path / "nope")))
    assert result.exit_code == 2 and "dataset.root" in result.output and "does not exist" in result.output
    assert "v.yaml, line 2: dataset.root:" in result.output  # a check after parsing points at the line too
    result = _validate(tmp_path, FOLDER_SPEC.replace("ROOT", str(tmp_path / "nope")), "dataset.root=/nope2")
    assert "v.yaml: dataset.root: /nope2 does not exist" in result.output, result.output  # no line: -o set it


def test_an_image_folder_needs_two_classes(tmp_path):
    root = _image_folder(tmp_path / "data", classes=("only",))
    result = _validate(tmp_path, FOLDER_SPEC.replace("ROOT", str(root)))
    assert result.exit_code == 2 and "two class folders" in result.output


def test_a_class_too_small_to_split_is_named_before_any_trial(tmp_path):
    # each trial would make the same stratified split and fail on it
    root = _image_folder(tmp_path / "data", n=5)
    for f in list((root / "train" / "b").iterdir())[1:]:
        f.unlink()
    result = _validate(tmp_path, FOLDER_SPEC.replace("ROOT", str(root)))
    assert result.exit_code == 2 and "dataset.root" in result.output and "b: 1" in result.output, result.output
    result = _validate(tmp_path, FOLDER_SPEC.replace("ROOT", str(_image_folder(tmp_path / "d2", n=3))))
    assert result.exit_code == 2 and "cannot hold one of each of 2 classes" in result.output, result.output


def test_a_corrupt_image_is_named_or_skipped_with_a_count(tmp_path):
    root = _image_folder(tmp_path / "data", n=5)
    bad = root / "train" / "b" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # cut short, as an interrupted copy leaves it
    result = _validate(tmp_path, FOLDER_SPEC.replace("ROOT", str(root)))
    assert result.exit_code == 2 and str(bad) in result.output and "skip_bad_images" in result.output
    result = _validate(tmp_path, FOLDER_SPEC.replace("ROOT", str(root)), "dataset.skip_bad_images=true")
    assert result.exit_code == 0, result.output
    assert "leaving out 1 of 10 images" in result.output


def test_a_skipped_image_is_left_out_of_the_trials_data(tmp_path):
    from trainables.core.data import load_splits
    from trainables.spec.preflight import preflight

    root = _image_folder(tmp_path / "data", n=5)
    (root / "train" / "a" / "0.jpg").write_bytes(b"not an image")
    spec = preflight(load_spec(write(tmp_path / "v.yaml", FOLDER_SPEC.replace("ROOT", str(root))),
                               ["dataset.skip_bad_images=true"]), say=lambda line: None)
    assert spec.dataset.exclude == ("train/a/0.jpg",)
    splits = load_splits(spec.dataset)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 9


def test_weights_that_do_not_fit_the_backbone_are_refused_before_training(tmp_path):
    import torch

    w = tmp_path / "w.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3, 3, 3)}, w)
    text = SPEC.replace("""  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 16
""", f"""  model: finetune
  backbone: resnet18
  weights: {w}
""")
    result = _validate(tmp_path, text)
    assert result.exit_code == 2 and "parameters.weights" in result.output and "do not fit" in result.output
    for damaged in (b"", b"PK\x03\x04" + bytes(100), b"not torch"):  # empty: an IndexError traceback
        w.write_bytes(damaged)
        result = _validate(tmp_path, text)
        assert result.exit_code == 2 and "cannot be read" in result.output, result.output


def test_a_trainable_that_cannot_take_a_config_is_refused(tmp_path):
    text = SPEC.replace("dataset: {name: digits, limit: 100}", "trainable: os.path:join\nmetric: score")
    text = text.replace("""  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 16
""", "")
    result = _validate(tmp_path, text.replace("os.path:join", "tests.test_faults:_dead_pid"))
    assert result.exit_code == 2 and "must take one argument" in result.output


def test_too_few_fake_images_for_their_classes(tmp_path):
    result = _validate(tmp_path, SPEC, "dataset={name: fake, num_samples: 20, num_classes: 10}")
    assert result.exit_code == 2 and "dataset.num_samples" in result.output


@pytest.mark.parametrize("dataset", ["{name: digits, val_fraction: 0.999, test_fraction: 0.99}",
                                     "{name: fake, num_samples: 50, num_classes: 10, val_fraction: 0.9}"])
def test_a_built_in_dataset_split_too_small_for_its_classes_is_named_before_any_trial(tmp_path, dataset):
    """As for image folders: every trial failed in its split."""
    result = _validate(tmp_path, SPEC, f"dataset={dataset}")
    assert result.exit_code == 2 and "cannot be split into train, validation" in result.output, result.output


def test_an_unsupported_tracking_scheme_is_bad_input(tmp_path):
    result = tune("validate", write(tmp_path / "v.yaml", SPEC), "-o", "tracking={enabled: true, uri: 'ftp://h/x'}",
                  cwd=tmp_path)
    assert result.exit_code == 2 and "tracking.uri" in result.output and "ftp://" in result.output


# ---- 7. credentials and untrusted folders --------------------------------------------------

def test_credentials_in_uris_are_redacted():
    assert redact("http://alice:s3cret@mlflow:5000/x") == "http://***@mlflow:5000/x"
    assert redact("s3://:s3cret@bucket/x") == "s3://***@bucket/x"  # a password without a user too
    # a quote in a password (legal unencoded), hyphenated and Authorization query keys: printed as they were
    assert redact("http://user:pa'ss@127.0.0.1:1 x") == "http://***@127.0.0.1:1 x"
    for key in ("api-key", "access-token", "X-Api-Key", "Authorization"):
        assert redact(f"http://h/x?{key}=SECRET9&a=1") == f"http://h/x?{key}=***&a=1"
    assert "abc" not in redact("https://h/api?token=abc&run=1") and "run=1" in redact("https://h/api?token=abc&run=1")
    # secrets holding / (AWS secret keys do), @ or an unencoded space, inside a message quoting the URI
    for secret in ("s3c/ret", "s3c@ret", "s3c ret", "s3c/rXe@tYz wQq", "pzz@wqrd wqrd2"):
        for text in (f"cannot parse 's3://AKIAX:{secret}@bucket/x' at http://h2/y",
                     f"(http://alice:{secret}@h:1/health) at http://h2/y"):
            shown = redact(text)
            assert not any(part in shown for part in secret.replace("@", " ").replace("/", " ").split()), shown
            assert ("bucket/x" in shown or "h:1/health" in shown) and "http://h2/y" in shown, shown
    assert redact("mlflow at http://127.0.0.1:5000 said: user bob@corp") == \
        "mlflow at http://127.0.0.1:5000 said: user bob@corp"  # a port is no password
    assert redact("sqlite:///a/b.db and file:///c/d") == "sqlite:///a/b.db and file:///c/d"


@pytest.mark.parametrize("args", [
    ["validate", "-o", "tracking={enabled: true, uri: 'http://alice:s3cret@[::1'}"],
    ["run", "--dry-run", "--storage", "s3://k:s3cret@[::1/x"],
])
def test_a_uri_that_does_not_parse_is_bad_input(tmp_path, args):
    """An unclosed [IPv6 host: urllib's ValueError was a traceback."""
    spec = str(write(tmp_path / "v.yaml", SPEC))
    result = tune(args[0], spec, *args[1:], cwd=tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output and "s3cret" not in result.output, result.output
    assert ("tracking.uri" if args[0] == "validate" else "--storage") in result.output


def test_a_password_in_the_tracking_uri_is_never_printed_or_saved(tmp_path):
    uri = "http://alice:s3cret@127.0.0.1:9/"
    result = tune("run", write(tmp_path / "s.yaml", SPEC), "--storage", tmp_path / "r", "-o",
                  f"tracking={{enabled: true, uri: '{uri}'}}", cwd=tmp_path)
    assert result.exit_code == 2, result.output  # nothing answers on port 9
    assert "s3cret" not in result.output and "***@127.0.0.1" in result.output
    spec = load_spec(write(tmp_path / "s2.yaml", SPEC), [f"tracking.uri={uri}"])
    save_spec(spec, str(tmp_path / "saved"))
    assert "s3cret" not in (tmp_path / "saved" / "spec.yaml").read_text()


def test_best_and_report_read_a_sweep_folder_without_running_code_from_it(tmp_path):
    """A sweep folder from elsewhere: Tune's state holds cloudpickled fields; none is unpickled."""
    folder = _saved_sweep(tmp_path)
    marker = tmp_path / "ran"
    bomb = {"_type": "CLOUDPICKLE_FALLBACK", "value": pickle.dumps(Payload(marker)).hex()}
    trial = {"trial_id": "t1", "status": "TERMINATED", "config": {"lr": 0.005}, "relative_logdir": "trial_t1",
             "storage": bomb, "placement_group_factory": pickle.dumps(Payload(marker)).hex()}
    meta = {"last_result": {"val_acc": 0.75, "training_iteration": 2, "time_total_s": 3.0}, "checkpoint_manager": bomb}
    state = next(folder.glob("experiment_state-*.json"))
    state.write_text(json.dumps({"trial_data": [[json.dumps(trial), json.dumps(meta)]]}))
    (folder / "trial_t1").mkdir()
    rows = [{"epoch": e, "val_acc": 0.5 + e / 8, "training_iteration": e, "config": {"lr": 0.005}} for e in (1, 2)]
    (folder / "trial_t1" / "result.json").write_text("\n".join(map(json.dumps, rows)) + "\n")
    (folder / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    result = tune("best", folder, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "lr: 0.005" in result.output and "val_acc=0.7500" in result.output
    result = tune("report", folder, "--out", tmp_path / "reports", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert not marker.exists()


@pytest.mark.parametrize("trial,meta", [
    ({"trial_id": "t1", "status": "TERMINATED", "config": [1, 2]}, {"last_result": {"val_acc": 0.5}}),
    ({"trial_id": "t1", "status": "TERMINATED", "config": {"lr": 0.005}},
     {"last_result": {"val_acc": 0.5, "training_iteration": "x", "time_total_s": "y"}}),
    ({"trial_id": "t1", "config": {"lr": 0.005}},
     {"last_result": {"val_acc": float("inf"), "training_iteration": 1e308}}),
    ("not a trial", ["nor", "its", "metadata"]),
])
def test_a_damaged_sweep_folder_is_read_as_far_as_it_holds(tmp_path, trial, meta):
    folder = _saved_sweep(tmp_path)
    state = next(folder.glob("experiment_state-*.json"))
    state.write_text(json.dumps({"trial_data": [[json.dumps(trial), json.dumps(meta)]]}))
    for command in ("best", "report"):
        result = tune(command, folder, "--out", tmp_path / "reports", cwd=tmp_path) if command == "report" else \
            tune(command, folder, cwd=tmp_path)
        assert result.exit_code in (0, 2), (command, result.output, result.exception)
        assert "Traceback" not in result.output


def test_a_program_command_that_cannot_start_is_named_before_any_trial(tmp_path):
    """Each passed `tune validate`, then every trial failed with "train.py exited with code 127"."""
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "notexec.sh").write_text("#!/bin/sh\n")
    wandb = ("program: train.py\nmethod: random\nmetric: {name: loss, goal: minimize}\nrun_cap: 1\n"
             "parameters: {lr: {values: [1, 2]}}\n")
    for command, words in [("[nonexistent-binary-zz, '${program}']", "is not found on PATH"),
                           ("['${env}', nonexistent-binary-zz, '${program}']", "is not found on PATH"),
                           ("[./notexec.sh, '${program}']", "is not an executable file")]:
        result = _validate(tmp_path, wandb + f"command: {command}\n")
        assert result.exit_code == 2 and "program.command" in result.output and words in result.output, result.output
    assert _validate(tmp_path, wandb).exit_code == 0  # W&B's default: ${env} ${interpreter} ${program} ${args}
    # python -m of a module that is not there (passed, then every trial failed "No module named ...")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "train.py").write_text("print('hi')\n")
    module = "command: ['${env}', '${interpreter}', '-m', '${program}', '${args}']\n"
    for name, words in (("pkg.trian", "no module"), ("nopkg.train", "no module"), ("pkg..x", "is not a module name")):
        result = _validate(tmp_path, wandb.replace("program: train.py", f"program: {name}") + module)
        assert result.exit_code == 2 and "program.file" in result.output and words in result.output, result.output
    assert _validate(tmp_path, wandb.replace("program: train.py", "program: pkg.train") + module).exit_code == 0
    # nothing of the user's runs in `tune validate`: not a package's __init__, nor the script (a -m elsewhere)
    (tmp_path / "pkg" / "__init__.py").write_text("open('ran', 'w').close()\n")
    (tmp_path / "train.py").write_text("open('ran', 'w').close()\n")
    assert _validate(tmp_path, wandb.replace("program: train.py", "program: pkg.train") + module).exit_code == 0
    odd = "command: ['${env}', '${interpreter}', '${program}', '-m', '5', '${args}']\n"
    assert _validate(tmp_path, wandb + odd).exit_code == 0
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("name", ["TRAINABLES_MLFLOW_WAIT", "TRAINABLES_RESOURCE_TIMEOUT",
                                  "TRAINABLES_PROGRESS_SECONDS", "TRAINABLES_PROBE_TIMEOUT"])
def test_seconds_from_the_environment_are_checked_before_the_sweep(tmp_path, monkeypatch, name):
    """`float(os.environ[...])`: a typo was a ValueError traceback, TRAINABLES_MLFLOW_WAIT's at the end of the
    sweep, after every trial had run; nan or a negative number waited oddly or not at all."""
    from trainables.errors import SECONDS, env_seconds

    spec = write(tmp_path / "s.yaml", SPEC)
    for bad in ("5m", "nan", "-1", "inf", "1e306") + (("0",) if name == "TRAINABLES_PROBE_TIMEOUT" else ()):
        monkeypatch.setenv(name, bad)
        result = tune("run", spec, "--dry-run", cwd=tmp_path)
        assert result.exit_code == 2 and f"${name}={bad!r} is not a number of seconds" in result.output, \
            result.output
    monkeypatch.setenv(name, "5m")
    result = tune("validate", spec, "--offline", cwd=tmp_path)  # what `tune run` would say
    assert result.exit_code == 2 and f"${name}='5m'" in result.output, result.output
    monkeypatch.setenv(name, " 7.5 ")
    assert env_seconds(name) == 7.5 and tune("run", spec, "--dry-run", cwd=tmp_path).exit_code == 0
    monkeypatch.setenv(name, "")
    assert env_seconds(name) == SECONDS[name]


def test_image_folders_that_would_train_wrongly_or_hang_are_refused(tmp_path):
    """Each passed `tune validate` (and one hung it for ever): a pipe named like an image; test images that are
    training images through links; one file under two classes; val/ classes train/ has not (their images
    dropped); val/ and test/ both (test/ ignored); with skip_bad_images, a class left too small to split."""
    def check(root, words, *overrides):
        result = _validate(tmp_path, FOLDER_SPEC.replace("ROOT", str(root)), *overrides)
        assert result.exit_code == 2 and words in result.output, result.output

    fifo = _image_folder(tmp_path / "fifo", n=4)
    os.mkfifo(fifo / "train" / "a" / "pipe.jpg")
    check(fifo, "pipe.jpg (not a regular file")  # named, not opened: validate hung on it
    result = _validate(tmp_path, FOLDER_SPEC.replace("ROOT", str(fifo)), "dataset.skip_bad_images=true")
    assert result.exit_code == 0 and "leaving out 1 of" in result.output, result.output

    leak = _image_folder(tmp_path / "leak", n=4)
    (leak / "val").mkdir()
    for c in ("a", "b"):
        (leak / "val" / c).symlink_to(leak / "train" / c)
    check(leak, "8 of 8 images in")
    check(leak, "the test split would score images the model trained on")

    twice = _image_folder(tmp_path / "twice", n=4)
    (twice / "train" / "a" / "z.jpg").symlink_to(twice / "train" / "b" / "0.jpg")
    check(twice, "are one file (through a link) under two classes")

    other = _image_folder(tmp_path / "other", n=4)
    for c in ("a", "bird"):
        (other / "val" / c).mkdir(parents=True)
        (other / "val" / c / "0.jpg").write_bytes((other / "train" / "a" / "0.jpg").read_bytes())
    check(other, "that ")
    check(other, "has not: ['bird']")
    (other / "val" / "bird" / "0.jpg").unlink()
    (other / "val" / "bird").rmdir()
    (other / "test").mkdir()
    (other / "test" / "unlabelled.jpg").write_bytes((other / "train" / "a" / "0.jpg").read_bytes())
    (other / "val" / "__MACOSX").mkdir()  # no images: not a class
    assert _validate(tmp_path, FOLDER_SPEC.replace("ROOT", str(other))).exit_code == 0  # a flat test/: val/ is it
    (other / "test" / "a").mkdir()
    (other / "test" / "a" / "0.jpg").write_bytes((other / "train" / "a" / "0.jpg").read_bytes())
    check(other, "has both val/ and test/ with class folders")

    hard = _image_folder(tmp_path / "hard", n=4)
    os.link(hard / "train" / "b" / "0.jpg", hard / "train" / "a" / "z.jpg")  # a hard link is one file too
    check(hard, "under two classes")

    small = _image_folder(tmp_path / "small", n=6)
    for i in range(5):  # b keeps one readable image: it cannot be in both training and validation
        (small / "train" / "b" / f"{i}.jpg").write_bytes(b"")
    check(small, "cannot be split", "dataset.skip_bad_images=true")


def test_a_limit_keeps_every_class():
    """`limit` took a plain sample of the training split: 10 of 100/6/6 images held only the first class."""
    import numpy as np

    from trainables.core.data.config import DatasetConfig
    from trainables.core.data.stratify import TooFewImages, split_indices

    labels = np.array([0] * 100 + [1] * 12 + [2] * 12)
    for seed in range(5):
        cfg = DatasetConfig(name="digits", limit=10, seed=seed, val_fraction=0.2)
        train, val, test = split_indices(labels, cfg, has_test=False)
        assert len(train) == 10 and set(labels[train]) == {0, 1, 2}, labels[train]
        assert not set(train) & set(val) and not set(train) & set(test)
    with pytest.raises(TooFewImages, match="fewer than the 12 classes"):
        split_indices(np.repeat(np.arange(12), 10), DatasetConfig(name="digits", limit=10), has_test=False)
