"""Datasets by name, seeded splits, transforms and batch iterators. Pure PyTorch: no ray here.

Small datasets live as one normalised tensor per split (moved to the GPU when the trial has
one) and are batched by slicing; image folders stream through DataLoader workers.
"""
from __future__ import annotations

import functools
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    workers: int | None = Field(default=None, ge=0, le=64)  # image folders: DataLoader workers (None: min(4, CPUs))

    @field_validator("root")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        # Made absolute where the spec is read (the driver): Ray runs trials in their own cwd.
        return os.path.abspath(os.path.expanduser(v)) if v else v

    @model_validator(mode="after")
    def _root_needed(self) -> "DatasetConfig":
        if self.name in ("imagefolder", "inaturalist") and not self.root:
            raise ValueError(f"dataset {self.name!r} needs `root`: a folder with train/ (and val/ or test/) class folders")
        return self


class DatasetNotFound(ValueError):
    """A dataset's files are not where the spec points; the message says what to put where."""


# mnist / cifar10 without `root`: an absolute folder, since Ray may run trials in another cwd.
DEFAULT_ROOT = Path(os.environ.get("TRAINABLES_DATA", "~/.cache/trainables/data")).expanduser()


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


def split_indices(labels: np.ndarray, cfg: DatasetConfig, *, has_test: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices into labels: test carved first when the dataset has none (else
    empty), then val from the rest, then `limit` on train; all stratified and seeded by cfg.seed."""
    idx = np.arange(len(labels))
    test = np.zeros(0, dtype=np.int64)
    if not has_test:
        idx, test = stratified_split(labels, cfg.test_fraction, cfg.seed)
    tr, va = stratified_split(labels[idx], cfg.val_fraction, cfg.seed)
    tr, va = idx[tr], idx[va]
    if cfg.limit is not None and len(tr) > cfg.limit:
        tr = np.sort(np.random.default_rng(cfg.seed).choice(tr, cfg.limit, replace=False))
    return tr, va, test


def image_size_for(cfg: DatasetConfig, pre: Preprocess, default: int) -> int:
    """The model's required size, else the spec's, else the dataset's own raised to what the model
    survives (mnist's 28 px would not get through the cnn's five poolings). An explicit size that
    is too small is left for the model to reject with its own message."""
    return pre.image_size or cfg.image_size or max(default, pre.min_image_size)


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

    size = image_size_for(cfg, pre, 32)
    fake = FakeData(size=cfg.num_samples, image_size=(3, size, size), num_classes=cfg.num_classes, random_offset=cfg.seed)
    xs, ys = zip(*((pil_to_tensor(img), int(label)) for img, label in fake))
    x = torch.stack(xs).float() / 255.0
    y = torch.tensor(ys, dtype=torch.int64)
    classes = [str(c) for c in range(cfg.num_classes)]
    return tensor_splits(x, y, classes=classes, cfg=cfg, pre=pre, default_size=size, flip=True)


def _root(cfg: DatasetConfig) -> Path:
    return Path(cfg.root).expanduser() if cfg.root else DEFAULT_ROOT


def _torchvision_pair(cls, root: Path, *, download: bool, missing: str):
    """torchvision's (train, test) datasets of `cls`, or DatasetNotFound with `missing` and the cause."""
    try:
        return cls(str(root), train=True, download=download), cls(str(root), train=False)
    except (RuntimeError, OSError) as e:  # not found, or the download failed (no network: URLError)
        raise DatasetNotFound(f"{missing} [{'download failed' if download else 'torchvision'}: {e}]") from e


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")


def _mnist(cfg: DatasetConfig, pre: Preprocess) -> Splits:
    from torchvision.datasets import MNIST

    root = _root(cfg)
    missing = (
        f"mnist: files not found. Put {', '.join(MNIST_FILES)} (the MNIST release's .gz files, "
        f"unpacked) in {root / 'MNIST' / 'raw'}/, or set `download: true` in the dataset section where a network exists"
    )
    train, test = _torchvision_pair(MNIST, root, download=cfg.download, missing=missing)
    as_x = lambda d: d.unsqueeze(1).float().div_(255)  # noqa: E731  (N, 28, 28) uint8 -> (N, 1, 28, 28) in [0, 1]
    classes = [str(c) for c in range(10)]  # as digits names them
    return tensor_splits(as_x(train.data), train.targets, classes=classes, cfg=cfg, pre=pre, default_size=28, flip=False,
                         test=(as_x(test.data), test.targets))


def _cifar10_unchecked():
    """torchvision's CIFAR10 reader with existence in place of its md5 check: for copies whose
    bytes differ from the official release (re-pickled, or made by tests). Same parsing code."""
    from torchvision.datasets import CIFAR10

    class CIFAR10Unchecked(CIFAR10):
        meta = {**CIFAR10.meta, "md5": None}

        def _check_integrity(self) -> bool:
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f, _ in self.train_list + self.test_list)

    return CIFAR10Unchecked


