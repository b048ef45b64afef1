"""Splits held as tensors: the Split protocol, Splits, TensorSplit, sharding, augmentation, seeded splitting.

Small datasets live as one normalised tensor per split (moved to the GPU when the trial has
one) and are batched by slicing.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
import torch.nn.functional as F

from trainables.core.data.config import DatasetConfig, image_size_for
from trainables.core.data.stratify import split_indices
from trainables.core.models.registry import Preprocess


class Split(Protocol):
    """One split of a dataset, able to hand out (x, y) batches on a device."""

    def __len__(self) -> int: ...

    def batches(
        self, batch_size: int, *, shuffle: bool, generator: torch.Generator | None, augment: bool,
        shard: tuple[int, int] | None = None,  # (rank, world): one data-parallel worker's part
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def to(self, device: torch.device) -> "Split": ...


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    in_channels: int
    image_size: int

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device) -> "Splits":
        return Splits(self.train.to(device), self.val.to(device), self.test.to(device), self.classes,
                      self.in_channels, self.image_size)


@dataclass
class TensorSplit:
    """A split held as tensors: x is (N, C, H, W) float and normalised, y is (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor
    flip: bool = False  # horizontal flips are label-preserving (not for digits)

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> "TensorSplit":
        return TensorSplit(self.x.to(device), self.y.to(device), self.flip)

    def batches(self, batch_size, *, shuffle, generator=None, augment=False, shard=None):
        n = len(self.y)
        if shuffle:
            order = torch.randperm(n, generator=generator).to(self.x.device)
        else:
            order = None
        if shard is not None:
            order = shard_order(order if order is not None else torch.arange(n, device=self.x.device), shard)
            n = len(order)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size] if order is not None else slice(i, i + batch_size)
            x, y = self.x[idx], self.y[idx]
            if augment:
                x = augment_batch(x, flip=self.flip, generator=generator)
            yield x, y


def shard_order(order: torch.Tensor, shard: tuple[int, int]) -> torch.Tensor:
    """Worker `rank` of `world`'s part of an epoch's order (data-parallel training): the order is
    padded with its own head to a multiple of `world`, so every worker gets the same number of
    samples, hence of batches (DDP needs every rank to take the same number of steps)."""
    rank, world = shard
    total = -(-len(order) // world) * world
    if total > len(order):
        order = order.repeat(-(-total // max(len(order), 1)))[:total]
    return order[rank::world]


def augment_batch(x: torch.Tensor, *, flip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Per-sample random shift (pad by 1/8 of the side, crop back) and, where allowed, h-flip."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (n, w)
    samples = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[samples, channels, rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(mask[:, None, None, None], out.flip(-1), out)
    return out


def _prepare(x: torch.Tensor, *, image_size: int, channels: int | None, mean=None, std=None,
             stats_from: torch.Tensor | None = None):
    """Resize to image_size, match channels, normalise (by the given stats or the train split's)."""
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    if channels is not None and x.shape[1] != channels:
        if x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1)
        elif channels == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise ValueError(f"cannot turn {x.shape[1]}-channel images into {channels} channels")
    return x.contiguous()


def tensor_splits(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    classes: list[str],
    cfg: DatasetConfig,
    pre: Preprocess,
    default_size: int,
    flip: bool,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Splits:
    """Split (x in [0, 1], N C H W) into train/val(/test) stratified and seeded, then resize and normalise."""
    tr, va, te = split_indices(y.numpy(), cfg, has_test=test is not None)
    if test is None:
        test = (x[te], y[te])
    size = image_size_for(cfg, pre, default_size)
    prep = functools.partial(_prepare, image_size=size, channels=pre.channels)
    xtr, xva, xte = prep(x[tr]), prep(x[va]), prep(test[0])
    if pre.mean is not None and pre.std is not None:
        mean = torch.tensor(pre.mean).view(1, -1, 1, 1)
        std = torch.tensor(pre.std).view(1, -1, 1, 1)
    else:  # the training split's own per-channel statistics
        mean = xtr.mean(dim=(0, 2, 3), keepdim=True)
        std = xtr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    norm = lambda t: ((t - mean) / std).contiguous()  # noqa: E731
    return Splits(
        train=TensorSplit(norm(xtr), y[tr], flip),
        val=TensorSplit(norm(xva), y[va], flip),
        test=TensorSplit(norm(xte), test[1], flip),
        classes=classes,
        in_channels=xtr.shape[1],
        image_size=size,
    )
