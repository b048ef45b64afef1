"""Figure 1: the engine's `fit` against a minimal hand-written loop, in one process.

Same model (built once, both runs start from the same weights), same tensors, batch size,
device and threads; the two loops alternate so that drift in the machine's load hits both.
Images/s counts training images over the whole of each run: the training passes plus the
per-epoch validation both loops do; the figure compares each side's best run. On a GPU, fit
runs in fp32 without channels_last, as the bare loop does: this figure measures the loop's own
overhead, not those options.
"""
from __future__ import annotations

import copy
import statistics
import time

import torch

from trainables.bench.bare import bare_epoch, bare_eval
from trainables.bench.output import Figure, check

# The trial of figures 1 and 2: the 5-block CNN on the digits, 32 px.
MODEL = {"filters": [16, 32, 32, 64, 64], "kernel_sizes": [3, 3, 3, 3, 3], "dense_units": 64}
DATASET = {"name": "digits", "image_size": 32}
BATCH = 64
LR = 1e-3


def _setup(device: torch.device, dataset: dict):
    from trainables.core.trial import build

    config = {"model": "cnn", **MODEL, "batch_size": BATCH, "lr": LR, "optimizer": "adam"}
    from trainables.core.data import DatasetConfig

    model, splits, training = build(config, DatasetConfig(**dataset), device)
    return model, splits, training


def measure(*, epochs: int = 3, repeats: int = 3, device: str | None = None, dataset: dict | None = None,
            threads: int | None = 1) -> Figure:
    from trainables.core.engine import fit
    from trainables.core.trial import pick_device

    dev = torch.device(device) if device else pick_device()
    if threads and dev.type == "cpu":
        torch.set_num_threads(threads)
    model, splits, training = _setup(dev, dataset or DATASET)
    initial = copy.deepcopy(model.state_dict())
    x, y, xv, yv = splits.train.x, splits.train.y, splits.val.x, splits.val.y
    n = len(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def run_fit() -> tuple[float, float]:
        model.load_state_dict(initial)
        rows: list[dict] = []
        sync()
        t0 = time.perf_counter()
        fit(model, splits, training, epochs=epochs, report=lambda m, s: rows.append(m))
        sync()
        total = time.perf_counter() - t0
        return n * epochs / total, statistics.mean(r["samples_per_second"] for r in rows)

    def run_bare() -> tuple[float, float]:
        model.load_state_dict(initial)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        gen = torch.Generator().manual_seed(0)
        train_s = 0.0
        sync()
        t0 = time.perf_counter()
        for _ in range(epochs):
            t1 = time.perf_counter()
            bare_epoch(model, opt, loss_fn, x, y, batch_size=BATCH, generator=gen)
            sync()
            train_s += time.perf_counter() - t1
            bare_eval(model, loss_fn, xv, yv)
        sync()
        total = time.perf_counter() - t0
        return n * epochs / total, n * epochs / train_s

    run_bare(), run_fit()  # warm-up: allocator, kernels, caches
    fits, bares = [], []
    for i in range(repeats):  # alternate, starting with each side in turn
        for fn, out in ((run_fit, fits), (run_bare, bares)) if i % 2 == 0 else ((run_bare, bares), (run_fit, fits)):
            out.append(fn())
    # Best of the runs on each side (as timeit does): the run least disturbed by the rest of the
    # machine shows what the loop itself costs. Medians and neighbouring pairs are in the details.
    fit_ips = max(f[0] for f in fits)
    bare_ips = max(b[0] for b in bares)
    ratio = fit_ips / bare_ips
    return Figure(
        "1", "training core vs bare PyTorch loop", ratio, "ratio", ">= 0.95", check(ratio, ">=", 0.95),
        device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        details={
            "summary": f"fit {fit_ips:,.0f} vs bare {bare_ips:,.0f} images/s",
            "fit_images_per_s": fit_ips, "bare_images_per_s": bare_ips,
            "fit_train_only_images_per_s": statistics.median(f[1] for f in fits),
            "bare_train_only_images_per_s": statistics.median(b[1] for b in bares),
            "fit_runs": [f[0] for f in fits], "bare_runs": [b[0] for b in bares],
            "paired_ratios": [f[0] / b[0] for f, b in zip(fits, bares, strict=True)],
            "median_ratio": statistics.median(f[0] for f in fits) / statistics.median(b[0] for b in bares),
            "epochs": epochs, "repeats": repeats, "train_images": n, "batch_size": BATCH,
            "model": {"model": "cnn", **MODEL},
            "dataset": dataset or DATASET, "threads": torch.get_num_threads(),
        },
    )
