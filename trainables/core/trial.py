"""One trial's config split into the model's params and the shared training keys; model and data built.

This is the one place that knows which config key goes where: the model registry owns the
model's keys, `Training` the keys every model shares, and `build` puts them together.
"""
from __future__ import annotations

from typing import Any

import torch

from trainables.core.data import DatasetConfig, Splits, TensorSplit, load_splits
from trainables.core.models import get_model
from trainables.core.training import TRAINING_KEYS, Training


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class HostSplit:
    """A tensor split kept in host memory (pinned for a GPU), its batches copied to `device` one
    at a time: performance.data_on_device: false."""

    def __init__(self, split: TensorSplit, device: torch.device):
        pin = device.type == "cuda" and torch.cuda.is_available()
        self.split = TensorSplit(split.x.pin_memory(), split.y.pin_memory(), split.flip) if pin else split
        self.device = device

    def __len__(self) -> int:
        return len(self.split)

    def to(self, device: torch.device) -> "HostSplit":
        return self if torch.device(device) == self.device else HostSplit(self.split, torch.device(device))

    def batches(self, batch_size, **kw):
        for x, y in self.split.batches(batch_size, **kw):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def build(config: dict[str, Any], dataset: DatasetConfig, device: torch.device | None = None, *,
          data_on_device: bool = True):
    """(model, splits, training) for one trial's config: the chosen model's params plus the shared keys.
    data_on_device=False keeps tensor datasets in host memory and copies each batch to the device."""
    entry = get_model(config.get("model", "cnn"))
    model_keys = set(entry.params.model_fields)
    params = entry.params(**{k: v for k, v in config.items() if k in model_keys})
    shared = {k: v for k, v in config.items() if k in TRAINING_KEYS}
    training = Training(**{**entry.training_defaults(params), **shared})
    device = device or pick_device()
    splits = load_splits(dataset, entry.preprocess(params))
    if data_on_device or device.type == "cpu":
        splits = splits.to(device)
    else:
        host = lambda s: HostSplit(s, device) if isinstance(s, TensorSplit) else s.to(device)  # noqa: E731
        splits = Splits(host(splits.train), host(splits.val), host(splits.test), splits.classes, splits.in_channels,
                        splits.image_size)
    torch.manual_seed(training.seed)
    model = entry.build(params, num_classes=splits.num_classes, in_channels=splits.in_channels,
                        image_size=splits.image_size)
    return model.to(device), splits, training


