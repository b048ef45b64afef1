"""Figure 5: GPU throughput. Needs only torch and torchvision, so that it also runs as
`python -m trainables.bench --gpu` on a GPU machine without ray or mlflow. Each function
takes its device, so the code paths also run (meaninglessly small) on a CPU in the tests.

5a  a small dataset held as tensors on the GPU vs the same tensors through a DataLoader
5b  ResNet-50 at 224 px: bf16 autocast + channels_last vs fp32 (PyTorch's defaults)
5c  ResNet-50 training images/s vs NVIDIA's published A100 AMP figure (2,470 images/s)
5d  four trials sharing one GPU (as Ray places trials with gpu: 0.25) vs one trial alone
5e  self-check: two trials through the real engine sharing the GPU (gpu: 0.5), then one retrain,
    each saying where it ran and in which precision (performance.precision: auto)
All inputs are synthetic (random tensors): these figures measure speed, not learning.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from typing import Any

import torch
from torch import nn

from trainables.bench.output import Figure, check, skipped

A100_AMP_IMAGES_PER_S = 2470  # NVIDIA Deep Learning Examples, ResNet-50 v1.5, DGX A100 (1 GPU), AMP, batch 256
NO_GPU = "no CUDA device on this machine; run `python -m trainables.bench --gpu` on one"


def small_cnn(classes: int = 10, channels: int = 3) -> nn.Module:
    """A 5-block CNN of the quickstart's kind (conv, BN, ReLU, max-pool per block), for 32 px."""
    layers: list[nn.Module] = []
    c = channels
    for f in (32, 64, 128, 128, 256):
        layers += [nn.Conv2d(c, f, 3, padding=1, bias=False), nn.BatchNorm2d(f), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c = f
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c, 128), nn.ReLU(inplace=True), nn.Linear(128, classes))


def synthetic(n: int, size: int, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model, opt, x, y, amp: bool, channels_last: bool) -> None:
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = torch.autocast(device_type=x.device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with ctx:
        loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _model(model: nn.Module, device: torch.device, channels_last: bool):
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


# ---- 5a: tensors on the GPU vs a DataLoader ------------------------------------------------

def resident_vs_loader(device: torch.device, *, n: int = 20000, batch: int = 256, epochs: int = 3,
                       workers: int | None = None) -> dict[str, Any]:
    """Epoch seconds of the same model and data: indexed out of device tensors, and through a
    DataLoader over the host tensors (the better of 0 and `workers` workers, pinned memory)."""
    x, y = synthetic(n, 32)
    model, opt = _model(small_cnn(), device, channels_last=False)
    xd, yd = x.to(device), y.to(device)

    def resident_epoch():
        perm = torch.randperm(n, device=device)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            _step(model, opt, xd[idx], yd[idx], False, False)

    workers = min(4, max(1, (os.cpu_count() or 2) - 1)) if workers is None else workers
    pin = device.type == "cuda"
    ds = torch.utils.data.TensorDataset(x, y)
    loaders = {w: torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=w, pin_memory=pin,
                                              persistent_workers=w > 0) for w in sorted({0, workers})}

    def loader_epoch(w):
        for xb, yb in loaders[w]:
            _step(model, opt, xb.to(device, non_blocking=pin), yb.to(device, non_blocking=pin), False, False)

    def timed(fn, *a):
        fn(*a)  # warm-up (and the workers' start)
        out = []
        for _ in range(epochs):
            _sync(device)
            t0 = time.perf_counter()
            fn(*a)
            _sync(device)
            out.append(time.perf_counter() - t0)
        return statistics.median(out)

    resident = timed(resident_epoch)
    per_loader = {w: timed(loader_epoch, w) for w in loaders}
    best_w = min(per_loader, key=per_loader.get)
    return {"resident_epoch_s": resident, "loader_epoch_s": per_loader[best_w], "loader_workers": best_w,
            "loader_epoch_s_by_workers": per_loader, "speedup": per_loader[best_w] / resident, "images": n,
            "batch_size": batch}


# ---- 5b, 5c: ResNet-50 ----------------------------------------------------------------------

def images_per_second(model_fn, device: torch.device, *, batch: int, size: int, amp: bool, channels_last: bool,
                      steps: int, warmup: int, compile: bool = False, classes: int = 1000) -> float:
    model, opt = _model(model_fn(), device, channels_last)
    if compile:
        model = torch.compile(model)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    for _ in range(warmup):
        _step(model, opt, x, y, amp, channels_last)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        _step(model, opt, x, y, amp, channels_last)
    _sync(device)
    return batch * steps / (time.perf_counter() - t0)


