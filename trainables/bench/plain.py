"""Figure 2e's other side: the quickstart's search as a plain Optuna script on one machine (what a user
writes in 60 lines: TPE, a successive-halving pruner, two trials at a time in threads; the same model,
data and epochs through trainables' training core). Prints one JSON line: seconds and trial-epochs.

    python -m trainables.bench.plain [--trials 12] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

KERNELS = ([3, 3, 3, 3, 3], [5, 5, 3, 3, 3], [3, 5, 5, 7, 7])  # search_spaces/quickstart.yaml's space
FILTERS = ([16, 16, 16, 16, 16], [16, 32, 32, 64, 64], [32, 32, 64, 64, 128])


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    ap = argparse.ArgumentParser(prog="python -m trainables.bench.plain")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import optuna
    import torch

    from trainables.core.data import DatasetConfig
    from trainables.core.engine import run_trial

    torch.set_num_threads(1)  # one core per trial, as resources.cpu: 1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = DatasetConfig(name="digits", image_size=32, val_fraction=0.2)
    epochs_done, lock = [0], threading.Lock()

    def objective(trial: optuna.Trial) -> float:
        config = {
            "model": "cnn", "batch_size": 64, "optimizer": "adam",
            "kernel_sizes": KERNELS[trial.suggest_categorical("kernel_sizes", [0, 1, 2])],
            "filters": FILTERS[trial.suggest_categorical("filters", [0, 1, 2])],
            "activation": trial.suggest_categorical("activation", ["relu", "gelu", "silu", "mish"]),
            "batch_norm": trial.suggest_categorical("batch_norm", [True, False]),
            "dropout": trial.suggest_categorical("dropout", [0.0, 0.1, 0.2]),
            "dense_units": trial.suggest_categorical("dense_units", [64, 128, 256]),
            "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        }
        best = [0.0]

        def report(metrics, state) -> None:
            with lock:
                epochs_done[0] += 1
            best[0] = max(best[0], metrics["val_acc"])
            trial.report(metrics["val_acc"], metrics["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        run_trial(config, dataset=data, epochs=args.epochs, report=report)
        return best[0]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=2))
    study.optimize(objective, n_trials=args.trials, n_jobs=2)
    print(json.dumps({"seconds": time.perf_counter() - t0, "trial_epochs": epochs_done[0], "trials": len(study.trials),
                      "best_val_acc": study.best_value}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
