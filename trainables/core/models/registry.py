"""One registry of model names: each entry knows its hyperparameters and where its builder is.

Entries are declared in catalog.py, which needs no torch: the driver validates specs against
them and never builds a model. The builder, an nn.Module factory, is imported from its module
only when a model is built (in a trial's process).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from pydantic import BaseModel, ConfigDict, field_validator

from trainables.core.numbers import reject_bools

if TYPE_CHECKING:
    from torch import nn


class ModelParams(BaseModel):
    """A model's own hyperparameters: closed (unknown keys are errors), every field defaulted."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _no_bools = field_validator("*", mode="before")(reject_bools)  # `dense_units: true` is not 1


@dataclass(frozen=True)
class Preprocess:
    """What a model asks of its input; ``None`` leaves the dataset's own choice."""

    channels: int | None = None  # e.g. 3 for ImageNet backbones: grayscale is repeated
    mean: tuple[float, ...] | None = None  # normalisation the weights were trained with
    std: tuple[float, ...] | None = None
    image_size: int | None = None  # a size the model needs, overriding the dataset's
    min_image_size: int = 1  # smallest input the architecture survives


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: str  # "module:function", function(params, *, num_classes, in_channels, image_size) -> nn.Module
    params: type[ModelParams]
    # Training settings this model was designed with (e.g. seed 002's SGD, lr 0.1, batch 10);
    # the sweep's own parameters override them.
    training_defaults: Callable[[ModelParams], dict[str, Any]] = field(default=lambda p: {})
    preprocess: Callable[[ModelParams], Preprocess] = field(default=lambda p: Preprocess())

    @property
    def build(self) -> Callable[..., nn.Module]:
        """The builder, imported now (with torch)."""
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    builder: str,
    params: type[ModelParams],
    training_defaults: Callable[[Any], dict[str, Any]] | None = None,
    preprocess: Callable[[Any], Preprocess] | None = None,
) -> None:
    """Add a model: its name, its builder ("module:function") and its hyperparameters."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    kwargs: dict[str, Any] = {}
    if training_defaults is not None:
        kwargs["training_defaults"] = training_defaults
    if preprocess is not None:
        kwargs["preprocess"] = preprocess
    _REGISTRY[name] = ModelEntry(name=name, builder=builder, params=params, **kwargs)


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {model_names()}") from None


def build_model(name: str, *, num_classes: int, in_channels: int, image_size: int, **hparams: Any) -> nn.Module:
    """Build a registered model from plain keyword hyperparameters (validated here)."""
    entry = get_model(name)
    return entry.build(entry.params(**hparams), num_classes=num_classes, in_channels=in_channels, image_size=image_size)
