"""Datasets by name, seeded splits, transforms and batch iterators. Pure PyTorch: no ray here.

Small datasets live as one normalised tensor per split (moved to the GPU when the trial has
one) and are batched by slicing; image folders stream through DataLoader workers.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainables.models.registry import Preprocess

DatasetName = Literal["digits", "mnist", "cifar10", "imagefolder", "inaturalist", "fake"]


class DatasetConfig(BaseModel):
    """The `dataset:` section of a spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DatasetName = "digits"
    root: str | None = None  # folder holding the files (mnist, cifar10, image folders)
    image_size: int | None = Field(default=None, ge=1, le=4096)  # None: the dataset's own default
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)  # of the training split, stratified
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)  # only for datasets without a test split
    limit: int | None = Field(default=None, ge=10)  # keep at most this many training images (smoke runs)
    download: bool = False  # mnist / cifar10: fetch into root where a network exists
    num_classes: int = Field(default=10, ge=2)  # fake only
    num_samples: int = Field(default=600, ge=20)  # fake only
    seed: int = 0  # the split seed: identical splits in every trial

    @model_validator(mode="after")
    def _root_needed(self) -> "DatasetConfig":
        if self.name in ("imagefolder", "inaturalist") and not self.root:
            raise ValueError(f"dataset {self.name!r} needs `root`: a folder with train/ (and val/ or test/) class folders")
        return self


class Split(Protocol):
    """One split of a dataset, able to hand out (x, y) batches on a device."""

    def __len__(self) -> int: ...

    def batches(
        self, batch_size: int, *, shuffle: bool, generator: torch.Generator | None, augment: bool
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
        return Splits(self.train.to(device), self.val.to(device), self.test.to(device), self.classes, self.in_channels, self.image_size)


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

    def batches(self, batch_size, *, shuffle, generator=None, augment=False):
        n = len(self.y)
        if shuffle:
            order = torch.randperm(n, generator=generator).to(self.x.device)
        else:
            order = None
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size] if order is not None else slice(i, i + batch_size)
            x, y = self.x[idx], self.y[idx]
            if augment:
                x = augment_batch(x, flip=self.flip, generator=generator)
            yield x, y


def augment_batch(x: torch.Tensor, *, flip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Per-sample random shift (pad by 1/8 of the side, crop back) and, where allowed, h-flip."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (n, w)
    out = padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(mask[:, None, None, None], out.flip(-1), out)
    return out


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held) with `fraction` of every class held out; seeded and order-independent."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, held = train_test_split(idx, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(rest), np.sort(held)


def _prepare(x: torch.Tensor, *, image_size: int, channels: int | None, mean=None, std=None, stats_from: torch.Tensor | None = None):
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
    labels = y.numpy()
    if test is None:
        rest, held = stratified_split(labels, cfg.test_fraction, cfg.seed)
        test = (x[held], y[held])
        x, y, labels = x[rest], y[rest], labels[rest]
    tr, va = stratified_split(labels, cfg.val_fraction, cfg.seed)
    if cfg.limit is not None and len(tr) > cfg.limit:
        tr = np.sort(np.random.default_rng(cfg.seed).choice(tr, cfg.limit, replace=False))
    size = pre.image_size or cfg.image_size or default_size
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


# ---- the datasets -------------------------------------------------------------------------

def _digits(cfg: DatasetConfig, pre: Preprocess) -> Splits:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    return tensor_splits(x, y, classes=[str(c) for c in range(10)], cfg=cfg, pre=pre, default_size=32, flip=False)


def _fake(cfg: DatasetConfig, pre: Preprocess) -> Splits:
    """torchvision's FakeData: random images, for smoke tests of the plumbing (nothing to learn)."""
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    size = pre.image_size or cfg.image_size or 32
    fake = FakeData(size=cfg.num_samples, image_size=(3, size, size), num_classes=cfg.num_classes, random_offset=cfg.seed)
    xs, ys = zip(*((pil_to_tensor(img), int(label)) for img, label in fake))
    x = torch.stack(xs).float() / 255.0
    y = torch.tensor(ys, dtype=torch.int64)
    classes = [str(c) for c in range(cfg.num_classes)]
    return tensor_splits(x, y, classes=classes, cfg=cfg, pre=pre, default_size=size, flip=True)


LOADERS: dict[str, Callable[[DatasetConfig, Preprocess], Splits]] = {
    "digits": _digits,
    "fake": _fake,
}


@functools.lru_cache(maxsize=4)
def load_splits(cfg: DatasetConfig, pre: Preprocess = Preprocess()) -> Splits:
    """The seeded train/val/test splits of a dataset; cached so a reused trial actor loads once."""
    try:
        loader = LOADERS[cfg.name]
    except KeyError:
        raise ValueError(f"dataset {cfg.name!r} is not available; expected one of {sorted(LOADERS)}") from None
    return loader(cfg, pre)
