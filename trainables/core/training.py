"""The training keys every model shares (Training) and a trial's hyperparameters; no torch.

The model registry owns each model's keys, `Training` the shared ones; core/trial.py puts them together.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trainables.core.numbers import reject_bools


class Training(BaseModel):
    """The training keys every model shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _no_bools = field_validator("*", mode="before")(reject_bools)  # `batch_size: true` is not 1

    lr: float = Field(default=1e-3, gt=0.0, le=10.0)
    batch_size: int = Field(default=64, ge=1, le=65536)
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)  # sgd and rmsprop
    weight_decay: float = Field(default=0.0, ge=0.0, lt=1.0)
    lr_schedule: Literal["none", "cosine", "step"] = "none"
    lr_step_epochs: int = Field(default=0, ge=0)  # step schedule: decay every N epochs (0: a third of the run)
    lr_gamma: float = Field(default=0.1, gt=0.0, le=1.0)  # step schedule: decay factor
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    augment: bool = False
    seed: int = Field(default=0, ge=0, le=2**32 - 1)  # NumPy's range; epochs are added to it for batches


TRAINING_KEYS = frozenset(Training.model_fields)



def clean_config(config: dict[str, Any]) -> dict[str, Any]:
    """The trial's hyperparameters: conditional parameters of other branches (None) dropped."""
    return {k: v for k, v in config.items() if v is not None}
