"""Figures 2d and 2e, with the local Ray that `tune run` starts itself (as on a laptop), not the bench's
shared head: 2d, command start-up, from typing `tune run` to the first trial training; 2e, the whole
quickstart search against the same search as a plain Optuna script (bench.plain), per trial-epoch."""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from trainables.bench.output import Figure, check, skipped
from trainables.bench.sweeps import quickstart_spec, run_command

NAME = "command start-up: `tune run` to the first trial training (quickstart, local Ray)"
TARGET_S = 3.0
PLAIN = "quickstart search: tune run over a plain Optuna script, seconds per trial-epoch"


def measure(work: Path, *, repeats: int = 3) -> list[Figure]:
    """The median over `repeats` runs of the quickstart cut to 2 one-epoch trials (tracking, retrain and
    report off): seconds from starting the command to the first trial's first batch (engine._mark_start)."""
    spec = quickstart_spec()
    if spec is None:
        return [skipped("2d", NAME, "s", f"<= {TARGET_S:g} s", "search_spaces/quickstart.yaml not found")]
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a fresh local Ray, started by the command
    seconds, commands = [], []
    for i in range(repeats):
        marks = work / f"start-{i}.txt"
        cmd = [sys.executable, "-m", "trainables", "run", str(spec), "--storage", str(work / f"results-{i}"),
               "-o", "search.num_samples=2", "-o", "epochs=1", "-o", "tracking.enabled=false",
               "-o", "final.report=false", "-o", "final.retrain_best=false"]
        t0 = time.time()
        r = run_command(cmd, cwd=work, log=work / f"start-{i}.log", env={**env, "TRAINABLES_MARK_START": str(marks)},
                        inherit=False)
        if r["rc"] != 0 or not marks.exists():
            raise RuntimeError(f"tune run failed (exit {r['rc']}), see {work / f'start-{i}.log'}:\n"
                               + r["output"][-2000:])
        seconds.append(min(float(x) for x in marks.read_text().split()) - t0)
        commands.append(r["seconds"])
    median = statistics.median(seconds)
    return [Figure("2d", NAME, median, "s", f"<= {TARGET_S:g} s", check(median, "<=", TARGET_S), device="cpu",
                   details={"summary": f"median of {repeats} (min {min(seconds):.1f}, max {max(seconds):.1f}); "
                                       f"whole command {statistics.median(commands):.1f} s",
                            "seconds": seconds, "command_seconds": commands})]


def versus_plain(work: Path) -> list[Figure]:
    """The quickstart (tracking, retrain and report off) and bench.plain, each as the command a user types,
    wall seconds per trial-epoch trained (both stop weak trials early, so their trial-epochs differ)."""
    import json

    from trainables.bench.sweeps import trial_results

    spec = quickstart_spec()
    if spec is None:
        return [skipped("2e", PLAIN, "ratio", "<= 1.0", "search_spaces/quickstart.yaml not found")]
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    ours = run_command([sys.executable, "-m", "trainables", "run", str(spec), "--storage", str(work / "results"),
                        "-o", "tracking.enabled=false", "-o", "final.report=false", "-o", "final.retrain_best=false"],
                       cwd=work, log=work / "quickstart.log", env=env, inherit=False)
    plain = run_command([sys.executable, "-m", "trainables.bench.plain"], cwd=work, log=work / "plain.log", env=env,
                        inherit=False)
    for who, r in (("tune run", ours), ("the plain Optuna script", plain)):
        if r["rc"] != 0:
            raise RuntimeError(f"{who} failed (exit {r['rc']}):\n" + r["output"][-2000:])
    ours_epochs = sum(len(rows) for rows in trial_results(work / "results" / "quickstart").values())
    plain_out = json.loads([x for x in plain["output"].splitlines() if x.startswith("{")][-1])
    per_ours, per_plain = ours["seconds"] / ours_epochs, plain["seconds"] / plain_out["trial_epochs"]
    ratio = per_ours / per_plain
    return [Figure("2e", PLAIN, ratio, "ratio", "<= 1.0", check(ratio, "<=", 1.0), device="cpu",
                   details={"summary": f"{ours['seconds']:.1f} s for {ours_epochs} trial-epochs vs "
                                       f"{plain['seconds']:.1f} s for {plain_out['trial_epochs']}",
                            "seconds": ours["seconds"],
                            "trial_epochs": ours_epochs, "plain_seconds": plain["seconds"],
                            "plain_trial_epochs": plain_out["trial_epochs"], "plain_best": plain_out["best_val_acc"],
                            "peak_rss_mb": ours["peak_rss_mb"], "plain_peak_rss_mb": plain["peak_rss_mb"]})]
