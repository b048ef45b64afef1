"""Figure 3: search efficiency. Optuna TPE + ASHA against random search + FIFO on the same
digits CNN space with the same number of trials, over several seeds, through the real sweep
code (sweep.build_tuner) in this process.

For each seed: random + FIFO trains every trial for every epoch; the best val_acc any of its
epochs reached is the bar. TPE + ASHA's results are counted in the order they arrived: the
trial-epochs spent until one reached the bar, over random + FIFO's trial-epochs, is the
seed's ratio (not reached: infinite). The figure is the median over seeds.
"""
from __future__ import annotations

import math
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from trainables.bench.output import Figure, check

SPACE = """\
name: {name}
description: tune bench, figure 3 ({algorithm} + {scheduler_name}, seed {seed})
dataset: {{name: digits, limit: {limit}}}
epochs: {epochs}
parameters:
  model: cnn
  batch_size: 32
  optimizer: adam
  kernel_sizes: {{choice: [[3, 3, 3, 3, 3], [5, 5, 3, 3, 3]]}}
  filters: {{choice: [[4, 4, 8, 8, 8], [8, 8, 8, 16, 16], [8, 16, 16, 32, 32]]}}
  activation: {{choice: [relu, gelu, silu, mish]}}
  batch_norm: {{choice: [true, false]}}
  dropout: {{choice: [0.0, 0.1, 0.2]}}
  dense_units: {{choice: [32, 64]}}
  lr: {{loguniform: [1.0e-4, 3.0e-2]}}
search: {{algorithm: {algorithm}, num_samples: {samples}, max_concurrent: 2, seed: {seed}}}
scheduler: {scheduler}
resources: {{cpu: 1}}
tracking: {{enabled: false}}
final: {{report: false}}
"""
_SETUP = threading.Lock()
_LIVE: dict[str, tuple[list, threading.Event]] = {}


class Arrivals(Callback):
    """Records (trial_id, epoch, val_acc) in arrival order into _LIVE[name]; holds only the
    name, since Tune pickles its callbacks with the tuner."""

    def __init__(self, name: str):
        self.name = name

    def setup(self, **info):
        _LIVE[self.name][1].set()  # Tune's global set-up is done: the other side may start

    def on_trial_result(self, iteration, trials, trial, result, **info):
        _LIVE[self.name][0].append((trial.trial_id, int(result["training_iteration"]), float(result["val_acc"]),
                                    float(result.get("total_params", 0))))


ASHA = "{name: asha, grace_period: 1, reduction_factor: 3}"
FIFO = "{name: fifo}"


