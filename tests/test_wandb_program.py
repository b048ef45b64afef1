"""`trainable: program`: a W&B training script run unchanged per trial, its wandb calls answered by the
stand-in; unit tests of the runner (no Ray), then whole sweeps of W&B sweep configs through `tune run`."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import write
from trainables.tune.program import ProgramFailed, command_line, nested, run_program


def _run(tmp_path, script: str, config: dict, *, command=None, metric="loss"):
    (tmp_path / "train.py").write_text(textwrap.dedent(script))
    reports: list[dict] = []
    run_program(config, file="train.py", command=command or ["${env}", "${interpreter}", "${program}", "${args}"],
                metric=metric, report=reports.append, workdir=str(tmp_path / "trial"), trial_id="t1", sweep="s",
                home=str(tmp_path), paths={"opt.name": ["opt", "name"], "opt.lr": ["opt", "lr"]})
    return reports


def test_the_sweep_values_win_over_the_scripts_defaults(tmp_path):
    """W&B's order: config-defaults.yaml < init(config=...) < the sweep's values, which stay."""
    (tmp_path / "config-defaults.yaml").write_text("wandb_version: 1\nepochs: {value: 2}\nwidth: 8\n")
    reports = _run(tmp_path, """\
        import wandb
        run = wandb.init(project="p", config={"lr": 1.0, "opt": {"name": "sgd", "m": 0.9}, "width": 4})
        wandb.config.update({"lr": 5.0, "extra": 1})   # a sweep value: kept; a new key: added
        c = wandb.config
        wandb.log({"loss": c.lr, "m": c["opt"]["m"], "width": c.width, "epochs": c.epochs, "extra": c.get("extra"),
                   "is_adam": int(c.opt["name"] == "adam"), "a_bool": True})   # a bool is no metric value in W&B
        """, {"lr": 0.5, "opt.name": "adam"})
    assert reports == [{"loss": 0.5, "m": 0.9, "width": 4, "epochs": 2, "extra": 1, "is_adam": 1}]


def test_each_committed_row_with_the_metric_is_one_report(tmp_path):
    reports = _run(tmp_path, """\
        import wandb, numpy as np
        wandb.init()
        for i in range(3):
            wandb.log({"train_loss": 10 - i})            # a row without the metric: carried to the next report
            wandb.log({"loss": np.float32(1 / (i + 1))}, commit=False)
            wandb.log({"acc": i, "img": wandb.Image(None), "nested": {"a": i}})   # commits the row
        wandb.log({"loss": 0.1}, step=10)
        wandb.log({"acc": 9}, step=10)                    # same step: the same row
        wandb.log({"loss": 5.0}, step=3)                  # an earlier step: dropped, as W&B drops it
        wandb.finish()
        """, {})
    assert [r["loss"] for r in reports] == pytest.approx([1.0, 0.5, 1 / 3, 0.1])
    assert [r["train_loss"] for r in reports] == [10, 9, 8, 8]
    assert reports[1]["nested.a"] == 1 and "img" not in reports[1] and reports[-1]["acc"] == 9


@pytest.mark.parametrize("macro, expect", [
    ("${args}", ["--lr=0.1", "--flag=True", "--off=False", "--opt={'b': 2}"]),
    ("${args_no_hyphens}", ["lr=0.1", "flag=True", "off=False", "opt={'b': 2}"]),
    ("${args_no_equals}", ["--lr", "0.1", "--flag", "True", "--off", "False", "--opt", "{'b': 2}"]),
    ("${args_no_boolean_flags}", ["--lr=0.1", "--flag", "--opt={'b': 2}"]),
    ("${args_json}", ['{"lr": 0.1, "flag": true, "off": false, "opt": {"b": 2}}']),
    ("${args_append_hydra}", ["+lr=0.1", "+flag=True", "+off=False", "+opt={'b': 2}"]),
    ("${args_override_hydra}", ["++lr=0.1", "++flag=True", "++off=False", "++opt={'b': 2}"]),
])
def test_macros_expand_as_wandbs_agent_expands_them(macro, expect):
    config = nested({"lr": 0.1, "flag": True, "off": False, "opt.b": 2}, {"opt.b": ["opt", "b"]})
    assert command_line([macro], program="p.py", config=config, config_file="c.json") == expect


def test_only_wandbs_nested_parameters_nest_again():
    paths = {"opt.lr": ["opt", "lr"], "opt.beta.b1": ["opt", "beta", "b1"], "o.x.y": ["o.x", "y"]}
    assert nested({"a.b": 1, "opt.lr": 2, "opt.beta.b1": 3, "o.x.y": 4}, paths) == {
        "a.b": 1, "opt": {"lr": 2, "beta": {"b1": 3}}, "o.x": {"y": 4}}


def test_env_interpreter_program_and_envvar(monkeypatch):
    monkeypatch.setenv("DATA_DIR", "/data")
    argv = command_line(["${env}", "${interpreter}", "${program}", "--root=${envvar:DATA_DIR}", "${args_json_file}"],
                        program="train.py", config={}, config_file="/x/c.json")
    assert argv == ["/usr/bin/env", sys.executable, "train.py", "--root=/data", "/x/c.json"]


def test_a_script_that_fails_is_a_failed_trial_with_its_stderr(tmp_path):
    with pytest.raises(ProgramFailed, match=r"(?s)exited with code 3.*the end of its stderr.*out of memory"):
        _run(tmp_path, """\
            import sys, wandb
            wandb.init()
            wandb.log({"loss": 1.0})
            print("CUDA out of memory", file=sys.stderr)
            sys.exit(3)
            """, {})
    # a line of megabytes on stderr went whole into the error (error.txt, error.pkl) and the terminal
    with pytest.raises(ProgramFailed) as failed:
        _run(tmp_path, """\
            import sys
            sys.stderr.write("x" * 5_000_000)
            print("\\nCUDA out of memory", file=sys.stderr)
            sys.exit(3)
            """, {})
    assert "out of memory" in str(failed.value) and len(str(failed.value)) < 20_000
    with pytest.raises(ProgramFailed, match="exit_code=2"):
        _run(tmp_path, "import wandb\nwandb.init()\nwandb.finish(exit_code=2)\n", {})
    with pytest.raises(ProgramFailed, match="No such file"):
        _run(tmp_path, "", {}, command=["/no/such/interpreter", "${program}"])


def test_other_wandb_calls_do_nothing_and_say_so_once(tmp_path, capfd):
    _run(tmp_path, """\
        import wandb
        with wandb.init() as run:
            wandb.watch(object()); wandb.watch(object())
            run.log_artifact(wandb.Artifact("m", type="model"))
            wandb.define_metric("loss", summary="min")
            run.summary["best"] = 1
            wandb.log({"loss": 1, "table": wandb.Table(columns=["a"])})
        """, {})
    err = capfd.readouterr().err
    assert err.count("wandb.watch does nothing") == 1 and "run.log_artifact" in err


def test_the_agent_pattern_runs_the_function_once(tmp_path):
    """`wandb.agent(wandb.sweep(config), train)` inside the script: the trial is that one run."""
    reports = _run(tmp_path, """\
        import wandb
        def train():
            with wandb.init() as run:
                wandb.log({"loss": run.config["lr"]})
        wandb.agent(wandb.sweep({"method": "random"}), function=train, count=5)
        """, {"lr": 0.3})
    assert reports == [{"loss": 0.3}]


def test_stopping_a_trial_stops_the_program_and_its_children(tmp_path):
    """ASHA's stop reaches the trial as SystemExit inside report: the script's process group ends."""
    pids = tmp_path / "pids"

    def report(metrics):
        raise SystemExit(0)

    (tmp_path / "train.py").write_text(textwrap.dedent(f"""\
        import os, subprocess, sys, time, wandb
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        # a session of its own: out of the program's process group (it outlived the trial)
        daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{child.pid}} {{daemon.pid}}")
        wandb.init()
        for i in range(100):
            wandb.log({{"loss": i}})
            time.sleep(0.1)
        """))
    t0 = time.monotonic()
    with pytest.raises(SystemExit):
        run_program({}, file="train.py", command=["${interpreter}", "${program}"], metric="loss", report=report,
                    workdir=str(tmp_path / "trial"), trial_id="t", sweep="s", home=str(tmp_path))
    assert time.monotonic() - t0 < 5
    for pid in map(int, pids.read_text().split()):
        assert _gone(pid), f"process {pid} outlived its trial"


def _gone(pid: int, seconds: float = 5.0) -> bool:
    """Whether the process ends within `seconds` (killed here if it does not)."""
    import signal

    for _ in range(int(seconds * 10)):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return False


def test_a_killed_trial_process_leaves_no_program(tmp_path):
    """A Ray worker killed while its program is silent (not inside a report): the program goes with it."""
    import signal
    import subprocess

    pids = tmp_path / "pid"
    (tmp_path / "train.py").write_text(f"import os, time\nopen({str(pids)!r}, 'w').write(str(os.getpid()))\n"
                                       "time.sleep(60)\n")
    worker = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        from trainables.tune.program import run_program
        run_program({{}}, file="train.py", command=["${{interpreter}}", "${{program}}"], metric="loss",
                    report=print, workdir={str(tmp_path / "trial")!r}, trial_id="t", sweep="s", home={str(tmp_path)!r})
        """)], cwd=tmp_path)
    for _ in range(100):
        if pids.exists() and pids.read_text():
            break
        time.sleep(0.1)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert _gone(int(pids.read_text())), "the program outlived its trial's process"


