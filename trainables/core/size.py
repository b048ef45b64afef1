"""What a configuration's model costs before it trains: parameters and activations, built on PyTorch's meta
device (no memory, no data, no weights downloaded), for `constraints:`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trainables.core.data import DatasetConfig, image_size_for
from trainables.core.models import get_model

# the names constraints may use besides parameters (image_size: the input the model gets, as the trial's)
SIZES = ("total_params", "trainable_params", "activations", "image_size")
# built-in dataset -> (classes, channels, its own image size) as the loaders make them (fake: num_classes)
BUILTIN_SHAPES = {"digits": (10, 1, 32), "mnist": (10, 1, 28), "cifar10": (10, 3, 32), "fake": (0, 3, 32)}


def dataset_shape(cfg: DatasetConfig) -> tuple[int, int, int]:
    """(classes, channels, image size) of a dataset without loading it (an image folder: its class folders)."""
    if cfg.name == "fake":
        return cfg.num_classes, 3, 32
    if cfg.name in BUILTIN_SHAPES:
        return BUILTIN_SHAPES[cfg.name]
    root = Path(cfg.root or ".").expanduser()
    train = root / "train" if (root / "train").is_dir() else next(
        (d / "train" for d in root.iterdir() if (d / "train").is_dir()), root / "train") if root.is_dir() else root
    classes = sum(1 for d in train.iterdir() if d.is_dir()) if train.is_dir() else 1
    from trainables.core.data import FOLDER_DEFAULT_SIZE

    return classes, 3, FOLDER_DEFAULT_SIZE


def model_size(config: dict[str, Any], dataset: DatasetConfig) -> dict[str, int]:
    """total_params, trainable_params, activations (values every layer outputs for one example) and the
    image_size the model is given (the spec's, the model's own, or the dataset's)."""
    import torch

    entry = get_model(config.get("model", "cnn"))
    fields = entry.params.model_fields
    values = {k: v for k, v in config.items() if k in fields}
    pre = entry.preprocess(entry.params(**values))  # the input the trial will give it (imagenet weights: 224 px)
    if "weights" in fields:
        values["weights"] = "none"  # the same shapes, nothing to download or read
    params = entry.params(**values)
    classes, channels, own_size = dataset_shape(dataset)
    size = image_size_for(dataset, pre, own_size)
    channels = pre.channels or channels
    with torch.device("meta"):
        model = entry.build(params, num_classes=classes, in_channels=channels, image_size=size)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        outputs = [0]

        def count(module, inputs, output):
            if isinstance(output, torch.Tensor) and not list(module.children()):
                outputs[0] += output[0].numel()

        hooks = [m.register_forward_hook(count) for m in model.modules()]
        try:
            model.eval()(torch.empty(1, channels, size, size))
        finally:
            for h in hooks:
                h.remove()
    return {"total_params": total, "trainable_params": trainable, "activations": outputs[0], "image_size": size}


def batch_norm_layers(config: dict[str, Any], dataset: DatasetConfig) -> int:
    """How many BatchNorm layers of the configuration's model train (built on the meta device; frozen ones stay
    in eval mode): each needs two examples or more in a training batch."""
    import torch

    entry = get_model(config.get("model", "cnn"))
    values = {k: v for k, v in config.items() if k in entry.params.model_fields}
    pre = entry.preprocess(entry.params(**values))
    if "weights" in entry.params.model_fields:
        values["weights"] = "none"
    classes, channels, own_size = dataset_shape(dataset)
    with torch.device("meta"):
        model = entry.build(entry.params(**values), num_classes=classes, in_channels=pre.channels or channels,
                            image_size=image_size_for(dataset, pre, own_size))
    model.train()
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())