def run_search(work: Path, *, algorithm: str, scheduler: str, seed: int, samples: int, epochs: int,
               limit: int, warm_from: str | None = None, tag: str = "",
               overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """One sweep through build_tuner; its results in arrival order: [(trial_id, epoch, val_acc, total_params)].
    warm_from: an earlier sweep's name under `work`, given to the optuna search first."""
    from trainables.results.layout import experiment_dir, save_spec
    from trainables.spec.load import parse_spec
    from trainables.tune.tuner import build_tuner
    from trainables.tune.warm_start import gather

    sched_name = "asha" if scheduler == ASHA else "fifo"
    name = f"bench-search-{algorithm}-{sched_name}{tag}-{seed}"
    text = SPACE.format(name=name, algorithm=algorithm, scheduler_name=sched_name, seed=seed, limit=limit,
                        epochs=epochs, samples=samples, scheduler=scheduler)
    overrides = [*overrides, *([f"search.warm_start=[{warm_from}]"] if warm_from else [])]
    spec = parse_spec(text, file=f"<{name}>", overrides=overrides)
    arrived: list[tuple[str, int, float]] = []
    started = threading.Event()
    _LIVE[name] = (arrived, started)  # the callback is pickled with the tuner: it holds only the name
    warm = gather(spec, str(work)) if warm_from else None
    save_spec(spec, experiment_dir(spec, str(work)))  # what a later warm start reads back
    tuner = build_tuner(spec, storage=str(work), callbacks=[Arrivals(name)], warm=warm)
    t0 = time.perf_counter()
    # Tune registers trainables in a process-wide registry that two fits may not set up at once.
    _SETUP.acquire()
    released = threading.Thread(target=lambda: (started.wait(600), _SETUP.release()), daemon=True)
    released.start()
    try:
        tuner.fit()
    finally:
        started.set()
        released.join()
        _LIVE.pop(name, None)
    return {"results": arrived, "seconds": time.perf_counter() - t0, "trials": len({r[0] for r in arrived})}


def epochs_to_reach(results: list[tuple[str, int, float]], bar: float) -> int | None:
    """Trial-epochs spent (in arrival order) until a result reached `bar`; None if none did."""
    for i, r in enumerate(results, 1):
        if r[2] >= bar - 1e-12:
            return i
    return None


def compare(random_results, tpe_results) -> dict[str, Any]:
    bar = max(r[2] for r in random_results)
    spent = epochs_to_reach(tpe_results, bar)
    return {
        "random_best_val_acc": bar, "random_trial_epochs": len(random_results),
        "random_epochs_to_its_best": epochs_to_reach(random_results, bar),
        "tpe_best_val_acc": max(r[2] for r in tpe_results), "tpe_trial_epochs": len(tpe_results),
        "tpe_epochs_to_bar": spent, "ratio": spent / len(random_results) if spent is not None else math.inf,
    }


def measure(work: Path, *, seeds: int = 5, samples: int = 12, epochs: int = 6, limit: int = 400) -> Figure:
    from concurrent.futures import ThreadPoolExecutor

    from trainables.tune.cluster import connect

    connect(None)  # RAY_ADDRESS: the bench's head (once, before the threads)
    rows = []
    # The two sides of a seed run at the same time (trial-epochs, not seconds, are compared):
    # each one's start-up and bookkeeping hides in the other's training.
    with ThreadPoolExecutor(2) as pool:
        for seed in range(seeds):
            kw = dict(seed=seed, samples=samples, epochs=epochs, limit=limit)
            rnd = pool.submit(run_search, work, algorithm="random", scheduler=FIFO, **kw)
            tpe = pool.submit(run_search, work, algorithm="optuna", scheduler=ASHA, **kw)
            rnd, tpe = rnd.result(), tpe.result()
            rows.append({"seed": seed, **compare(rnd["results"], tpe["results"]), "random_seconds": rnd["seconds"],
                         "tpe_seconds": tpe["seconds"]})
    ratios = [r["ratio"] for r in rows]
    median = statistics.median(ratios)
    finite = [r for r in ratios if math.isfinite(r)]
    reached = len(finite)
    if reached == len(ratios):
        spread = f"min {min(ratios):.2f}, max {max(ratios):.2f}"
    elif finite:
        spread = f"min {min(finite):.2f}; not reached in {len(ratios) - reached} of {len(ratios)} seeds"
    else:
        spread = "never reached"
    return Figure(
        "3", "search efficiency: TPE+ASHA trial-epochs to random+FIFO's best",
        median if math.isfinite(median) else None,
        "ratio", "<= 0.3 (median)", check(median, "<=", 0.3) if math.isfinite(median) else False, device="cpu",
        details={
            "summary": f"median over {seeds} seeds; {spread}",
            "seeds": [dict(r, ratio=r["ratio"] if math.isfinite(r["ratio"]) else None) for r in rows],
            "setup": f"digits (limit {limit} training images), {samples} trials x {epochs} epochs each side, "
                     f"2 at a time; ASHA grace 1, reduction factor 3",
            "space": SPACE.split("parameters:")[1].split("search:")[0].strip(),
        },
    )


def measure_warm(work: Path, *, seeds: int = 5, samples: int = 12, epochs: int = 6, limit: int = 400) -> Figure:
    """Figure 3b: TPE + ASHA warm-started from a random + FIFO sweep of `samples` trials against cold
    TPE + ASHA, same trial budget: the trial-epochs the warm sweep spends to reach the cold sweep's
    best val_acc, over the trial-epochs the cold sweep spent to reach it."""
    from concurrent.futures import ThreadPoolExecutor

    from trainables.tune.cluster import connect

    connect(None)
    rows = []
    for seed in range(seeds):
        kw = dict(seed=seed, samples=samples, epochs=epochs, limit=limit)
        source = run_search(work, algorithm="random", scheduler=FIFO, tag="-source", **kw)
        with ThreadPoolExecutor(2) as pool:  # both sides at once, as in figure 3
            cold = pool.submit(run_search, work, algorithm="optuna", scheduler=ASHA, tag="-cold", **kw)
            warm = pool.submit(run_search, work, algorithm="optuna", scheduler=ASHA, tag="-warm",
                               warm_from=f"bench-search-random-fifo-source-{seed}", **kw)
            cold, warm = cold.result(), warm.result()
        bar = max(r[2] for r in cold["results"])
        cold_spent, warm_spent = epochs_to_reach(cold["results"], bar), epochs_to_reach(warm["results"], bar)
        ratio = warm_spent / cold_spent if warm_spent is not None and cold_spent else math.inf
        rows.append({"seed": seed, "cold_best_val_acc": bar, "cold_epochs_to_best": cold_spent,
                     "warm_epochs_to_bar": warm_spent, "warm_best_val_acc": max(r[2] for r in warm["results"]),
                     "source_best_val_acc": max(r[2] for r in source["results"]), "ratio": ratio})
    ratios = [r["ratio"] for r in rows]
    median = statistics.median(ratios)
    finite = sorted(r for r in ratios if math.isfinite(r))
    spread = (f"min {finite[0]:.2f}, max {finite[-1]:.2f}" if finite else "never reached") + (
        f"; not reached in {len(ratios) - len(finite)} of {len(ratios)} seeds" if len(finite) < len(ratios) else "")
    # what decides a seed: whether the warm sweep's best reaches the cold sweep's at all (its bar is the best of
    # a sweep whose start-up is itself a random sweep, like the warm start's source)
    higher = sum(r["warm_best_val_acc"] >= r["cold_best_val_acc"] - 1e-12 for r in rows)
    spread += f"; warm best >= cold best in {higher} of {len(rows)}"
    return Figure(
        "3b", "warm start: TPE+ASHA from a random sweep, trial-epochs to cold TPE+ASHA's best",
        median if math.isfinite(median) else None, "ratio", "<= 0.5 (median)",
        check(median, "<=", 0.5) if math.isfinite(median) else False, device="cpu",
        details={"summary": f"median over {seeds} seeds; {spread}",
                 "seeds": [dict(r, ratio=r["ratio"] if math.isfinite(r["ratio"]) else None) for r in rows],
                 "setup": f"digits (limit {limit}), a {samples}-trial random + FIFO sweep, then {samples} trials x "
                          f"{epochs} epochs cold and warm, 2 at a time; ASHA grace 1, reduction factor 3"},
    )