def resnet50_speeds(device: torch.device, *, batch: int = 256, size: int = 224, steps: int = 30, warmup: int = 10,
                    compile: bool = False) -> dict[str, Any]:
    from torchvision.models import resnet50

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out: dict[str, Any] = {"batch_size": batch, "image_size": size, "steps": steps,
                           "fp32_conv_tf32": torch.backends.cudnn.allow_tf32,
                           "fp32_matmul_tf32": torch.backends.cuda.matmul.allow_tf32}
    out["fp32"] = images_per_second(resnet50, device, batch=batch, size=size, amp=False, channels_last=False,
                                    steps=steps, warmup=warmup)
    out["bf16_channels_last"] = images_per_second(resnet50, device, batch=batch, size=size, amp=True,
                                                  channels_last=True, steps=steps, warmup=warmup)
    if compile:
        out["bf16_channels_last_compiled"] = images_per_second(
            resnet50, device, batch=batch, size=size, amp=True, channels_last=True, steps=steps, warmup=warmup,
            compile=True,
        )
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


# ---- 5d: four trials on one GPU ---------------------------------------------------------------

def _share_worker(rank: int, device: str, seconds: float, batch: int, n: int, start, results) -> None:
    """One 'trial': the small CNN on device-resident data with bf16 + channels_last, as a trial
    with the platform's GPU defaults trains; counts images for `seconds` after a common start."""
    dev = torch.device(device)
    torch.set_num_threads(1)
    x, y = synthetic(n, 32, seed=rank)
    x, y = x.to(dev), y.to(dev)
    amp = dev.type == "cuda"
    model, opt = _model(small_cnn(), dev, channels_last=amp)
    for _ in range(10):  # warm-up: kernels, allocator
        _step(model, opt, x[:batch], y[:batch], amp, amp)
    _sync(dev)
    start.wait()
    steps, t0 = 0, time.perf_counter()
    perm = torch.randperm(n, device=dev)
    while time.perf_counter() - t0 < seconds:
        i = (steps * batch) % max(1, n - batch + 1)
        idx = perm[i : i + batch]
        _step(model, opt, x[idx], y[idx], amp, amp)
        steps += 1
        if steps % 50 == 0:
            _sync(dev)  # keep the queue of launched kernels short, so the clock means something
    _sync(dev)
    results.put((rank, steps * batch / (time.perf_counter() - t0)))


def shared_gpu(device: torch.device, *, trials: int = 4, seconds: float = 15.0, batch: int = 128,
               n: int = 8192) -> dict[str, Any]:
    """Aggregate images/s of `trials` processes training at once on one device, vs one alone."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")

    def run(k: int) -> list[float]:
        start, results = ctx.Barrier(k), ctx.Queue()
        procs = [ctx.Process(target=_share_worker, args=(r, str(device), seconds, batch, n, start, results))
                 for r in range(k)]
        for p in procs:
            p.start()
        got = [results.get(timeout=seconds + 600) for _ in procs]
        for p in procs:
            p.join()
        return [ips for _, ips in sorted(got)]

    one = run(1)
    many = run(trials)
    return {"one_images_per_s": one[0], "shared_images_per_s": many, "aggregate_images_per_s": sum(many),
            "speedup": sum(many) / one[0], "trials": trials, "batch_size": batch, "seconds": seconds}


# ---- 5e: the platform's own trial and retrain on this GPU ---------------------------------------

SELF_CHECK_CONFIG = {"model": "cnn", "filters": [32, 32, 64, 64, 128], "dense_units": 64, "lr": 1e-3}


def _fake_data(samples: int):
    from trainables.core.data import DatasetConfig

    return DatasetConfig(name="fake", num_samples=samples, num_classes=10, image_size=32)


def _engine_trial(rank: int, device: str, epochs: int, results, samples: int) -> None:
    """One trial as a sweep runs it (engine.run_trial: the model registry, the data pipeline, the
    performance: defaults), on torchvision's FakeData: no dataset needed, nothing learned."""
    from trainables.core.engine import run_trial

    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    run_trial({**SELF_CHECK_CONFIG, "seed": rank}, dataset=_fake_data(samples), epochs=epochs,
              report=lambda m, state: rows.append(m), device=torch.device(device))
    results.put((rank, device, rows[-1].get("precision"), rows[-1]["samples_per_second"], time.perf_counter() - t0))


def self_check(device: torch.device, *, epochs: int = 1, samples: int = 2000) -> dict[str, Any]:
    """Two engine trials at once on `device` (two processes, as Ray runs gpu: 0.5 trials), then
    engine.retrain of the same configuration: what ran where, in which precision, how fast."""
    import torch.multiprocessing as mp

    from trainables.core.engine import retrain

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_engine_trial, args=(r, str(device), epochs, results, samples)) for r in range(2)]
    for proc in procs:
        proc.start()
    trials = sorted(results.get(timeout=600) for _ in procs)
    for proc in procs:
        proc.join()
    t0 = time.perf_counter()
    r = retrain(SELF_CHECK_CONFIG, dataset=_fake_data(samples), epochs=epochs, device=device)
    lines = [f"trial {rank}: {dev}, {prec}, {sps:,.0f} samples/s, {secs:.1f}s" for rank, dev, prec, sps, secs in trials]
    lines.append(f"retrain: {device}, {r.precision}, test_acc {r.test_acc:.3f}, {time.perf_counter() - t0:.1f}s")
    return {"trials": [{"rank": t[0], "device": t[1], "precision": t[2], "samples_per_second": t[3],
                        "seconds": t[4]} for t in trials],
            "retrain_precision": r.precision, "retrain_test_acc": r.test_acc, "lines": lines,
            "ok": all(t[2] for t in trials) and len(trials) == 2}