def _cifar10(cfg: DatasetConfig, pre: Preprocess) -> Splits:
    from torchvision.datasets import CIFAR10

    root = _root(cfg)
    folder = root / CIFAR10.base_folder
    missing = (
        f"cifar10: files not found. Put {', '.join(CIFAR10_FILES)} (cifar-10-python.tar.gz, unpacked) "
        f"in {folder}/, or set `download: true` in the dataset section where a network exists"
    )
    if all((folder / f).is_file() for f in CIFAR10_FILES):
        try:  # the real path: torchvision verifies the official md5s
            train, test = CIFAR10(str(root), train=True), CIFAR10(str(root), train=False)
        except RuntimeError:
            warnings.warn(f"cifar10: files in {folder} differ from the official release (md5); reading them as they are")
            unchecked = _cifar10_unchecked()
            try:
                train, test = unchecked(str(root), train=True), unchecked(str(root), train=False)
            except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
                raise DatasetNotFound(f"cifar10: unreadable files in {folder} ({e!r}). {missing}") from e
    else:
        train, test = _torchvision_pair(CIFAR10, root, download=cfg.download, missing=missing)
    as_x = lambda d: torch.from_numpy(d).permute(0, 3, 1, 2).float().div_(255)  # noqa: E731  NHWC uint8 -> NCHW
    as_y = lambda t: torch.tensor(t, dtype=torch.int64)  # noqa: E731
    return tensor_splits(as_x(train.data), as_y(train.targets), classes=list(train.classes), cfg=cfg, pre=pre,
                         default_size=32, flip=True, test=(as_x(test.data), as_y(test.targets)))


# ---- image folders: streamed through DataLoader workers -------------------------------------

# Without the model's own statistics (an ImageNet backbone gives them), folders are normalised by
# ImageNet's: per-dataset statistics would need a full decoding pass over every image in every
# trial process, and natural photos (iNaturalist) sit close to ImageNet's anyway.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD = (0.449,), (0.226,)  # channel averages, for 1-channel input
FOLDER_DEFAULT_SIZE = 224  # ImageNet's; `image_size` in the spec for faster from-scratch sweeps
CROP_SCALE = (0.25, 1.0)  # RandomResizedCrop: milder than ImageNet's 0.08, for ~10k-image datasets


def _auto_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, cpus)


def _image_transform(size: int, augment: bool):
    """PIL image -> uint8 (C, size, size) tensor; floats and normalisation happen on the device."""
    from torchvision import transforms as T

    if augment:
        head = [T.RandomResizedCrop(size, scale=CROP_SCALE), T.RandomHorizontalFlip()]
    else:
        head = [T.Resize(size), T.CenterCrop(size)]  # short side to size, then the centre square
    return T.Compose([*head, T.PILToTensor()])


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, samples: list[tuple[str, int]], transform, mode: str):
        self.samples, self.transform, self.mode = samples, transform, mode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as img:
            return self.transform(img.convert(self.mode)), label  # convert: grayscale <-> RGB as asked


class _Order(torch.utils.data.Sampler[int]):
    """The epoch's index order, set just before iterating (from the engine's seeded generator);
    lives in the main process, so it works with persistent workers too. None: 0..n-1."""

    def __init__(self, n: int):
        self.n, self.order = n, None

    def __len__(self) -> int:
        return self.n if self.order is None else len(self.order)

    def __iter__(self):
        return iter(range(self.n) if self.order is None else self.order.tolist())


class FolderSplit:
    """A split of an image folder: files decoded and transformed by DataLoader workers into uint8
    batches (4x less to copy and pin than floats), made float and normalised on the device."""

    def __init__(self, samples: list[tuple[str, int]], *, image_size: int, mode: str, mean, std,
                 workers: int, seed: int = 0, device: torch.device | str = "cpu"):
        self.samples, self.image_size, self.mode, self.workers, self.seed = samples, image_size, mode, workers, seed
        self.mean_std = (tuple(mean), tuple(std))
        self.device = torch.device(device)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self._loaders: dict[tuple[int, bool, bool], tuple[torch.utils.data.DataLoader, _Order]] = {}
        self._moved: dict[str, FolderSplit] = {}  # to() results: a reused trial actor keeps its workers

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [y for _, y in self.samples]

    def to(self, device: torch.device | str) -> "FolderSplit":
        device = torch.device(device)
        if device == self.device:
            return self
        if str(device) not in self._moved:
            self._moved[str(device)] = FolderSplit(self.samples, image_size=self.image_size, mode=self.mode, mean=self.mean_std[0],
                                                   std=self.mean_std[1], workers=self.workers, seed=self.seed, device=device)
        return self._moved[str(device)]

    def _loader(self, batch_size: int, shuffle: bool, augment: bool):
        """One DataLoader per (batch_size, shuffle, augment), kept so persistent workers live across epochs."""
        key = (batch_size, shuffle, augment)
        if key not in self._loaders:
            order = _Order(len(self.samples))
            files = _ImageFiles(self.samples, _image_transform(self.image_size, augment), self.mode)
            loader = torch.utils.data.DataLoader(
                files, batch_size=batch_size, sampler=order, num_workers=self.workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.workers > 0,
                generator=torch.Generator().manual_seed(self.seed),  # worker seeds without touching the global RNG
            )
            self._loaders[key] = (loader, order)
        return self._loaders[key]

    def batches(self, batch_size, *, shuffle, generator=None, augment=False, shard=None):
        loader, order = self._loader(batch_size, shuffle, augment)
        order.order = torch.randperm(len(self.samples), generator=generator) if shuffle else None
        if shard is not None:  # data-parallel: this worker's part of the epoch's order
            order.order = shard_order(order.order if order.order is not None else torch.arange(len(self.samples)), shard)
        pinned = loader.pin_memory
        for x, y in loader:
            x = x.to(self.device, non_blocking=pinned).float().div_(255).sub_(self._mean).div_(self._std)
            yield x, y.to(self.device, non_blocking=pinned)


