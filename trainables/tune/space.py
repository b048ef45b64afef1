"""The search space as Ray Tune domains (random search; `grid:` values crossed by Ray)."""
from __future__ import annotations

from typing import Any, Mapping

from trainables.spec.space import Choice, Drawn, Fixed, Int, Param, ParamError, Uniform, ordered


def ray_space(space: Mapping[str, Param], *, seed: int | None) -> dict[str, Any]:
    """A param_space for Ray's BasicVariantGenerator (random search; `grid:` values crossed)."""
    import numpy as np
    from ray import tune

    out: dict[str, Any] = {}
    for i, name in enumerate(ordered(space)):
        p = space[name]
        domain = _ray_domain(tune, p)
        if not p.when and not isinstance(domain, _Draw):
            out[name] = domain
        elif isinstance(domain, dict):
            raise ParamError("a grid parameter cannot have `when`: grids are expanded before any value is known",
                             "when", name=name)
        else:
            # Ray has no conditionals nor these priors: draw inside sample_from, None (absent) where the
            # condition fails.
            rng = np.random.default_rng(None if seed is None else [seed, i])
            out[name] = tune.sample_from(_conditional(p, domain, rng))
    return out


def _conditional(p: Param, domain: Any, rng):
    def sample(spec):
        if not p.applies(spec.config):
            return None
        return domain.sample(random_state=rng) if hasattr(domain, "sample") else domain

    return sample


class _Draw:
    """A Drawn parameter as a Ray-style domain: ppf of a uniform draw from Tune's seeded generator."""

    def __init__(self, p: Drawn):
        self.p = p

    def sample(self, random_state):
        return self.p.ppf(random_state.uniform())


def _ray_domain(tune, p: Param) -> Any:
    if isinstance(p, Fixed):
        return p.value
    if isinstance(p, Drawn):
        return _Draw(p)
    if isinstance(p, Choice):
        return tune.grid_search(list(p.values)) if p.grid else tune.choice(list(p.values))
    if isinstance(p, Uniform):
        if p.q is not None:
            return tune.quniform(p.low, p.high, p.q)  # bounds are multiples of q: same set as Optuna's
        return tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)
    if isinstance(p, Int):
        if p.log:
            return tune.lograndint(p.low, p.high + 1)  # Ray's upper bound is exclusive
        if p.step != 1:
            return tune.choice(p.grid_values())  # low, low+step, ...: Optuna's set exactly
        return tune.randint(p.low, p.high + 1)  # Ray's upper bound is exclusive
    raise TypeError(p)
