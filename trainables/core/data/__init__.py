"""Datasets by name (`load_splits`), seeded splits, transforms and batch iterators. Pure PyTorch: no ray here.

Small datasets live as one normalised tensor per split (tensors.py, builtin.py); image folders
stream through DataLoader workers (folders.py). Importers use this package's names, not its modules'.
"""
from __future__ import annotations

import functools
from typing import Callable

from trainables.core.data.builtin import CIFAR10_FILES, MNIST_FILES, cifar10, digits, fake, mnist
from trainables.core.data.config import DEFAULT_ROOT, DatasetConfig, DatasetName, DatasetNotFound
from trainables.core.data.folders import FOLDER_DEFAULT_SIZE, FolderSplit, imagefolder
from trainables.core.data.tensors import (
    Split,
    Splits,
    TensorSplit,
    augment_batch,
    image_size_for,
    shard_order,
    split_indices,
    stratified_split,
    tensor_splits,
)
from trainables.core.models.registry import Preprocess

__all__ = [
    "CIFAR10_FILES", "DEFAULT_ROOT", "FOLDER_DEFAULT_SIZE", "LOADERS", "MNIST_FILES", "DatasetConfig", "DatasetName",
    "DatasetNotFound", "FolderSplit", "Split", "Splits", "TensorSplit", "augment_batch", "image_size_for",
    "load_splits", "shard_order", "split_indices", "stratified_split", "tensor_splits",
]

NO_PREPROCESS = Preprocess()  # the default: the model asks nothing of the input (a singleton: ruff B008)

LOADERS: dict[str, Callable[[DatasetConfig, Preprocess], Splits]] = {
    "digits": digits,
    "mnist": mnist,
    "cifar10": cifar10,
    "imagefolder": imagefolder,
    "inaturalist": imagefolder,  # the seeds' iNaturalist 12K subset: an image folder
    "fake": fake,
}


@functools.lru_cache(maxsize=4)
def load_splits(cfg: DatasetConfig, pre: Preprocess = NO_PREPROCESS) -> Splits:
    """The seeded train/val/test splits of a dataset; cached so a reused trial actor loads once."""
    try:
        loader = LOADERS[cfg.name]
    except KeyError:
        raise ValueError(f"dataset {cfg.name!r} is not available; expected one of {sorted(LOADERS)}") from None
    return loader(cfg, pre)
