"""Image folders (train/<class>/*.jpg, val/ or test/): their layout, transforms and FolderSplit.

Unlike the built-in datasets, an image folder is streamed: DataLoader workers decode and
transform the files into uint8 batches, made float and normalised on the device.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from trainables.core.data.config import DatasetConfig, image_size_for
from trainables.core.data.listing import folder_layout, scan_folder
from trainables.core.data.stratify import split_indices
from trainables.core.data.tensors import Splits, shard_order
from trainables.core.models.catalog import IMAGENET_MEAN, IMAGENET_STD
from trainables.core.models.registry import Preprocess

# Without the model's own statistics (an ImageNet backbone gives them), folders are normalised by
# ImageNet's: per-dataset statistics would need a full decoding pass over every image in every
# trial process, and natural photos (iNaturalist) sit close to ImageNet's anyway.
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
        head = [_ShortSide(size), T.CenterCrop(size)]  # short side to size, then the centre square
    return T.Compose([*head, T.PILToTensor()])


class _ShortSide:
    """T.Resize(size), the short side to size, of the image's centre at most 4:1: a 60000 x 1 strip (a 257-byte
    PNG) was resized to 13 million x 224 pixels, gigabytes per image."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img):
        from torchvision.transforms import functional as F

        w, h = img.size
        if max(w, h) > 4 * min(w, h):  # its centre at 4:1 first: the centre square is all real pixels still
            img = F.center_crop(img, [min(h, 4 * w), min(w, 4 * h)])
        return F.resize(img, self.size)


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
            self._moved[str(device)] = FolderSplit(
                self.samples, image_size=self.image_size, mode=self.mode, mean=self.mean_std[0],
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
            whole = order.order if order.order is not None else torch.arange(len(self.samples))
            order.order = shard_order(whole, shard)
        pinned = loader.pin_memory
        for x, y in loader:
            x = x.to(self.device, non_blocking=pinned).float().div_(255).sub_(self._mean).div_(self._std)
            yield x, y.to(self.device, non_blocking=pinned)


def imagefolder(cfg: DatasetConfig, pre: Preprocess) -> Splits:
    """train/ split stratified into train and val; val/ or test/ (else a carved test_fraction) is test."""
    classes, samples, test = scan_folder(*folder_layout(cfg))
    if cfg.exclude:  # files the driver found unreadable, with skip_bad_images
        left_out = {str(Path(cfg.root) / f) for f in cfg.exclude}
        samples = [s for s in samples if s[0] not in left_out]
        test = [s for s in test if s[0] not in left_out] if test is not None else None
    tr, va, te = split_indices(np.array([y for _, y in samples]), cfg, has_test=test is not None)
    test_folder = test
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
    workers = _auto_workers() if cfg.workers is None else cfg.workers
    mode = "RGB" if channels == 3 else "L"
    if cfg.cache != "none":
        cached = _cached(cfg, samples, test_folder, (tr, va, te), size=size, mode=mode, mean=mean, std=std,
                         workers=workers)
        if cached is not None:
            train, val, tested = cached
            return Splits(train=train, val=val, test=tested, classes=classes, in_channels=channels, image_size=size)
    make = functools.partial(FolderSplit, image_size=size, mode=mode, mean=mean, std=std, workers=workers,
                             seed=cfg.seed)
    return Splits(
        train=make([samples[i] for i in tr]),
        val=make([samples[i] for i in va]),
        test=make(test),
        classes=classes,
        in_channels=channels,
        image_size=size,
    )


def _cached(cfg: DatasetConfig, samples, test, indices, *, size: int, mode: str, mean, std, workers: int):
    """(train, val, test) CachedSplits over one decoded array of the train/ and val/ (or test/) images;
    None where dataset.cache: auto finds no room (the splits stream instead)."""
    from trainables.core.data.cache import CachedSplit, decoded

    tr, va, te = indices
    every = samples + (test if test is not None else [])
    test_index = np.arange(len(samples), len(every)) if test is not None else te

    def decode(files: list[str]):
        images = _ImageFiles([(f, 0) for f in files], _image_transform(size, augment=False), mode)
        loader = torch.utils.data.DataLoader(images, batch_size=64, num_workers=workers)
        start = 0
        for x, _ in loader:
            yield start, x.numpy()
            start += len(x)

    array = decoded([f for f, _ in every], size=size, mode=mode, decode=decode, required=cfg.cache == "node")
    if array is None:
        return None
    labels = np.array([y for _, y in every])
    return tuple(CachedSplit(array, idx, labels[idx].tolist(), mean=mean, std=std) for idx in (tr, va, test_index))
