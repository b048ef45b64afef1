"""The two baselines of `tune bench`, kept short so the comparison is easy to read.

- `bare_epoch` / `bare_fit`: a minimal hand-written PyTorch training loop (figure 1 compares
  the engine's `fit` with it, in one process, on the same model, data, batch size and device).
- `bare_trainable` / `main`: a minimal Ray Tune script with Ray's defaults (figure 2 runs it
  side by side with `tune run` on the same trials): a function trainable that calls
  `tune.report` once per epoch, Ray's default loggers, no checkpoints, FIFO, a plain `Tuner`
  with `max_concurrent_trials=2`, new actor per trial. Only the model and the data come from
  this package (`trainables.core.models`, `trainables.core.data`), so both runs train exactly the same
  network on exactly the same tensors.

    python -m trainables.bench.bare TRIALS.json STORAGE NAME

TRIALS.json: {"lrs": [...], "epochs": E, "batch_size": B, "model": {...cnn params}, "dataset": {...}}.
Prints one JSON line {"fit_seconds": ...} at the end.
"""
from __future__ import annotations

import json
import sys
import time

import torch
from torch import nn


def bare_epoch(model, opt, loss_fn, x, y, *, batch_size: int, generator=None) -> None:
    """One epoch of the textbook loop: shuffle, slice, forward, backward, step."""
    model.train()
    perm = torch.randperm(len(y), generator=generator).to(x.device)
    for i in range(0, len(y), batch_size):
        idx = perm[i : i + batch_size]
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@torch.no_grad()
def bare_eval(model, loss_fn, x, y) -> tuple[float, float]:
    model.eval()
    out = model(x)
    return loss_fn(out, y).item(), (out.argmax(1) == y).float().mean().item()


def bare_setup(config: dict):
    """The model, optimiser and tensors a user's script would set up (from this package's model
    registry and dataset loader, so that they are identical to the platform's)."""
    from trainables.core.data import DatasetConfig, load_splits
    from trainables.core.models import get_model

    entry = get_model("cnn")
    params = entry.params(**config["model"])
    splits = load_splits(DatasetConfig(**config["dataset"]), entry.preprocess(params))
    torch.manual_seed(config.get("seed", 0))
    model = entry.build(params, num_classes=splits.num_classes, in_channels=splits.in_channels,
                        image_size=splits.image_size)
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    return model, opt, nn.CrossEntropyLoss(), splits


def bare_trainable(config: dict) -> None:
    """The function trainable of the bare Ray Tune script: train, evaluate, tune.report, per epoch."""
    from ray import tune

    model, opt, loss_fn, splits = bare_setup(config)
    x, y, xv, yv = splits.train.x, splits.train.y, splits.val.x, splits.val.y
    for epoch in range(1, config["epochs"] + 1):
        t0 = time.perf_counter()
        bare_epoch(model, opt, loss_fn, x, y, batch_size=config["batch_size"])
        val_loss, val_acc = bare_eval(model, loss_fn, xv, yv)
        tune.report({"epoch": epoch, "val_loss": val_loss, "val_acc": val_acc,
                     "epoch_seconds": time.perf_counter() - t0})


def main(trials_file: str, storage: str, name: str) -> float:
    """Run the trials with Ray's defaults; returns (and prints) the seconds Tuner.fit took."""
    from ray import tune

    trials = json.loads(open(trials_file).read())
    space = {k: v for k, v in trials.items() if k != "lrs"}
    tuner = tune.Tuner(
        bare_trainable,
        param_space={**space, "lr": tune.grid_search(trials["lrs"])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(name=name, storage_path=storage),
    )
    t0 = time.time()
    tuner.fit()
    seconds = time.time() - t0
    print(json.dumps({"fit_seconds": seconds}), flush=True)
    return seconds


if __name__ == "__main__":
    main(*sys.argv[1:4])
