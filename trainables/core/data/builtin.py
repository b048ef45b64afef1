"""The built-in datasets, loaded whole into tensors: digits, fake, mnist and cifar10."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from trainables.core.data.config import (
    CIFAR10_FILES,
    MNIST_FILES,
    DatasetConfig,
    DatasetNotFound,
    data_root,
    digits_file,
    image_size_for,
)
from trainables.core.data.tensors import Splits, tensor_splits
from trainables.core.models.registry import Preprocess


def digits(cfg: DatasetConfig, pre: Preprocess) -> Splits:
    import numpy as np

    rows = np.loadtxt(digits_file(), delimiter=",", dtype=np.float32)  # as sklearn.datasets.load_digits reads it
    x = torch.from_numpy(rows[:, :-1].reshape(-1, 1, 8, 8).copy()) / 16.0
    y = torch.from_numpy(rows[:, -1].astype(np.int64))
    return tensor_splits(x, y, classes=[str(c) for c in range(10)], cfg=cfg, pre=pre, default_size=32, flip=False)


def fake(cfg: DatasetConfig, pre: Preprocess) -> Splits:
    """torchvision's FakeData: random images, for smoke tests of the plumbing (nothing to learn)."""
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    size = image_size_for(cfg, pre, 32)
    images = FakeData(size=cfg.num_samples, image_size=(3, size, size), num_classes=cfg.num_classes,
                      random_offset=cfg.seed)
    xs, ys = zip(*((pil_to_tensor(img), int(label)) for img, label in images), strict=True)
    x = torch.stack(xs).float() / 255.0
    y = torch.tensor(ys, dtype=torch.int64)
    classes = [str(c) for c in range(cfg.num_classes)]
    return tensor_splits(x, y, classes=classes, cfg=cfg, pre=pre, default_size=size, flip=True)


def _torchvision_pair(cls, root: Path, *, download: bool, missing: str):
    """torchvision's (train, test) datasets of `cls`, or DatasetNotFound with `missing` and the cause."""
    try:
        return cls(str(root), train=True, download=download), cls(str(root), train=False)
    except (RuntimeError, OSError) as e:  # not found, or the download failed (no network: URLError)
        raise DatasetNotFound(f"{missing} [{'download failed' if download else 'torchvision'}: {e}]") from e


def mnist(cfg: DatasetConfig, pre: Preprocess) -> Splits:
    from torchvision.datasets import MNIST

    root = data_root(cfg)
    missing = (
        f"mnist: files not found. Put {', '.join(MNIST_FILES)} (the MNIST release's .gz files, "
        f"unpacked) in {root / 'MNIST' / 'raw'}/, or set `download: true` in the dataset section where a network exists"
    )
    train, test = _torchvision_pair(MNIST, root, download=cfg.download, missing=missing)
    as_x = lambda d: d.unsqueeze(1).float().div_(255)  # noqa: E731  (N, 28, 28) uint8 -> (N, 1, 28, 28) in [0, 1]
    classes = [str(c) for c in range(10)]  # as digits names them
    return tensor_splits(as_x(train.data), train.targets, classes=classes, cfg=cfg, pre=pre, default_size=28,
                         flip=False, test=(as_x(test.data), test.targets))


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain data and NumPy arrays, nothing else: a file that failed its checksum is data
    from anywhere, and a pickle may name any callable to run. (Python's "restricting globals".)"""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only arrays and plain data are read")


def _read_unchecked(path: Path) -> dict:
    with open(path, "rb") as f:
        data = _ArraysOnly(f, encoding="latin1").load()
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds a {type(data).__name__}, not a CIFAR-10 batch")
    return data


def _cifar10_unchecked(folder: Path):
    """(train images, train labels, test images, test labels, classes) from CIFAR-10 python batches whose
    bytes differ from the official release (re-pickled, or made by tests): read with _ArraysOnly."""
    import numpy as np

    def batch(names):
        parts = [_read_unchecked(folder / n) for n in names]
        x = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts]).reshape(-1, 3, 32, 32)
        y = [int(v) for p in parts for v in p.get("labels", p.get("fine_labels", []))]
        if len(y) != len(x):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        return x.transpose(0, 2, 3, 1), y

    train_x, train_y = batch(CIFAR10_FILES[:5])
    test_x, test_y = batch(CIFAR10_FILES[5:6])
    classes = [str(c) for c in _read_unchecked(folder / CIFAR10_FILES[6])["label_names"]]
    return train_x, train_y, test_x, test_y, classes


def cifar10(cfg: DatasetConfig, pre: Preprocess) -> Splits:
    from torchvision.datasets import CIFAR10

    root = data_root(cfg)
    folder = root / CIFAR10.base_folder
    missing = (
        f"cifar10: files not found. Put {', '.join(CIFAR10_FILES)} (cifar-10-python.tar.gz, unpacked) "
        f"in {folder}/, or set `download: true` in the dataset section where a network exists"
    )
    if all((folder / f).is_file() for f in CIFAR10_FILES):
        try:  # the real path: torchvision verifies the official md5s
            train, test = CIFAR10(str(root), train=True), CIFAR10(str(root), train=False)
        except RuntimeError:
            warnings.warn(
                f"cifar10: files in {folder} differ from the official release (md5); reading them as they are",
                stacklevel=2)
            try:
                train_x, train_y, test_x, test_y, classes = _cifar10_unchecked(folder)
            except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, IndexError) as e:
                raise DatasetNotFound(f"cifar10: unreadable files in {folder} ({e}). {missing}") from None
            return _cifar_splits(train_x, train_y, test_x, test_y, classes, cfg, pre)
    else:
        train, test = _torchvision_pair(CIFAR10, root, download=cfg.download, missing=missing)
    return _cifar_splits(train.data, train.targets, test.data, test.targets, list(train.classes), cfg, pre)


def _cifar_splits(train_x, train_y, test_x, test_y, classes, cfg: DatasetConfig, pre: Preprocess) -> Splits:
    as_x = lambda d: torch.from_numpy(d).permute(0, 3, 1, 2).float().div_(255)  # noqa: E731  NHWC uint8 -> NCHW
    as_y = lambda t: torch.tensor(t, dtype=torch.int64)  # noqa: E731
    return tensor_splits(as_x(train_x), as_y(train_y), classes=classes, cfg=cfg, pre=pre, default_size=32, flip=True,
                         test=(as_x(test_x), as_y(test_y)))
