"""The `dataset:` section of a spec (DatasetConfig), the missing-files error and the default data folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainables.core.numbers import reject_bools

if TYPE_CHECKING:
    from trainables.core.models.registry import Preprocess

DatasetName = Literal["digits", "mnist", "cifar10", "imagefolder", "inaturalist", "fake"]


class DatasetConfig(BaseModel):
    """The `dataset:` section of a spec."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    _no_bools = field_validator("*", mode="before")(reject_bools)  # `limit: true` is not 1 image

    name: DatasetName = "digits"
    root: str | None = None  # folder holding the files (mnist, cifar10, image folders)
    image_size: int | None = Field(default=None, ge=1, le=4096)  # None: the dataset's own default
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)  # of the training split, stratified
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)  # only for datasets without a test split
    limit: int | None = Field(default=None, ge=10)  # keep at most this many training images (smoke runs)
    download: bool = False  # mnist / cifar10: fetch into root where a network exists
    num_classes: int = Field(default=10, ge=2, le=100_000)  # fake only
    num_samples: int = Field(default=600, ge=20, le=10_000_000)  # fake only
    seed: int = Field(default=0, ge=0, le=2**32 - 1)  # the split seed: identical splits in every trial
    workers: int | None = Field(default=None, ge=0, le=64)  # image folders: DataLoader workers (None: min(4, CPUs))
    # image folders: images that do not decode are left out (with a warning and a count) instead of refused
    skip_bad_images: bool = False
    exclude: tuple[str, ...] = ()  # image folders: files left out (paths under root); the driver fills it
    # image folders: auto decodes every image once per node into a cache the trials share (core/data/cache.py)
    # where there is room, else streams; node insists on the cache; none decodes every image every epoch
    cache: Literal["auto", "node", "none"] = "auto"

    @field_validator("root")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        # Made absolute where the spec is read (the driver): Ray runs trials in their own cwd.
        return os.path.abspath(os.path.expanduser(v)) if v else v

    @model_validator(mode="after")
    def _root_needed(self) -> "DatasetConfig":
        if self.name in ("imagefolder", "inaturalist") and not self.root:
            raise ValueError(
                f"dataset {self.name!r} needs `root`: a folder with train/ (and val/ or test/) class folders")
        return self


class DatasetNotFound(ValueError):
    """A dataset's files are not where the spec points; the message says what to put where."""


# mnist / cifar10 without `root`: an absolute folder, since Ray may run trials in another cwd.
DEFAULT_ROOT = Path(os.environ.get("TRAINABLES_DATA", "~/.cache/trainables/data")).expanduser()
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta")


def data_root(cfg: DatasetConfig) -> Path:
    """Where a built-in dataset's files are: dataset.root, else the default data folder."""
    return Path(cfg.root).expanduser() if cfg.root else DEFAULT_ROOT


def image_size_for(cfg: DatasetConfig, pre: Preprocess, default: int) -> int:
    """The model's required size, else the spec's, else the dataset's own raised to what the model
    survives (mnist's 28 px would not get through the cnn's five poolings). An explicit size that
    is too small is left for the model to reject with its own message."""
    return pre.image_size or cfg.image_size or max(default, pre.min_image_size)


def digits_file() -> Path:
    """scikit-learn's bundled digits.csv.gz, found without importing scikit-learn (whose datasets
    package costs a trial process ~1 s and ~70 MB; the file is 1,797 rows of 64 pixels and a label)."""
    import importlib.util

    found = importlib.util.find_spec("sklearn")
    for folder in (found.submodule_search_locations or []) if found else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    raise DatasetNotFound("digits: scikit-learn's bundled digits.csv.gz was not found; install scikit-learn")


def digits_labels():
    """The digits' labels (numpy, the file's last column): what preflight splits as every trial will."""
    import numpy as np

    return np.loadtxt(digits_file(), delimiter=",", usecols=64, dtype=np.int64)
