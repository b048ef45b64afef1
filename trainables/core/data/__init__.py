"""Datasets by name (`load_splits`), seeded splits, transforms and batch iterators. Pure PyTorch: no ray here.

Small datasets live as one normalised tensor per split (tensors.py, builtin.py); image folders
stream through DataLoader workers (folders.py). Importers use this package's names, not its modules'.
The `dataset:` section, file names and the seeded split need no torch and are imported at once
(the driver validates specs with them); the rest is imported on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from trainables.core.data.config import (
    CIFAR10_FILES,
    DEFAULT_ROOT,
    MNIST_FILES,
    DatasetConfig,
    DatasetName,
    DatasetNotFound,
    data_root,
    image_size_for,
)
from trainables.core.data.stratify import TooFewImages, split_indices, stratified_split

# name -> the module (of this package) that holds it: these need torch
_LAZY = {
    **dict.fromkeys(("cifar10", "digits", "fake", "mnist"), "builtin"),
    **dict.fromkeys(("FOLDER_DEFAULT_SIZE", "FolderSplit", "imagefolder"), "folders"),
    **dict.fromkeys(("Split", "Splits", "TensorSplit", "augment_batch", "shard_order", "tensor_splits"), "tensors"),
    **dict.fromkeys(("LOADERS", "load_splits"), "loaders"),
}

__all__ = [
    "CIFAR10_FILES", "DEFAULT_ROOT", "MNIST_FILES", "DatasetConfig", "DatasetName", "DatasetNotFound", "TooFewImages",
    "data_root", "image_size_for", "split_indices", "stratified_split", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