_LAYOUT = "{root}/train/<class>/<image>.jpg with one folder per class, and optionally {root}/val/ (or test/) laid out the same as the test split"


def _folder_layout(cfg: DatasetConfig) -> tuple[Path, Path | None]:
    """(train/, val/ or test/ or None); a root holding a single dataset folder is entered
    (nature_12K/ -> nature_12K/inaturalist_12K/, as the iNaturalist zip unpacks)."""
    root = Path(cfg.root).expanduser()
    if not (root / "train").is_dir() and root.is_dir():
        inner = [d for d in root.iterdir() if (d / "train").is_dir()]
        root = inner[0] if len(inner) == 1 else root
    train = root / "train"
    if not train.is_dir():
        where = "does not exist" if not root.is_dir() else f"has no train/ folder (it holds: {sorted(d.name for d in root.iterdir())[:10]})"
        raise DatasetNotFound(f"{cfg.name}: {root} {where}; expected {_LAYOUT.format(root=root)}")
    test = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    return train, test


def _scan(train_dir: Path, test_dir: Path | None):
    """(classes sorted by folder name, train samples, test samples or None) as (path, label) lists."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetNotFound(f"no class folders in {train_dir}; expected {_LAYOUT.format(root=train_dir.parent)}")
    index = {c: i for i, c in enumerate(classes)}
    samples = make_dataset(str(train_dir), index, extensions=IMG_EXTENSIONS, allow_empty=True)
    empty = sorted(set(classes) - {classes[y] for _, y in samples})
    if empty:
        raise DatasetNotFound(f"class folders without images ({', '.join(IMG_EXTENSIONS)}) in {train_dir}: {empty}")
    test = make_dataset(str(test_dir), index, extensions=IMG_EXTENSIONS, allow_empty=True) if test_dir else None
    if test is not None and not test:
        raise DatasetNotFound(f"no images of the classes {classes} in {test_dir}; expected {_LAYOUT.format(root=test_dir.parent)}")
    return classes, samples, test


def _imagefolder(cfg: DatasetConfig, pre: Preprocess) -> Splits:
    """train/ split stratified into train and val; val/ or test/ (else a carved test_fraction) is test."""
    classes, samples, test = _scan(*_folder_layout(cfg))
    tr, va, te = split_indices(np.array([y for _, y in samples]), cfg, has_test=test is not None)
    if test is None:
        test = [samples[i] for i in te]
    channels = pre.channels or 3
    if channels not in (1, 3):
        raise ValueError(f"{cfg.name}: images can be read as 1 or 3 channels, not {channels}")
    if pre.mean is not None and pre.std is not None:
        mean, std = pre.mean, pre.std
    else:
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"{cfg.name}: normalisation has {len(mean)} means / {len(std)} stds for {channels} channels")
    size = image_size_for(cfg, pre, FOLDER_DEFAULT_SIZE)
    make = functools.partial(FolderSplit, image_size=size, mode="RGB" if channels == 3 else "L", mean=mean, std=std,
                             workers=_auto_workers() if cfg.workers is None else cfg.workers, seed=cfg.seed)
    return Splits(
        train=make([samples[i] for i in tr]),
        val=make([samples[i] for i in va]),
        test=make(test),
        classes=classes,
        in_channels=channels,
        image_size=size,
    )


LOADERS: dict[str, Callable[[DatasetConfig, Preprocess], Splits]] = {
    "digits": _digits,
    "mnist": _mnist,
    "cifar10": _cifar10,
    "imagefolder": _imagefolder,
    "inaturalist": _imagefolder,  # the seeds' iNaturalist 12K subset: an image folder
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