def test_rows_go_to_the_trial_whatever_the_script_opened_first(tmp_path):
    """The channel is a named pipe: descriptors the script opened, or a launcher closed, change nothing."""
    reports = _run(tmp_path, f"""\
        files = [open({str(tmp_path / 'mine')!r} + str(i), "w") for i in range(8)]
        import os, wandb
        for fd in range(3, 64):   # as a launcher that closes every inherited descriptor
            if fd not in [f.fileno() for f in files]:
                try:
                    os.close(fd)
                except OSError:
                    pass
        wandb.init()
        wandb.log({{"loss": 1.5}})
        """, {})
    assert reports == [{"loss": 1.5}]
    assert all((tmp_path / f"mine{i}").read_text() == "" for i in range(8))


def test_the_trial_ends_with_the_script_not_with_its_children(tmp_path):
    t0 = time.monotonic()
    reports = _run(tmp_path, """\
        import subprocess, sys, wandb
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])   # outlives the script
        wandb.init()
        wandb.log({"loss": 1.0})
        """, {})
    assert reports == [{"loss": 1.0}] and time.monotonic() - t0 < 10


def test_only_finite_values_count_and_a_summary_only_metric_is_reported_once(tmp_path):
    reports = _run(tmp_path, """\
        import wandb
        wandb.init()
        wandb.log({"loss": float("nan"), "acc": 1})
        wandb.log({"loss": True})
        wandb.log({"loss": 10**400})
        wandb.log({"acc": 2})
        """, {})
    assert reports == []
    reports = _run(tmp_path, """\
        import wandb
        run = wandb.init()
        run.summary["loss"] = 0.25
        run.summary.update({"acc": 0.9})
        wandb.log({"epoch": 3})
        """, {})
    assert reports == [{"epoch": 3, "loss": 0.25, "acc": 0.9}]
    # only set by item, nothing logged after it (W&B's usual way): it was lost ("reports no 'loss'")
    reports = _run(tmp_path, """\
        import wandb
        run = wandb.init()
        run.summary["loss"] = 0.3
        """, {})
    assert reports == [{"loss": 0.3}]


