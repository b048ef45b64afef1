"""How the report shows and selects values: labels, number formats, scored trials, status colours."""
from __future__ import annotations

import math
from typing import Any

from trainables.spec.space import Drawn, Int, Param, Uniform

STATUS_COLORS = {"completed": "tab:blue", "stopped early": "tab:orange", "errored": "tab:red"}


LABEL_CHARS = 80  # a label longer than this is cut (a list of 200,000 values kept matplotlib busy for minutes)


def label(v: Any) -> str:
    """A short label for plots and the leaderboard: booleans and None as YAML writes them (`true`,
    `false`, `null`: what the best-hyperparameters table and `tune best` show), lists as [a,b,c],
    floats with 3 significant digits; at most LABEL_CHARS characters."""
    text = _label(v)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 3] + "..."


def _label(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):  # elements in full: lists that differ past 3 digits stay apart
        return "[" + ",".join(str(x) if isinstance(x, float) else _label(x) for x in v[:LABEL_CHARS]) + "]"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def fmt(x: float | None, digits: int = 4) -> str:
    """A metric with fixed decimals; "-" where there is none."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def numeric(p: Param) -> bool:
    return isinstance(p, (Uniform, Int)) or (isinstance(p, Drawn) and p.numeric)


def log_scale(p: Param) -> bool:
    return bool(getattr(p, "log", False))


def scored(sweep) -> list:
    """Trials with a value of the metric, in trial order."""
    return [t for t in sweep.trials if t.value(sweep.spec.metric) is not None]


def epochs_of(history) -> list[int]:
    col = "epoch" if "epoch" in history.columns else "training_iteration"
    return [int(x) for x in history[col]]


def by_model(sweep) -> dict[str, list]:
    """Ranked trials grouped by their `model`, best first within each group."""
    groups: dict[str, list] = {}
    for t in sweep.ranked():
        groups.setdefault(str(t.config.get("model", "?")), []).append(t)
    return groups
