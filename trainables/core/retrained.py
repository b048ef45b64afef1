"""A retrained model as the driver receives it: scores, history, and the model as bytes.

The driver never imports torch (~500 MB and 1.5 s of a `tune run`): where the model was trained,
`packed` turns engine.Retrained into this record, its weights a saved state_dict and the model an
MLflow model folder that the driver writes into the sweep folder and logs as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# (model, one input) -> the model as an MLflow model folder: relative path -> content
Package = Callable[[Any, Any], dict[str, bytes]]


@dataclass
class Packed:
    test_loss: float
    test_acc: float
    history: list[dict[str, Any]]  # one row per epoch, as fit reports them
    classes: list[str]
    precision: str = "fp32"
    weights: bytes = b""  # torch.save of the model's state_dict (the sweep's best_model.pt)
    files: dict[str, bytes] = field(default_factory=dict)  # the MLflow model folder (the sweep's best_model/)


def packed(retrained, package: Package) -> Packed:
    """engine.Retrained as the driver takes it (called where the model is, with torch)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(retrained.model.state_dict(), buf)
    return Packed(retrained.test_loss, retrained.test_acc, retrained.history, retrained.classes,
                  retrained.precision, buf.getvalue(), package(retrained.model, retrained.example))
