"""Figures 2-4: sweeps on Ray. `tune run` and the bare Ray Tune script run as the separate
commands a user would type, joined to one Ray head (started here unless RAY_ADDRESS names
one), one after the other; figure 3 runs our sweep code in this process."""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from trainables.bench.core import BATCH, MODEL
from trainables.bench.output import Figure, check
from trainables.tune.cluster import ensure_token

CONCURRENCY = 2


# ---- processes ---------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """A Ray head for the bench (`ray start --head`), or the one RAY_ADDRESS already names."""

    def __init__(self, cpus: int | None = None, log: Path | None = None):
        self.cpus, self.log = cpus, log
        self.proc: subprocess.Popen | None = None
        self.address = os.environ.get("RAY_ADDRESS")

    def __enter__(self) -> "RayHead":
        import socket

        if self.address:
            return self
        port = _free_port()
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray's default for a `ray start` head; clients must match
        ensure_token()
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
               "--include-dashboard=false", "--disable-usage-stats"]
        if self.cpus:
            cmd.append(f"--num-cpus={self.cpus}")
        log = open(self.log, "w") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the bench's Ray head did not start (see {self.log})") from None
                time.sleep(0.2)
        self.address = f"127.0.0.1:{port}"
        os.environ["RAY_ADDRESS"] = self.address
        return self

    def __exit__(self, *exc) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if self.proc is not None:
            os.environ.pop("RAY_ADDRESS", None)
            self.proc.terminate()  # `ray start --block` takes its processes down with it
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_command(cmd: list[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None,
                inherit: bool = True) -> dict[str, Any]:
    """Run a command to its end: wall seconds, exit code and its peak resident memory (wait4).
    Its environment is this one's with `env` on top, or only `env` with inherit=False."""
    t0 = time.perf_counter()
    # Tune settings a sweep in this process put in its environment are not the command's (bare Ray Tune's
    # defaults must be Ray's own)
    ours = ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "TUNE_DISABLE_STRICT_METRIC_CHECKING", "RAY_AIR_NEW_OUTPUT",
            "RAY_CHDIR_TO_TRIAL_DIR")
    base = {k: v for k, v in (os.environ if inherit else env or {}).items() if k not in ours}
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env={**base, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": time.perf_counter() - t0, "rc": proc.returncode, "peak_rss_mb": usage.ru_maxrss / 1024,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "output": log.read_text()}


def _boot_ticks() -> int:
    """Now, in the clock ticks since boot that /proc/<pid>/stat counts process start times in."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


class TrialMemory:
    """Peak resident memory (VmHWM) of every Ray trial process (ray::ImplicitFunc) while running."""

    def __init__(self, period: float = 0.25):
        self.period, self.peaks = period, {}
        self._since = _boot_ticks()  # processes started before this are not ours
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TrialMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    if not (proc / "cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                        continue
                    if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[19]) < self._since:
                        continue
                    for line in (proc / "status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            mb = int(line.split()[1]) / 1024
                            self.peaks[proc.name] = max(self.peaks.get(proc.name, 0.0), mb)
                except (OSError, ValueError):
                    continue
            self._stop.wait(self.period)


# ---- sweep results -----------------------------------------------------------------------

def trial_results(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every trial's result rows (result.json) under an experiment folder."""
    out = {}
    for f in sorted(Path(folder).glob("*/result.json")):
        out[f.parent.name] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def training_seconds(results: dict[str, list[dict[str, Any]]]) -> float:
    return sum(r.get("epoch_seconds", 0.0) for rows in results.values() for r in rows)


def _lrs(n: int) -> list[float]:
    return [round(3e-4 * (10 ** (i / max(1, n - 1))), 6) for i in range(n)]  # 3e-4 .. 3e-3


OVERHEAD_SPEC = """\
name: {name}
description: tune bench, figure 2 ({n} trials of {epochs} epochs, FIFO, {c} at a time)
dataset: {{name: digits, image_size: 32}}
epochs: {epochs}
parameters:
  model: cnn
  filters: {filters}
  kernel_sizes: {kernels}
  dense_units: {dense}
  batch_size: {batch}
  optimizer: adam
  lr: {{grid: {lrs}}}
search: {{algorithm: grid, max_concurrent: {c}}}
scheduler: {{name: fifo}}
resources: {{cpu: 1}}
tracking: {{uri: "sqlite:///{db}"}}
final: {{report: {report}}}
"""


def calibrate_epoch_seconds() -> float:
    """Seconds one training epoch of figure 2's trial takes here on one thread (train +
    validation). Trials two at a time, beside Ray, train no faster than this: they last at
    least the seconds asked for, which favours no side (the ideal is measured, not assumed)."""
    import torch

    from trainables.core.data import DatasetConfig
    from trainables.core.engine import fit
    from trainables.core.trial import build

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, splits, training = build({"model": "cnn", **MODEL, "batch_size": BATCH, "optimizer": "adam", "lr": 1e-3},
                                        DatasetConfig(name="digits", image_size=32), torch.device("cpu"))
        rows: list[dict] = []
        fit(model, splits, training, epochs=3, report=lambda m, s: rows.append(m))
        return statistics.median(r["epoch_seconds"] for r in rows[1:])
    finally:
        torch.set_num_threads(threads)


def run_pair(work: Path, *, name: str, trials: int, epochs: int, report: bool,
             order=("ours", "bare")) -> dict[str, Any]:
    """The same trials through `tune run` (MLflow on, report as asked) and the bare Ray Tune script."""
    work.mkdir(parents=True, exist_ok=True)
    lrs = _lrs(trials)
    spec = work / f"{name}.yaml"
    spec.write_text(OVERHEAD_SPEC.format(name=name, n=trials, epochs=epochs, c=CONCURRENCY, filters=MODEL["filters"],
                                         kernels=MODEL["kernel_sizes"], dense=MODEL["dense_units"], batch=BATCH,
                                         lrs=lrs, db=work / "mlflow.db", report=str(report).lower()))
    bare_trials = work / f"{name}-bare.json"
    bare_trials.write_text(json.dumps({"lrs": lrs, "epochs": epochs, "batch_size": BATCH, "model": MODEL,
                                       "dataset": {"name": "digits", "image_size": 32}}))
    runs: dict[str, Any] = {}
    for who in order:
        if who == "ours":
            r = run_command([sys.executable, "-m", "trainables", "run", str(spec), "--storage", str(work / "results")],
                            cwd=work, log=work / f"{name}-ours.log")
            folder = work / "results" / name
            saved = (json.loads((folder / "mlflow_run.json").read_text())
                     if (folder / "mlflow_run.json").is_file() else {})
            fit = saved.get("wall_seconds")
            if fit is None:  # tracking off or unreadable: the summary line's whole seconds
                m = re.search(r"errored in (\d+)s", r["output"])
                fit = float(m.group(1)) if m else float("nan")
        else:
            r = run_command([sys.executable, "-m", "trainables.bench.bare", str(bare_trials), str(work / "bare"), name],
                            cwd=work, log=work / f"{name}-bare.log")
            folder = work / "bare" / name
            m = re.findall(r'^\{"fit_seconds": ([0-9.]+)\}$', r["output"], flags=re.M)
            fit = float(m[-1]) if m else float("nan")
        if r["rc"] != 0:
            raise RuntimeError(f"{who} run of {name} failed with exit code {r['rc']}; see {work}/{name}-{who}.log:\n"
                               + r["output"][-3000:])
        results = trial_results(folder)
        epochs_done = sorted({len(rows) for rows in results.values()})
        train_s = training_seconds(results)
        runs[who] = {"command_seconds": r["seconds"], "fit_seconds": fit, "training_seconds": train_s,
                     "ideal_seconds": train_s / CONCURRENCY, "trials": len(results), "epochs_per_trial": epochs_done,
                     "driver_peak_rss_mb": r["peak_rss_mb"], "driver_cpu_seconds": r["cpu_seconds"]}
        if len(results) != trials or epochs_done != [epochs]:
            raise RuntimeError(f"{who} run of {name}: expected {trials} trials of {epochs} epochs, "
                               f"found {len(results)} with {epochs_done} epochs in {folder}")
    return runs


def overhead(work: Path, *, quick: bool, seconds_per_trial: float = 10.0, trials: int = 16,
             short_seconds: float = 2.0, short_trials: int = 8, epoch_seconds: float | None = None) -> list[Figure]:
    """Figures 2a (sweep vs ideal), 2b (tune run vs the bare Ray Tune script), 2c (per-trial
    overhead). `epoch_seconds`: calibrate_epoch_seconds(), measured before a Ray head started
    (its start-up would slow the measurement down, and so shorten the trials)."""
    epoch_s = epoch_seconds or calibrate_epoch_seconds()
    epochs = max(1, round(seconds_per_trial / epoch_s))
    short_epochs = max(1, round(short_seconds / epoch_s))
    main = run_pair(work / "main", name="bench-overhead", trials=trials, epochs=epochs, report=True)
    if not quick:  # the other order too: neither side always runs second
        again = run_pair(work / "again", name="bench-overhead", trials=trials, epochs=epochs, report=True,
                         order=("bare", "ours"))
        for who in ("ours", "bare"):
            for k in ("command_seconds", "fit_seconds", "training_seconds", "ideal_seconds"):
                main[who][k] = (main[who][k] + again[who][k]) / 2
    short = run_pair(work / "short", name="bench-short", trials=short_trials, epochs=short_epochs, report=False)
    ours, bare = main["ours"], main["bare"]
    shape = f"{trials} trials x {epochs} epochs (~{epochs * epoch_s:.0f} s), FIFO, {CONCURRENCY} at a time"
    ratio = ours["fit_seconds"] / ours["ideal_seconds"]
    bare_ratio = bare["fit_seconds"] / bare["ideal_seconds"]
    fig_a = Figure("2a", "sweep wall time / ideal (tune run)", ratio, "ratio", "<= 1.05", check(ratio, "<=", 1.05),
                   device="cpu",
                   details={"summary": f"{ours['fit_seconds']:.1f} s vs ideal {ours['ideal_seconds']:.1f} s; "
                                       f"bare Ray Tune {bare_ratio:.2f}",
                            "shape": shape, "epoch_seconds_calibrated": epoch_s, "fit_seconds": ours["fit_seconds"],
                            "ideal_seconds": ours["ideal_seconds"], "command_seconds": ours["command_seconds"],
                            "bare_ratio": bare_ratio, "runs": main, "averaged_over_orders": not quick})
    cmd_ratio = ours["command_seconds"] / bare["command_seconds"]
    fig_b = Figure("2b", "tune run (MLflow + report) / bare Ray Tune script, wall time", cmd_ratio, "ratio", "<= 1.0",
                   check(cmd_ratio, "<=", 1.0), device="cpu",
                   details={"summary": f"{ours['command_seconds']:.1f} s vs {bare['command_seconds']:.1f} s; "
                                       f"sweeps alone {ours['fit_seconds']:.1f} s vs {bare['fit_seconds']:.1f} s",
                            "shape": shape, "command_seconds": ours["command_seconds"],
                            "bare_command_seconds": bare["command_seconds"],
                            "fit_seconds": ours["fit_seconds"], "bare_fit_seconds": bare["fit_seconds"],
                            "bare_ideal_seconds": bare["ideal_seconds"],
                            "fit_ratio": ours["fit_seconds"] / bare["fit_seconds"]})

    def per_trial(run: dict[str, Any]) -> float:
        return (run["fit_seconds"] * CONCURRENCY - run["training_seconds"]) / short_trials

    po, pb = per_trial(short["ours"]), per_trial(short["bare"])
    fig_c = Figure("2c", "per-trial overhead, 2-second trials (tune run)", po, "s", "<= 0.5 s",
                   check(po, "<=", 0.5), device="cpu",
                   details={"summary": f"bare Ray Tune {pb:.2f} s", "bare_seconds_per_trial": pb,
                            "shape": f"{short_trials} trials x {short_epochs} epochs "
                                     f"(~{short_epochs * epoch_s:.1f} s), FIFO, {CONCURRENCY} at a time",
                            "definition": "(sweep wall x concurrency - sum of epoch_seconds) / trials", "runs": short})
    return [fig_a, fig_b, fig_c]


def quickstart_spec() -> Path | None:
    """search_spaces/quickstart.yaml: in the current directory's checkout, else beside the package."""
    import trainables

    for root in (Path.cwd(), Path(trainables.__file__).resolve().parents[1]):
        p = root / "search_spaces" / "quickstart.yaml"
        if p.is_file():
            return p
    return None


MEMORY_TARGET_MB = 1000


def memory(work: Path, *, overrides: tuple[str, ...] = ()) -> list[Figure]:
    """Figures 4a/4b: peak resident memory of the `tune run` driver (MLflow and report included)
    and of every trial process, for the quickstart."""
    from trainables.bench.output import skipped

    names = (("4a", "peak memory: driver (tune run quickstart)"),
             ("4b", "peak memory: each trial process (quickstart)"))
    spec = quickstart_spec()
    if spec is None:
        return [skipped(i, n, "MB", "<= 1000 MB", "search_spaces/quickstart.yaml not found (run from the checkout)")
                for i, n in names]
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "trainables", "run", str(spec), "--storage", str(work / "results"),
           "-o", f"tracking.uri=sqlite:///{work / 'mlflow.db'}"]
    for o in overrides:
        cmd += ["-o", o]
    with TrialMemory() as trials:
        r = run_command(cmd, cwd=work, log=work / "quickstart.log")
    if r["rc"] != 0:
        raise RuntimeError(f"tune run quickstart failed with exit code {r['rc']}; see {work / 'quickstart.log'}:\n"
                           + r["output"][-3000:])
    peaks = sorted(trials.peaks.values(), reverse=True)
    ran = "quickstart" + (f" with {' '.join(overrides)}" if overrides else "")
    driver = Figure("4a", names[0][1], r["peak_rss_mb"], "MB", "<= 1000 MB",
                    check(r["peak_rss_mb"], "<=", MEMORY_TARGET_MB),
                    device="cpu", details={"summary": f"{ran}; MLflow logging and report included", "run": ran,
                                           "command_seconds": r["seconds"]})
    top = peaks[0] if peaks else None
    trial = Figure("4b", names[1][1], top, "MB", "<= 1000 MB", check(top, "<=", MEMORY_TARGET_MB) if top else None,
                   device="cpu", details={"summary": f"largest of {len(peaks)} trial processes (actors are reused)",
                                          "per_process_mb": peaks, "run": ran})
    return [driver, trial]
