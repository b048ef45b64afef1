"""`finetune`: a torchvision backbone with a new head and a freezing strategy (seeds 001, 003, 004).

weights: ``imagenet`` (torchvision's DEFAULT weight enum; its transforms set the input size and
normalisation), ``none`` (random init) or a PATH to a state_dict, loaded with weights_only=True:
saved from a torchvision model (its 1000-class head is then dropped) or from this model.

Freezing counts *parameterised layers*: modules that directly own parameters (conv, norm,
linear), in registration order, which follows the forward pass for these backbones. The new
head is the last one. Frozen layers get requires_grad=False, and frozen BatchNorm layers stay
in eval mode whenever the model trains, so their running statistics are kept too.
"""
from __future__ import annotations

import os
from urllib.parse import urlparse

import torch
from torch import nn

from trainables.core.models.catalog import FinetuneParams

# Prefixes a saved state_dict may carry: this wrapper, DataParallel/DDP, torch.compile.
_KEY_PREFIXES = ("backbone.", "module.", "_orig_mod.")


def parameterised_layers(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(name, module) for every module that directly owns parameters, in registration order."""
    return [
        (n, m) for n, m in module.named_modules(prefix=prefix) if next(m.parameters(recurse=False), None) is not None
    ]


def layer_table(model: nn.Module) -> list[tuple[str, int, bool]]:
    """(layer name, parameter count, trainable) per parameterised layer, input to output."""
    return [
        (
            name,
            sum(p.numel() for p in m.parameters(recurse=False)),
            any(p.requires_grad for p in m.parameters(recurse=False)),
        )
        for name, m in parameterised_layers(model)
    ]


def trainable_layers(model: nn.Module) -> list[str]:
    """Names of the layers that train, input to output (same names as engine.count_params)."""
    return [name for name, _, trains in layer_table(model) if trains]


class FinetuneModel(nn.Module):
    """A torchvision backbone whose head was replaced, with some layers frozen."""

    def __init__(self, backbone: nn.Module, *, head: str, frozen: list[str]):
        super().__init__()
        self.backbone = backbone
        self.head_name = head  # e.g. "fc", "classifier.3" (inside the backbone)
        self.frozen = tuple(frozen)  # layer names inside the backbone
        modules = dict(backbone.named_modules())
        for name in self.frozen:
            for p in modules[name].parameters(recurse=False):
                p.requires_grad_(False)
        self._frozen_bn = tuple(n for n in self.frozen if isinstance(modules[n], nn.modules.batchnorm._BatchNorm))
        self.train(self.training)

    def train(self, mode: bool = True) -> "FinetuneModel":
        super().train(mode)
        # A frozen BN in train mode would still update its running mean/var from this data.
        for name in self._frozen_bn:
            self.backbone.get_submodule(name).eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def _head_name(net: nn.Module) -> str:
    """The classifier: the last Linear (resnet `fc`, mobilenet/efficientnet `classifier.N`)."""
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not names or parameterised_layers(net)[-1][0] != names[-1]:
        raise ValueError(f"cannot find the classifier head of {type(net).__name__}")
    return names[-1]


def _imagenet_backbone(name: str) -> nn.Module:
    import torchvision

    w = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return torchvision.models.get_model(name, weights=w)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a corrupt cached file a RuntimeError
        filename = os.path.basename(urlparse(w.url).path)
        path = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
        raise RuntimeError(
            f"could not load the ImageNet weights {w} for {name}: {e}. torchvision looks for them at {path}; "
            f"without a network, download {w.url} elsewhere and put it there (or set TORCH_HOME), "
            f"or use weights: none or a state_dict path"
        ) from e


def _strip_prefixes(key: str) -> str:
    for prefix in _KEY_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def load_weights_file(net: nn.Module, path: str, *, head: str) -> None:
    """Load a state_dict file into `net` (head already replaced); a head of another shape is skipped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"finetune weights {path!r}: no such file (weights is 'imagenet', 'none' or a state_dict path)"
        )
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):  # a trial checkpoint's state
        sd = sd["model"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"finetune weights {path!r} is not a state_dict (a dict of tensors)")
    sd = {_strip_prefixes(k): v for k, v in sd.items()}
    own = net.state_dict()
    head_keys = {k for k in own if k.startswith(head + ".")}
    # Saved before the head was replaced (e.g. torchvision's 1000 classes): keep our new head.
    if any(k in sd and sd[k].shape != own[k].shape for k in head_keys):
        sd = {k: v for k, v in sd.items() if k not in head_keys}
    try:
        missing, unexpected = net.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches outside the head
        raise ValueError(f"finetune weights {path!r} do not fit this backbone: {e}") from e
    missing = [k for k in missing if k not in head_keys]
    if missing or unexpected:
        raise ValueError(
            f"finetune weights {path!r} do not fit this backbone: missing {missing[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )


def check_weights_file(path: str, *, backbone: str) -> None:
    """What load_weights_file would say of `path` for `backbone`, on the meta device: no memory for the
    model, no training; the file itself is read (weights_only: never code)."""
    import pickle
    import warnings

    import torchvision

    with torch.device("meta"):
        net = torchvision.models.get_model(backbone, weights=None)
    try:
        with warnings.catch_warnings():  # "copying into a meta parameter is a no-op": the point here
            warnings.simplefilter("ignore", UserWarning)
            load_weights_file(net, path, head=_head_name(net))
    except (RuntimeError, pickle.UnpicklingError, EOFError) as e:  # not a torch file, or a truncated one
        why = (str(e).strip().splitlines() or [f"{type(e).__name__} (an empty or cut-short file)"])[0][:200]
        raise ValueError(f"finetune weights {path!r} cannot be read: {why}") from None


def frozen_layers(names: list[str], head: str, p: FinetuneParams) -> list[str]:
    """Which of the parameterised layers (input to output, head last) a strategy freezes."""
    body = [n for n in names if n != head]
    if p.freeze == "none":
        return []
    if p.freeze == "all_but_head":
        return body
    if p.freeze == "first_fraction":
        return body[: round(p.freeze_fraction * len(body))]
    if p.freeze == "first_k":
        return body[: p.k]
    if p.freeze == "last_k_trainable":
        if p.k == 0:
            raise ValueError("freeze 'last_k_trainable' with k=0 leaves nothing to train")
        return names[: max(0, len(names) - p.k)]
    return [head]  # head_frozen


def finetune(p: FinetuneParams, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    import torchvision

    if in_channels != 3:
        raise ValueError(
            f"finetune backbones take 3-channel input (its Preprocess asks for channels=3), got {in_channels}"
        )
    net = (_imagenet_backbone(p.backbone) if p.weights == "imagenet"
           else torchvision.models.get_model(p.backbone, weights=None))
    head = _head_name(net)
    old = net.get_submodule(head)
    net.set_submodule(head, nn.Linear(old.in_features, num_classes))
    if p.weights not in ("imagenet", "none"):
        load_weights_file(net, p.weights, head=head)
    names = [n for n, _ in parameterised_layers(net)]
    return FinetuneModel(net, head=head, frozen=frozen_layers(names, head, p))
