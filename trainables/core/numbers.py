"""Numbers read from files: a YAML `true` or `false` must not fill a number field (pydantic's lax mode reads
true as 1), and a value from a damaged file is a finite number or nothing (`finite`).

`epochs: true` would run one epoch, `cpu: true` ask for one CPU, `dense_units: true` build one unit:
a silently wrong sweep. Each settings model of the spec (its sections, the dataset, the training
keys, every model's hyperparameters) runs `reject_bools` before its fields are validated. Strict
mode would do it too, but would also refuse a YAML list where a field holds a tuple.
"""
from __future__ import annotations

import math
import typing
from typing import Any

from pydantic import ValidationInfo


def _types(annotation: Any):
    """The annotation and every type inside it (Optional's, a list's, Annotated's)."""
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _types(arg)


def _wants_number(annotation: Any) -> bool:
    """Whether the annotation takes an int or a float (possibly in a list or Optional) and never a bool."""
    types = list(_types(annotation))
    return any(t in (int, float) for t in types) and bool not in types


def _holds_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value))


def reject_bools(cls, value: Any, info: ValidationInfo) -> Any:
    """A pydantic before-validator for every field ("*"): a bool where a number is expected is an error."""
    field = cls.model_fields.get(info.field_name) if info.field_name else None
    if field is not None and _holds_bool(value) and _wants_number(field.annotation):
        raise ValueError("expected a number, not true or false")
    return value


def finite(v: Any) -> float | None:
    """v as a finite float; None for text, a bool, NaN, inf or an int past float's range (a damaged file)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    try:
        v = float(v)
    except OverflowError:
        return None
    return v if math.isfinite(v) else None
