"""The training loop: train_one_epoch / evaluate / fit, run_trial and retrain. Pure PyTorch, no ray.

`run_trial(config, ...)` is what one trial does, with `report(metrics, state)` called once
per epoch; the Ray trainable passes a `report` that checkpoints and calls tune.report.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from trainables.core.data import DatasetConfig, Split, Splits
from trainables.core.trial import Training, build, pick_device

Report = Callable[[dict[str, Any], Callable[[], dict[str, Any]]], None]


def make_optimizer(params, t: Training) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.RMSprop(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, t: Training, epochs: int):
    """Stepped once per epoch."""
    if t.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    if t.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=t.lr_step_epochs or max(1, epochs // 3), gamma=t.lr_gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _autocast(amp: torch.dtype | None, device_type: str):
    """bf16 or fp16 autocast around forward and loss (fp16 also scales the loss: see fit), or nothing."""
    return torch.autocast(device_type=device_type, dtype=amp) if amp is not None else contextlib.nullcontext()


def train_one_epoch(model, split: Split, opt, loss_fn, *, batch_size: int, generator, augment: bool,
                    shard: tuple[int, int] | None = None, amp: torch.dtype | None = None, channels_last: bool = False,
                    scaler: torch.amp.GradScaler | None = None):
    """One pass over the training split (or, with shard=(rank, world), over this data-parallel
    worker's part of it); returns (mean loss, accuracy, samples, seconds). `amp`: an autocast
    dtype (bf16, fp16) for forward and loss; `scaler`: fp16's loss scaling; `channels_last`: inputs
    in NHWC memory layout."""
    model.train()
    t0 = time.perf_counter()
    total_loss = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    n = 0
    part = {} if shard is None else {"shard": shard}
    for x, y in split.batches(batch_size, shuffle=True, generator=generator, augment=augment, **part):
        if len(y) == 1 and n > 0:
            # a last batch of one example: BatchNorm cannot normalise it in training (a training split one more
            # than a multiple of batch_size failed every trial); shuffled, the example is in a full batch next
            # epoch. (Data-parallel workers all skip theirs: shard_order gives each the same batch sizes.)
            continue
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(amp, x.device.type):
            out = model(x)
            loss = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()  # fp16 gradients underflow unscaled
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        # Accumulate on the device: no host sync per batch.
        total_loss = total_loss.to(loss.device) + loss.detach().double() * len(y)
        correct = correct.to(y.device) + (out.detach().argmax(1) == y).sum()
        n += len(y)
    return total_loss.item() / max(n, 1), correct.item() / max(n, 1), n, time.perf_counter() - t0


@torch.no_grad()
def evaluate(model, split: Split, loss_fn, *, batch_size: int = 512, amp: torch.dtype | None = None,
             channels_last: bool = False) -> tuple[float, float]:
    """(mean loss, accuracy) over a split."""
    model.eval()
    total_loss, correct, n = 0.0, 0, 0
    for x, y in split.batches(batch_size, shuffle=False, generator=None, augment=False):
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(amp, x.device.type):
            out = model(x)
        out = out.float()
        total_loss += loss_fn(out, y).item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    return total_loss / max(n, 1), correct / max(n, 1)


def count_params(model: nn.Module) -> dict[str, Any]:
    """Trainable and total parameter counts and the names of the layers that train."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    layers = sorted({name.rsplit(".", 1)[0] for name, p in model.named_parameters() if p.requires_grad})
    return {"trainable_params": trainable, "total_params": total, "trainable_layers": layers}


def _mark_start() -> None:
    """For `tune bench` figure 2d (start-up): the moment training starts, appended to the file
    $TRAINABLES_MARK_START names, where the bench's `tune run` sets it."""
    path = os.environ.get("TRAINABLES_MARK_START")
    if path:
        with open(path, "a") as f:
            f.write(f"{time.time()}\n")


def fit(
    model: nn.Module,
    splits: Splits,
    t: Training,
    *,
    epochs: int,
    report: Report,
    start: dict[str, Any] | None = None,
    wrap_model: Callable[[nn.Module], nn.Module] | None = None,
    shard: tuple[int, int] | None = None,
    amp: torch.dtype | None = None,
    channels_last: bool = False,
    compile: bool = False,
    tags: dict[str, Any] | None = None,
) -> None:
    """Train for `epochs`, calling report(metrics, state_fn) after each; resumes from `start`.
    `tags`: what the trial reports with every epoch besides its metrics (e.g. the precision used);
    the first epoch also names the layers that train (`trainable_layers`, seed 003's question).

    Data-parallel workers pass `wrap_model` (e.g. DistributedDataParallel: it trains, the plain
    model is evaluated and saved) and `shard=(rank, world)`: each worker takes its part of every
    epoch and batch_size // world samples a step, so the global batch stays `batch_size`.
    Speed (see resolve_performance): `amp` autocast dtype, `channels_last` model and inputs,
    `compile` the training module with torch.compile (the plain model is evaluated and saved)."""
    if channels_last:
        model.to(memory_format=torch.channels_last)  # in place: parameters keep their identity
    opt = make_optimizer(model.parameters(), t)
    sched = make_scheduler(opt, t, epochs)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
    device_type = next(model.parameters()).device.type
    scaler = torch.amp.GradScaler(device_type, enabled=amp == torch.float16)
    first = 1
    if start is not None:
        model.load_state_dict(start["model"])
        opt.load_state_dict(start["optimizer"])
        sched.load_state_dict(start["scheduler"])
        if scaler.is_enabled() and start.get("scaler"):
            scaler.load_state_dict(start["scaler"])
        first = start["epoch"] + 1
        if start.get("training") != t.model_dump():
            _retune(opt, sched, t)  # PBT cloned another trial's state under a perturbed config
    net = wrap_model(model) if wrap_model is not None else model
    if compile:
        net = torch.compile(net)
    batch_size = max(1, t.batch_size // shard[1]) if shard is not None else t.batch_size
    counts = count_params(model)
    _mark_start()
    for epoch in range(first, epochs + 1):
        t0 = time.perf_counter()
        # Seeded by (seed, epoch): a resumed trial sees the same batches it would have seen.
        gen = torch.Generator().manual_seed(t.seed * 100_003 + epoch)
        lr = opt.param_groups[0]["lr"]
        train_loss, train_acc, n, train_s = train_one_epoch(
            net, splits.train, opt, loss_fn, batch_size=batch_size, generator=gen, augment=t.augment, shard=shard,
            amp=amp, channels_last=channels_last, scaler=scaler,
        )
        val_loss, val_acc = evaluate(model, splits.val, loss_fn, amp=amp, channels_last=channels_last)
        sched.step()
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
            "epoch_seconds": time.perf_counter() - t0,
            "samples_per_second": n / train_s if train_s > 0 else 0.0,
            "trainable_params": counts["trainable_params"],
            "total_params": counts["total_params"],
            **(tags or {}),
        }
        if epoch == first:
            metrics["trainable_layers"] = counts["trainable_layers"]

        def state(epoch=epoch) -> dict[str, Any]:
            return {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch,
                "training": t.model_dump(),
                **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {}),
            }

        diverged = not math.isfinite(train_loss)
        if diverged:
            metrics["diverged"] = True
        report(metrics, state)
        if diverged or metrics.get("diverged"):  # nothing more to learn from a NaN loss: end the trial here
            # (report may set it: data-parallel workers agree on the loss over every worker)
            return


