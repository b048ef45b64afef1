"""`load_splits`: a dataset's seeded train/val/test splits by name (the loaders need torch)."""
from __future__ import annotations

import functools
from typing import Callable

from trainables.core.data.builtin import cifar10, digits, fake, mnist
from trainables.core.data.config import DatasetConfig
from trainables.core.data.folders import imagefolder
from trainables.core.data.tensors import Splits
from trainables.core.models.registry import Preprocess

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
