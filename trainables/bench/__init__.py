"""`tune bench`: how much of the machine goes into training rather than bookkeeping.

Every ratio is measured side by side in one run on this machine; nothing is hard-coded.
    1   the engine's fit loop vs a minimal hand-written PyTorch loop (bench.core)
    2a  a sweep of 16 ~10 s trials vs its ideal wall time; 2b `tune run` vs a bare Ray Tune
        script (bench.bare) on the same trials; 2c per-trial overhead of 2 s trials (bench.sweeps);
        2d `tune run` to the first trial training, 2e the quickstart against a plain Optuna script
        (bench.startup, bench.plain)
    3   TPE + ASHA vs random + FIFO: trial-epochs to the same best val_acc (bench.search)
    3b  TPE + ASHA warm-started from a random sweep vs cold: trial-epochs to the cold sweep's best
    3c  several objectives (val_acc, total_params): hypervolume of multi-objective TPE over random search
    4   peak memory of the driver and of each trial process, quickstart (bench.sweeps)
    5   GPU figures, where a CUDA device is present (bench.gpu: torch and torchvision only)
    6   image folders decoded once per node (dataset.cache) vs every epoch: data path, sweep (bench.data)
One JSON line per figure on stdout; reports/bench/results.json, results.md, figures/*.png.

This module imports nothing heavy: `python -m trainables.bench --gpu` needs only torch.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

ALL = ("1", "2", "3", "4", "5", "6")


@dataclass(frozen=True)
class Sizes:
    core_epochs: int
    core_repeats: int
    trial_seconds: float  # figure 2's trials
    trials: int
    short_seconds: float  # figure 2c's trials
    short_trials: int
    both_orders: bool
    seeds: int  # figure 3
    search_trials: int
    search_epochs: int
    search_limit: int
    quickstart: tuple[str, ...]  # figure 4: overrides of the quickstart
    core_dataset: dict | None = None


FULL = Sizes(3, 7, 10.0, 16, 2.0, 8, True, 8, 12, 6, 400, ())
QUICK = Sizes(2, 5, 10.0, 16, 2.0, 6, False, 5, 12, 6, 400, ())
# For the tests: every code path at the smallest size; the numbers mean nothing.
TINY = Sizes(1, 1, 0.1, 2, 0.1, 2, False, 1, 2, 2, 100,
             ("search.num_samples=2", "epochs=1", "final.report=false", "tracking.enabled=false"),
             core_dataset={"name": "digits", "image_size": 32, "limit": 100})


def run(*, out: str | os.PathLike = "reports/bench", quick: bool = False, tiny: bool = False, only=ALL,
        gpu_only: bool = False, work: str | None = None, stream=None) -> int:
    """Measure the figures in `only`; returns 0, or 1 if a figure failed to run (not: missed its target)."""
    from trainables.bench.output import Figure, Recorder

    stream = stream or sys.stdout
    sizes = TINY if tiny else QUICK if quick else FULL
    rec = Recorder(out, quick=quick or tiny, stream=stream)
    failed = 0

    def attempt(ids: list[tuple[str, str, str, str]], fn):
        nonlocal failed
        try:
            for fig in fn():
                rec.add(fig)
        except Exception as e:  # noqa: BLE001 - one failing figure must not hide the others
            failed += 1
            print(traceback.format_exc(), file=sys.stderr)
            for i, name, unit, target in ids:
                rec.add(Figure(i, name, None, unit, target, False, skipped=f"failed: {type(e).__name__}: {e}"))

    if gpu_only:
        only = ("5",)
    if "1" in only:
        from trainables.bench import core

        attempt([("1", "training core vs bare PyTorch loop", "ratio", ">= 0.95")],
                lambda: [core.measure(epochs=sizes.core_epochs, repeats=sizes.core_repeats,
                                      dataset=sizes.core_dataset)])
    ray_figures = [f for f in ("2", "3", "4") if f in only]
    if ray_figures:
        folder = Path(work) if work else Path(tempfile.mkdtemp(prefix="tune-bench-"))
        folder.mkdir(parents=True, exist_ok=True)
        print(f"bench: working folder {folder}", file=sys.stderr)
        from trainables.bench import sweeps

        epoch_s = sweeps.calibrate_epoch_seconds() if "2" in only else None  # on a machine without Ray's start-up
        if "2" in only:  # before the bench's Ray head: the command starts its own local Ray
            from trainables.bench import startup

            attempt([("2d", startup.NAME, "s", f"<= {startup.TARGET_S:g} s")],
                    lambda: startup.measure(folder / "startup", repeats=1 if tiny else 3))
            if not tiny:
                attempt([("2e", startup.PLAIN, "ratio", "<= 1.0")], lambda: startup.versus_plain(folder / "plain"))
        with sweeps.RayHead(log=folder / "ray-head.log"):  # sets RAY_AUTH_MODE: import ray only after this
            from trainables.bench import search

            if "2" in only:
                attempt([("2a", "sweep wall time / ideal (tune run)", "ratio", "<= 1.05"),
                         ("2b", "tune run (MLflow + report) / bare Ray Tune script, wall time", "ratio", "<= 1.0"),
                         ("2c", "per-trial overhead, 2-second trials (tune run)", "s", "<= 0.5 s")],
                        lambda: sweeps.overhead(folder / "overhead", quick=not sizes.both_orders,
                                                seconds_per_trial=sizes.trial_seconds, trials=sizes.trials,
                                                short_seconds=sizes.short_seconds, short_trials=sizes.short_trials,
                                                epoch_seconds=epoch_s))
            if "3" in only:
                attempt([("3", "search efficiency: TPE+ASHA trial-epochs to random+FIFO's best", "ratio",
                          "<= 0.3 (median)")],
                        lambda: [search.measure(folder / "search", seeds=sizes.seeds, samples=sizes.search_trials,
                                                epochs=sizes.search_epochs, limit=sizes.search_limit)])
                attempt([("3b", "warm start: TPE+ASHA from a random sweep, trial-epochs to cold TPE+ASHA's best",
                          "ratio", "<= 0.5 (median)")],
                        lambda: [search.measure_warm(folder / "warm", seeds=sizes.seeds, samples=sizes.search_trials,
                                                     epochs=sizes.search_epochs, limit=sizes.search_limit)])
                from trainables.bench import objectives

                attempt([("3c", "several objectives: hypervolume of multi-objective TPE over random search", "ratio",
                          ">= 1.0 (median)")],
                        # twice figure 3's trials: TPE draws its first 10 at random, 12 would leave it 2
                        lambda: [objectives.measure(folder / "objectives", seeds=sizes.seeds,
                                                    samples=2 * sizes.search_trials, epochs=sizes.search_epochs,
                                                    limit=sizes.search_limit)])
            import ray

            if ray.is_initialized():  # figure 3's driver: its trial processes go with it
                ray.shutdown()
            if "4" in only:
                attempt([("4a", "peak memory: driver (tune run quickstart)", "MB", "<= 1000 MB"),
                         ("4b", "peak memory: each trial process (quickstart)", "MB", "<= 1000 MB")],
                        lambda: sweeps.memory(folder / "memory", overrides=sizes.quickstart))
        if not work and not failed:
            shutil.rmtree(folder, ignore_errors=True)
        elif failed:
            print(f"bench: logs kept in {folder}", file=sys.stderr)
    if "6" in only:
        from trainables.bench import data

        folder = Path(work) if work else Path(tempfile.mkdtemp(prefix="tune-bench-"))
        attempt([(i, data.NAMES[i], "ratio", data.TARGETS[i]) for i in ("6a", "6b")],
                lambda: data.measure(folder / "data", **({"images": 60, "size": 32, "epochs": 1} if tiny else {})))
        if not work:
            shutil.rmtree(folder, ignore_errors=True)
    if "5" in only:
        from trainables.bench import gpu

        gpu.measure(quick=quick or tiny, on_figure=rec.add)
    path = rec.write(merge=True)
    print(f"bench: {path}, {path.parent / 'results.md'} and plots in {path.parent / 'figures'}", file=sys.stderr)
    return 1 if failed else 0
