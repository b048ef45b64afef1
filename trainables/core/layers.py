"""Activation and normalisation names -> nn.Module classes: the only such map.

Importing it needs no torch (the names are what specs are validated against); building a layer does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import nn

Activation = Literal["relu", "leaky_relu", "gelu", "silu", "mish", "tanh", "sigmoid"]
Norm = Literal["batch", "group", "none"]

_ACTIVATIONS: dict[str, str] = {  # name -> the torch.nn class of that name
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "gelu": "GELU",
    "silu": "SiLU",
    "mish": "Mish",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
}


def create_act(name: str) -> nn.Module:
    """A fresh activation module by name (see ``Activation``)."""
    from torch import nn

    try:
        return getattr(nn, _ACTIVATIONS[name])()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}") from None


def create_norm2d(name: str, channels: int, *, groups: int = 8) -> nn.Module:
    """A 2-d normalisation layer for ``channels`` feature maps; ``none`` is an identity."""
    from torch import nn

    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        # The largest divisor of channels not above `groups`, so any width works.
        g = max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)
        return nn.GroupNorm(g, channels)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; expected one of ['batch', 'group', 'none']")


def create_norm1d(name: str, features: int) -> nn.Module:
    """A normalisation layer for dense features; ``group`` uses a single group (LayerNorm-like)."""
    from torch import nn

    if name == "batch":
        return nn.BatchNorm1d(features)
    if name == "group":
        return nn.GroupNorm(1, features)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; expected one of ['batch', 'group', 'none']")