# ---- the figures -------------------------------------------------------------------------------

GPU_FIGURES = (
    ("5a", "small dataset: tensors on the GPU vs DataLoader, epoch speed", "x", ">= 3x"),
    ("5b", "ResNet-50 224 px: bf16 + channels_last vs fp32, images/s", "x", ">= 2x"),
    ("5c", "ResNet-50 training images/s vs NVIDIA A100 AMP (2,470)", "images/s", "> 2,470 images/s"),
    ("5d", "four trials sharing one GPU (gpu: 0.25) vs one, aggregate images/s", "x", ">= 2.5x"),
    ("5e", "self-check: two engine trials sharing the GPU (gpu: 0.5) and a retrain, in auto precision", "ok",
     "both run"),
)


def measure(*, quick: bool, device: str | None = None, on_figure=lambda fig: None) -> list[Figure]:
    """The GPU figures on `device` (default: cuda:0), or one clear skipped line each without one;
    on_figure(fig) is called as each is measured."""
    if device is None and not torch.cuda.is_available():
        figs = [skipped(i, name, unit, target, NO_GPU) for i, name, unit, target in GPU_FIGURES]
        for f in figs:
            on_figure(f)
        return figs
    dev = torch.device(device or "cuda:0")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    figs: list[Figure] = []

    def attempt(i, fn):
        meta = next(m for m in GPU_FIGURES if m[0] == i)
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - one failing figure must not hide the others
            return Figure(i, meta[1], None, meta[2], meta[3], False, device=name,
                          skipped=f"failed: {type(e).__name__}: {e}")

    def fig_a():
        d = resident_vs_loader(dev, n=10000 if quick else 50000, epochs=2 if quick else 3)
        return Figure("5a", GPU_FIGURES[0][1], d["speedup"], "x", ">= 3x", check(d["speedup"], ">=", 3), device=name,
                      details={"summary": f"{d['resident_epoch_s']:.3f} s vs {d['loader_epoch_s']:.3f} s a epoch "
                                          f"(DataLoader, {d['loader_workers']} workers)", **d})
    figs.append(attempt("5a", fig_a))
    on_figure(figs[-1])

    r50: dict[str, Any] = {}

    def fig_b():
        r50.update(resnet50_speeds(dev, batch=128 if quick else 256, steps=15 if quick else 40,
                                   warmup=5 if quick else 10, compile=not quick))
        ratio = r50["bf16_channels_last"] / r50["fp32"]
        return Figure("5b", GPU_FIGURES[1][1], ratio, "x", ">= 2x", check(ratio, ">=", 2), device=name,
                      details={"summary": f"{r50['bf16_channels_last']:,.0f} vs {r50['fp32']:,.0f} images/s", **r50})
    figs.append(attempt("5b", fig_b))
    on_figure(figs[-1])

    def fig_c():
        if not r50:
            raise RuntimeError("5b did not measure ResNet-50")
        best_key = max((k for k in r50 if k.startswith("bf16")), key=lambda k: r50[k])
        ips = r50[best_key]
        return Figure("5c", GPU_FIGURES[2][1], ips, "images/s", "> 2,470 images/s", ips > A100_AMP_IMAGES_PER_S,
                      device=name,
                      details={"summary": f"{ips / A100_AMP_IMAGES_PER_S:.2f}x the A100 figure "
                                          f"({best_key.replace('_', ' ')}, "
                                          f"batch {r50['batch_size']}, synthetic data on the GPU)",
                               "reference": "NVIDIA DeepLearningExamples ResNet-50 v1.5 PyTorch, A100 80GB AMP, "
                                            "batch 256: 2,470 images/s",
                               "config": best_key, **r50})
    figs.append(attempt("5c", fig_c))
    on_figure(figs[-1])

    def fig_d():
        d = shared_gpu(dev, seconds=8.0 if quick else 20.0)
        return Figure("5d", GPU_FIGURES[3][1], d["speedup"], "x", ">= 2.5x", check(d["speedup"], ">=", 2.5),
                      device=name,
                      details={"summary": f"{d['aggregate_images_per_s']:,.0f} vs "
                                          f"{d['one_images_per_s']:,.0f} images/s", **d})
    figs.append(attempt("5d", fig_d))
    on_figure(figs[-1])

    def fig_e():
        d = self_check(dev, epochs=1, samples=2000 if quick else 10000)
        for line in d["lines"]:
            print(f"5e: {line}", flush=True)
        return Figure("5e", GPU_FIGURES[4][1], 1.0 if d["ok"] else 0.0, "ok", "both run", d["ok"], device=name,
                      details={"summary": "; ".join(d["lines"]), **d})
    figs.append(attempt("5e", fig_e))
    on_figure(figs[-1])
    return figs