def _retune(opt: torch.optim.Optimizer, sched, t: Training) -> None:
    """Apply a new config's optimiser settings to restored optimiser and scheduler state."""
    for g in opt.param_groups:
        g["lr"] = g["initial_lr"] = t.lr
        g["weight_decay"] = t.weight_decay
        if "momentum" in g:
            g["momentum"] = t.momentum
    sched.base_lrs = [t.lr for _ in opt.param_groups]


@dataclass(frozen=True)
class Performance:
    """The speed options of a trial, resolved for its device (spec section `performance:`)."""

    amp: torch.dtype | None  # autocast dtype (bf16, fp16) or None for fp32
    channels_last: bool
    compile: bool
    cudnn_benchmark: bool
    data_on_device: bool
    precision: str = "fp32"  # fp32 | bf16 | fp16: what the trial reports it used


def choose_precision(precision: str, device_type: str, capability: tuple[int, int] | None) -> str:
    """fp32, bf16 or fp16 for a device. auto: bf16 where the GPU computes it natively (compute
    capability 8.0, Ampere, and later), fp16 with a GradScaler on older GPUs (a T4 only emulates bf16,
    slower than fp32), fp32 on a CPU. An explicit choice is kept (bf16 on a CPU autocasts on the CPU)."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if precision != "auto":
        return precision
    if device_type != "cuda" or capability is None:
        return "fp32"
    return "bf16" if capability >= (8, 0) else "fp16"


DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_performance(device: torch.device | str, *, precision: str = "auto", channels_last: bool | str = "auto",
                        compile: bool = False, cudnn_benchmark: bool = True,
                        data_on_device: bool | str = "auto") -> Performance:
    """`auto` means on where the trial has a CUDA device: mixed precision (see choose_precision),
    channels_last, and small datasets held on the GPU. Explicit values are kept as given."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    capability = torch.cuda.get_device_capability(device) if cuda and torch.cuda.is_available() else None
    chosen = choose_precision(precision, device.type, capability)
    auto = lambda v: cuda if v == "auto" else bool(v)  # noqa: E731
    return Performance(amp=DTYPES[chosen], channels_last=auto(channels_last), compile=bool(compile),
                       cudnn_benchmark=bool(cudnn_benchmark), data_on_device=auto(data_on_device), precision=chosen)