def test_a_script_that_never_logs_its_metric_reports_what_it_logged(tmp_path):
    """Logging another name (val_los for loss) reported nothing: the sweep ran every trial to "no trial reported
    loss", never saying what the script did log. Now its rows are reported once, at its end, and MetricCheck
    stops the sweep naming them; a script that failed is a failed trial, as before."""
    assert _run(tmp_path, "import wandb\nwandb.init()\nwandb.log({'val_los': 1.0, 'epoch': 1})\n", {}) == [
        {"val_los": 1.0, "epoch": 1}]
    assert _run(tmp_path, "print('hello')\n", {}) == [{}]
    with pytest.raises(ProgramFailed):
        _run(tmp_path, "import sys, wandb\nwandb.init()\nwandb.log({'acc': 1})\nsys.exit(3)\n", {})


def test_a_module_program_runs_with_python_dash_m(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "train.py").write_text("import wandb\nwandb.init()\nwandb.log({'loss': 2.0})\n")
    reports: list[dict] = []
    run_program({}, file="mypkg.train", command=["${interpreter}", "-m", "${program}"], metric="loss",
                report=reports.append, workdir=str(tmp_path / "trial"), trial_id="t", sweep="s", home=str(tmp_path))
    assert reports == [{"loss": 2.0}]


