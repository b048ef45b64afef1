"""The one conversion of the search space to Optuna: distributions, define-by-run, starting points.

The searcher (OptunaSearch, through `DefineByRun`) and the report's importance (a study
rebuilt from the trials) both go through `distribution`, so they see the same space.
"""
from __future__ import annotations

from typing import Any, Mapping

from trainables.spec.params import label
from trainables.spec.space import Choice, Drawn, Fixed, Int, Param, Uniform, can_be, ordered


def distribution(p: Param):
    """The Optuna distribution of a searched parameter (categorical values as labels)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(p, Choice):
        if p.grid:
            raise ValueError("grid is not supported with optuna")
        return CategoricalDistribution([label(v) for v in p.values])
    if isinstance(p, Int):
        return IntDistribution(p.low, p.high, log=p.log, step=p.step)
    if isinstance(p, Uniform):
        return FloatDistribution(p.low, p.high, log=p.log, step=p.q)
    if isinstance(p, Drawn):  # the probability whose value the trial sees (Drawn.ppf): the prior's shape kept
        return FloatDistribution(0.0, 1.0)
    raise TypeError(f"{type(p).__name__} has no distribution")


def suggest(trial, name: str, p: Param) -> Any:
    """The value an Optuna trial draws for p (the original value, not its label)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(p, Fixed):
        return p.value
    if isinstance(p, Drawn):
        return p.ppf(trial.suggest_float(name, 0.0, 1.0))
    d = distribution(p)
    if isinstance(d, CategoricalDistribution):
        labels = list(d.choices)
        return p.values[labels.index(trial.suggest_categorical(name, labels))]
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(name, d.low, d.high, log=d.log, step=d.step)


class DefineByRun:
    """A define-by-run function for OptunaSearch: suggests searched values, returns all values.

    A class, not a closure, because OptunaSearch pickles it with its state.
    """

    def __init__(self, space: Mapping[str, Param]):
        self.space, self.names = dict(space), ordered(space)

    def __call__(self, trial) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for name in self.names:
            p = self.space[name]
            if p.applies(config):  # else: a conditional parameter of another branch, absent here
                config[name] = suggest(trial, name, p)
        return config


def encode_point(space: Mapping[str, Param], point: Mapping[str, Any]) -> dict[str, Any]:
    """A `points_to_evaluate` entry as Optuna will see it (categorical values as labels)."""
    return {k: _encode(space[k], v) for k, v in point.items() if space[k].searched}


def _encode(p: Param, v: Any) -> Any:
    return label(v) if isinstance(p, Choice) else p.cdf(v) if isinstance(p, Drawn) else v


def encode_trial(space: Mapping[str, Param], config: Mapping[str, Any]) -> dict[str, Any]:
    """A finished trial's searched values that the space can give, as Optuna params (a PBT trial may
    have stepped outside the bounds, an earlier sweep may have searched another range or step: such
    values are left out)."""
    out = {}
    for k, p in space.items():
        if p.searched and k in config and can_be(p, config[k]):
            out[k] = _encode(p, config[k])
    return out
