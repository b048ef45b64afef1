"""Figure 3c: several objectives. On figure 3's digits space with objectives (val_acc max, total_params
min), the hypervolume the multi-objective TPE search reaches against random search, same trial budget
(tune bench: twice figure 3's, since TPE's first 10 trials are random), both with FIFO (no scheduler
compares trials by one metric), over several seeds.

The reference point of a seed is (val_acc 0, the largest total_params either side saw): the area each
side's trials dominate inside it, measured on each trial's best epoch, as a ratio (TPE over random).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from trainables.bench.output import Figure, check

OBJECTIVES = ("metric=[val_acc, total_params]", "mode=[max, min]")


def _points(results) -> list[tuple[float, float]]:
    """Each trial's best val_acc, with its parameter count."""
    best: dict[str, tuple[float, float]] = {}
    for trial, _, acc, params in results:
        if trial not in best or acc > best[trial][0]:
            best[trial] = (acc, params)
    return list(best.values())


def measure(work: Path, *, seeds: int = 5, samples: int = 12, epochs: int = 6, limit: int = 400) -> Figure:
    from concurrent.futures import ThreadPoolExecutor

    from trainables.bench.search import FIFO, run_search
    from trainables.results.pareto import hypervolume
    from trainables.tune.cluster import connect

    connect(None)
    rows = []
    for seed in range(seeds):
        kw = dict(seed=seed, samples=samples, epochs=epochs, limit=limit, scheduler=FIFO, overrides=OBJECTIVES)
        with ThreadPoolExecutor(2) as pool:  # both sides at once, as in figure 3
            tpe = pool.submit(run_search, work, algorithm="optuna", tag="-mo", **kw)
            rnd = pool.submit(run_search, work, algorithm="random", tag="-mo", **kw)
            tpe, rnd = _points(tpe.result()["results"]), _points(rnd.result()["results"])
        reference = (0.0, max(p for _, p in tpe + rnd) * 1.0001)
        modes = ("max", "min")
        hv_tpe, hv_rnd = hypervolume(tpe, modes, reference), hypervolume(rnd, modes, reference)
        rows.append({"seed": seed, "tpe_hypervolume": hv_tpe, "random_hypervolume": hv_rnd,
                     "ratio": hv_tpe / hv_rnd if hv_rnd > 0 else math.inf, "reference_params": reference[1]})
    ratios = [r["ratio"] for r in rows]
    median = statistics.median(ratios)
    return Figure(
        "3c", "several objectives: hypervolume of multi-objective TPE over random search",
        median if math.isfinite(median) else None, "ratio", ">= 1.0 (median)",
        check(median, ">=", 1.0) if math.isfinite(median) else False, device="cpu",
        details={"summary": f"median over {seeds} seeds; min {min(ratios):.2f}, max {max(ratios):.2f}",
                 "seeds": rows,
                 "setup": f"digits (limit {limit}), objectives val_acc (max) and total_params (min), {samples} "
                          f"trials x {epochs} epochs each side, 2 at a time, FIFO; reference (0, largest total_params "
                          f"seen)"},
    )