def _prepare(config: dict[str, Any], dataset: DatasetConfig, device: torch.device | None, options: dict[str, Any]):
    """(device, performance, model, splits, training) for one trial or retrain: what both set up alike."""
    device = device or pick_device()
    perf = resolve_performance(device, **options)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = perf.cudnn_benchmark
    model, splits, training = build(config, dataset, device, data_on_device=perf.data_on_device)
    return device, perf, model, splits, training


def run_trial(config: dict[str, Any], *, dataset: DatasetConfig, epochs: int, report: Report, start=None,
              device: torch.device | None = None, wrap_model=None, shard: tuple[int, int] | None = None,
              precision: str = "auto", channels_last: bool | str = "auto", compile: bool = False,
              cudnn_benchmark: bool = True, data_on_device: bool | str = "auto") -> None:
    """What one trial (or one data-parallel worker: `device`, `wrap_model`, `shard`, see fit)
    does: build the model and data from `config`, then fit. The options from `precision` on are
    the spec's `performance:` section (see resolve_performance)."""
    device, perf, model, splits, training = _prepare(config, dataset, device, dict(
        precision=precision, channels_last=channels_last, compile=compile, cudnn_benchmark=cudnn_benchmark,
        data_on_device=data_on_device))
    fit(model, splits, training, epochs=epochs, report=report, start=start, wrap_model=wrap_model, shard=shard,
        amp=perf.amp, channels_last=perf.channels_last, compile=perf.compile, tags={"precision": perf.precision})


@dataclass
class Retrained:
    """A configuration trained again from scratch, then scored once on the held-out test split."""

    model: nn.Module
    test_loss: float
    test_acc: float
    history: list[dict[str, Any]]  # one row per epoch, as fit reports them
    example: torch.Tensor  # one test input on the CPU (for a logged model's signature)
    classes: list[str]
    precision: str = "fp32"


def example_input(splits: Splits) -> torch.Tensor:
    """One input of the test split (else validation) on the CPU: a logged model's signature."""
    scored = splits.test if len(splits.test) else splits.val
    x, _ = next(iter(scored.batches(1, shuffle=False, generator=None, augment=False)))
    return x.detach().cpu()


def score(model: nn.Module, splits: Splits, training: Training, history: list[dict[str, Any]], *,
          perf: Performance | None = None) -> Retrained:
    """A trained model scored once on the held-out test split (NaN without one), as Retrained with the
    model on the CPU. The loss is the one the trials report as val_loss (label smoothing included)."""
    amp, channels_last = (perf.amp, perf.channels_last) if perf is not None else (None, False)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=training.label_smoothing)
    test_loss, test_acc = (evaluate(model, splits.test, loss_fn, amp=amp, channels_last=channels_last)
                           if len(splits.test) else (float("nan"), float("nan")))
    example = example_input(splits)
    model = model.cpu().to(memory_format=torch.contiguous_format)
    # what training used: this process's choice, else what the (data-parallel) workers reported
    precision = perf.precision if perf is not None else str((history or [{}])[-1].get("precision", "fp32"))
    return Retrained(model, test_loss, test_acc, history, example, list(splits.classes), precision)


def retrain(config: dict[str, Any], *, dataset: DatasetConfig, epochs: int, device: torch.device | None = None,
            performance: dict[str, Any] | None = None) -> Retrained:
    """Train `config` for `epochs` on the training split (watching validation), then score the test split,
    with the spec's `performance:` options as a trial has them. The model comes back on the CPU."""
    device, perf, model, splits, training = _prepare(config, dataset, device, performance or {})
    history: list[dict[str, Any]] = []
    fit(model, splits, training, epochs=epochs, report=lambda metrics, state: history.append(dict(metrics)),
        amp=perf.amp, channels_last=perf.channels_last, compile=perf.compile, tags={"precision": perf.precision})
    return score(model, splits, training, history, perf=perf)
