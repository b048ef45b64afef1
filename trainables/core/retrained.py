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
    package_error: str = ""  # why there is no MLflow model folder (the weights are kept all the same)


def packed(retrained, package: Package) -> Packed:
    """engine.Retrained as the driver takes it (called where the model is, with torch). A model that cannot
    be packed keeps its weights and scores: the training is not lost for want of an MLflow model."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(retrained.model.state_dict(), buf)
    try:
        files, error = package(retrained.model, retrained.example), ""
    except Exception as e:  # noqa: BLE001 - whatever MLflow or pickling raises, the weights stay
        files, error = {}, f"{type(e).__name__}: {str(e)[:300]}"
    return Packed(retrained.test_loss, retrained.test_acc, retrained.history, retrained.classes,
                  retrained.precision, buf.getvalue(), files, error)
