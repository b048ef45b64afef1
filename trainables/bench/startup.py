"""Figure 2d: command start-up, from typing `tune run` to the first trial training, with the local Ray
that the command starts itself (as on a laptop), not the bench's shared head."""
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