def test_outside_a_trial_the_stand_in_does_nothing(tmp_path):
    """The script run by hand with the stand-in on its path: no pipe, no error."""
    import subprocess

    from trainables.tune.program import STANDIN

    out = subprocess.run([sys.executable, "-c", "import wandb\nwandb.init(config={'a': 1})\nwandb.log({'x': 1})\n"
                          "print(wandb.config.a)"], env={**os.environ, "PYTHONPATH": STANDIN,
                                                         "TRAINABLES_WANDB_PIPE": str(tmp_path / "nothing")},
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr


def test_wandb_submodules_and_errors_are_there(tmp_path):
    reports = _run(tmp_path, """\
        import wandb, wandb.sdk
        from wandb.integration.keras import WandbMetricsLogger
        WandbMetricsLogger(log_freq=5)
        wandb.init()
        try:
            raise wandb.errors.CommError("offline")
        except wandb.errors.CommError:
            wandb.log({"loss": 0.5})
        """, {})
    assert reports == [{"loss": 0.5}]


# ---- whole sweeps ---------------------------------------------------------------------------

SCRIPT = """\
import argparse, math, wandb
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--epochs", type=int, default=3)
args, _ = p.parse_known_args()
run = wandb.init(config=vars(args))
c = wandb.config
for epoch in range(c.epochs):
    loss = (math.log10(c.lr) + 2) ** 2 + 1 / (epoch + 1) + (0.5 if c.get("opt", {}).get("name") == "sgd" else 0)
    wandb.log({"train_loss": 2 * loss})
    wandb.log({"val_loss": loss, "epoch": epoch})
run.finish()
"""


def _sweep(tmp_path, tune_in_process, config: str, *args, check=0):
    (tmp_path / "train.py").write_text(SCRIPT)
    out = tune_in_process("run", write(tmp_path / "sweep.yaml", config), "-o", "tracking.enabled=false",
                          "-o", "final.report=false", *args, cwd=tmp_path, check=check)
    from trainables.results.read import load_sweep

    return out, load_sweep(str(tmp_path / "results" / _name(config)), None)


def _name(config: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in config.splitlines() if line.startswith("name:"))


@pytest.mark.slow
def test_grid_over_a_script_that_reads_its_arguments(tune_in_process, tmp_path, monkeypatch):
    # Tune's state saved at every step: a script that ended must still read back as completed (Tune marks
    # it done in place, after a save may have taken its last result; callbacks.MarkStopped mends it)
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")
    out, sweep = _sweep(tmp_path, tune_in_process, """\
name: wb-grid
program: train.py
method: grid
metric: {name: val_loss}
parameters:
  lr: {values: [0.001, 0.01, 0.1]}
  epochs: {min: 2, max: 3}
""")
    assert "W&B sweep config: metric.goal not given: minimize" in out
    assert sorted((t.config["lr"], t.config["epochs"]) for t in sweep.trials) == [
        (lr, e) for lr in (0.001, 0.01, 0.1) for e in (2, 3)]
    assert all(t.status == "completed" and t.epochs == t.config["epochs"] for t in sweep.trials)
    assert sweep.best().config["lr"] == 0.01 and "train_loss" in sweep.best().last


@pytest.mark.slow
def test_random_with_hyperband_stops_the_worst_at_wandbs_bands(tune_in_process, tmp_path):
    _, sweep = _sweep(tmp_path, tune_in_process, """\
name: wb-hyperband
program: train.py
method: random
metric: {name: val_loss, goal: minimize}
run_cap: 6
parameters:
  lr: {distribution: log_uniform_values, min: 0.00001, max: 1.0}
  epochs: {value: 9}
  opt:
    parameters:
      name: {values: [adam, sgd]}
early_terminate: {type: hyperband, min_iter: 1, eta: 3}
""")
    assert len(sweep.trials) == 6 and all(1e-5 <= t.config["lr"] <= 1 for t in sweep.trials)
    assert {t.config["opt.name"] for t in sweep.trials} <= {"adam", "sgd"}
    stopped = [t for t in sweep.trials if t.status == "stopped early"]
    seen = [(t.trial_id, t.status, t.epochs, t.last.get("done"), t.last.get("stopped_by_tune")) for t in sweep.trials]
    # only at W&B's bands 1, 3, 9 (a trial cut at 9, where its script would have ended anyway, as W&B's own
    # hyperband may: which trials reach a band first decides)
    assert stopped and all(t.epochs in (1, 3, 9) for t in stopped), seen


@pytest.mark.slow
def test_bayes_with_a_failing_script(tune_in_process, tmp_path):
    """bayes -> optuna over the probability of a normal; a script that fails is an errored trial."""
    (tmp_path / "train.py").write_text(SCRIPT)
    config = """\
name: wb-bayes
program: train.py
method: bayes
metric: {name: val_loss, goal: minimize}
run_cap: 4
parameters:
  lr: {distribution: q_log_uniform_values, min: 0.0001, max: 0.1, q: 0.0001}
  epochs: {distribution: q_normal, mu: 3, sigma: 0.5, q: 1}
"""
    out, sweep = _sweep(tmp_path, tune_in_process, config)
    assert len(sweep.trials) == 4 and all(t.status == "completed" for t in sweep.trials)
    assert all(isinstance(t.config["epochs"], int) and t.epochs == t.config["epochs"] for t in sweep.trials)
    (tmp_path / "train.py").write_text("import sys\nprint('boom', file=sys.stderr)\nsys.exit(1)\n")
    tune_in_process("run", write(tmp_path / "sweep.yaml", config.replace("wb-bayes", "wb-fails")),
                          "-o", "tracking.enabled=false", "-o", "final.report=false", "-o", "search.num_samples=1",
                          cwd=tmp_path, check=1)
    from trainables.results.read import load_sweep

    failed = load_sweep(str(tmp_path / "results" / "wb-fails"), None).trials
    assert len(failed) == 1 and failed[0].status == "errored"
    assert "train.py exited with code 1; the end of its stderr:\nboom" in Path(failed[0].error).read_text()
    # a metric the script never logs: one clear error naming what it logs, not trials run to no result
    (tmp_path / "train.py").write_text(SCRIPT)
    out = tune_in_process("run", write(tmp_path / "typo.yaml", config.replace("wb-bayes", "wb-typo").replace(
        "name: val_loss", "name: val_los")), "-o", "tracking.enabled=false", "-o", "final.report=false",
        cwd=tmp_path, check=2)
    assert "train.py logs no 'val_los' (the sweep's metric); it logged train_loss, val_loss" in out, out


def test_json_args_file_is_the_nested_config(tmp_path):
    reports = _run(tmp_path, """\
        import json, sys, wandb
        wandb.init()
        cfg = json.load(open(sys.argv[1]))
        wandb.log({"loss": cfg["opt"]["lr"]})
        """, {"opt.lr": 0.25}, command=["${interpreter}", "${program}", "${args_json_file}"])
    assert reports == [{"loss": 0.25}]
    saved = tmp_path / "trial" / "wandb" / "sweep-s" / "config-t1.json"
    assert json.loads(saved.read_text()) == {"opt": {"lr": 0.25}}


def test_what_real_scripts_do_reaches_the_trial_as_wandb_would_take_it(tmp_path):
    """Each case failed before: a metric logged only as inf was taken for a typo (the sweep stopped: "logs no
    'loss'"); a file the script opened under the pipe's old descriptor number got its rows; a forked child's exit
    committed the parent's pending row again; np.bool_ counted as a value; run.log(sync=...), an array compared
    with a sweep value, config.persist() and a read-only mapping raised."""
    assert _run(tmp_path, """\
        import wandb
        wandb.init()
        for i in range(3):
            wandb.log({"loss": float("inf"), "epoch": i})
        """, {}) == []  # diverged: no value, not "never logged"
    assert _run(tmp_path, "import wandb\nrun = wandb.init()\nrun.summary['loss'] = float('inf')\n", {}) == []
    mine = tmp_path / "mine.txt"
    assert _run(tmp_path, f"""\
        import os, wandb
        wandb.init()
        wandb.log({{"loss": 1.0}})
        os.closerange(3, 1000)
        f = open({str(mine)!r}, "w")   # gets the pipe's old number
        wandb.log({{"loss": 2.0}})
        f.close()
        """, {}) == [{"loss": 1.0}, {"loss": 2.0}]
    assert mine.read_text() == ""
    assert [r["loss"] for r in _run(tmp_path, """\
        import os, sys, wandb
        wandb.init()
        wandb.log({"loss": 1.0}, step=0)
        if os.fork() == 0:
            sys.exit(0)   # the child's copy of the pending row is not the child's to commit
        os.wait()
        wandb.log({"loss": 2.0}, step=1)
        """, {})] == [1.0, 2.0]
    reports = _run(tmp_path, """\
        import types, numpy as np, wandb
        run = wandb.init(config={"lr": 1.0})
        wandb.config.update({"lr": np.array([1, 2])})   # a sweep value: kept, said
        wandb.config.persist()
        run.log({"loss": 0.5, "flag": np.bool_(True)}, sync=False)
        wandb.log(types.MappingProxyType({"loss": 0.25}))
        """, {"lr": 0.1})
    assert reports == [{"loss": 0.5}, {"loss": 0.25}]


def test_each_trial_has_a_run_folder_and_reports_stay_small(tmp_path):
    """run.dir was the folder `tune run` started in, one for every trial (torch.save(m, run.dir + "/model.pt")
    from concurrent trials overwrote each other); a new name at each step made every report carry them all."""
    reports = _run(tmp_path, """\
        import os, wandb
        run = wandb.init()
        open(os.path.join(run.dir, "model.pt"), "w").write("weights")
        for i in range(3000):
            wandb.log({"loss": 1 / (i + 1), f"batch_{i}/grad_norm": float(i)})
        """, {})
    assert (tmp_path / "trial" / "wandb" / "run-t1" / "files" / "model.pt").read_text() == "weights"
    assert len(reports) == 3000 and len(reports[-1]) <= 1000 and reports[-1]["batch_2999/grad_norm"] == 2999.0
    many = _run(tmp_path, """\
        import wandb
        wandb.init()
        wandb.log({"loss": 0.5, **{f"class_{i}": i for i in range(1500)}})   # a row of more names than are carried
        wandb.log({"loss": 0.25, "x": 1})
        """, {})
    assert [r["loss"] for r in many] == [0.5, 0.25] and len(many[0]) == 1501  # the row's own names all stay
