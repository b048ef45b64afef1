"""Search-space value objects and their conversion to Ray Tune domains and Optuna suggestions.

Bounds semantics live here and only here: every range is inclusive at both ends for the
user (`int: [1, 4]` may give 4), whichever engine samples it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "quniform", "int")


def _label(v: Any) -> Any:
    """Optuna categoricals hold only scalars: lists and mappings travel as their JSON text."""
    return v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v, sort_keys=True)


@dataclass(frozen=True)
class Param:
    """A parameter of the sweep: fixed, or drawn from a distribution; maybe conditional."""

    when: tuple[tuple[str, tuple], ...] = field(default=(), kw_only=True)  # ((key, allowed values), ...)

    searched = True

    def applies(self, config: dict[str, Any]) -> bool:
        return all(k in config and config[k] in allowed for k, allowed in self.when)

    def candidates(self) -> list[Any]:
        """Every value (or both bounds) a trial may see: what static validation checks."""
        raise NotImplementedError


@dataclass(frozen=True)
class Fixed(Param):
    value: Any
    searched = False

    def candidates(self):
        return [self.value]


@dataclass(frozen=True)
class Choice(Param):
    values: tuple
    grid: bool = False  # every value, as Ray's grid_search, instead of a draw

    def __post_init__(self):
        if not self.values:
            raise ValueError("needs at least one value, got an empty list")

    def candidates(self):
        return list(self.values)


@dataclass(frozen=True)
class Uniform(Param):
    low: float
    high: float
    log: bool = False
    q: float | None = None  # quantised: low, low + q, ..., high

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"bounds must satisfy low < high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        if self.q is not None:
            if self.q <= 0:
                raise ValueError(f"q must be > 0, got {self.q}")
            for b in (self.low, self.high):
                if abs(b / self.q - round(b / self.q)) > 1e-9:
                    raise ValueError(f"bounds must be multiples of q={self.q}, got {b}")

    def candidates(self):
        return [self.low, self.high]

    def grid_values(self) -> list[float]:
        if self.q is None:
            raise ValueError("a continuous range cannot be enumerated")
        n = round((self.high - self.low) / self.q)
        return [round(self.low + i * self.q, 12) for i in range(n + 1)]


@dataclass(frozen=True)
class Int(Param):
    low: int
    high: int  # inclusive
    step: int = 1
    log: bool = False

    def __post_init__(self):
        if self.low > self.high:
            raise ValueError(f"bounds must satisfy low <= high, got [{self.low}, {self.high}]")
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step}")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log: true needs low >= 1 and no step")

    def candidates(self):
        return [self.low, self.high]

    def grid_values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


def parse_param(raw: Any) -> Param:
    """A YAML value -> Param. A plain value is fixed; a mapping names one distribution.

    Raises ValueError(message, subpath) where subpath is the key inside the entry at fault.
    """
    if not isinstance(raw, dict):
        return Fixed(raw)
    raw = dict(raw)
    when = _parse_when(raw.pop("when", None))
    extra = raw.pop("step", None), raw.pop("log", None)
    keys = [k for k in raw if k in DISTRIBUTIONS]
    unknown = [k for k in raw if k not in DISTRIBUTIONS]
    if unknown or len(keys) != 1:
        import difflib

        bad = unknown[0] if unknown else None
        hint = ""
        if bad is not None:
            close = difflib.get_close_matches(str(bad), DISTRIBUTIONS + ("when", "step", "log"), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ParamError(
            f"expected exactly one of {', '.join(DISTRIBUTIONS)} (plus optional `when`), got {sorted(map(str, raw)) or 'nothing'}{hint}",
            bad,
        )
    kind = keys[0]
    arg = raw[kind]
    step, log = extra
    if kind != "int" and (step is not None or log is not None):
        raise ParamError("`step` and `log` go only with `int`", "step" if step is not None else "log")
    try:
        if kind in ("choice", "grid"):
            if not isinstance(arg, list):
                raise ValueError(f"expected a list of values, got {type(arg).__name__}")
            return Choice(tuple(arg), grid=kind == "grid", when=when)
        nums = _numbers(arg, 3 if kind == "quniform" else 2, integer=kind == "int")
        if kind == "uniform":
            return Uniform(*nums, when=when)
        if kind == "loguniform":
            return Uniform(*nums, log=True, when=when)
        if kind == "quniform":
            return Uniform(nums[0], nums[1], q=nums[2], when=when)
        return Int(nums[0], nums[1], step=1 if step is None else _int(step, "step"), log=bool(log), when=when)
    except ParamError:
        raise
    except ValueError as e:
        raise ParamError(str(e), kind) from None


class ParamError(ValueError):
    def __init__(self, message: str, key: Any = None):
        super().__init__(message)
        self.key = key


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ParamError(f"expected an integer, got {v!r}", what)
    return v


def _numbers(arg: Any, n: int, *, integer: bool) -> list:
    shape = "[low, high, q]" if n == 3 else "[low, high]"
    if not isinstance(arg, list) or len(arg) != n:
        raise ValueError(f"expected {shape}, got {arg!r}")
    ok = (lambda v: isinstance(v, int)) if integer else (lambda v: isinstance(v, (int, float)))
    if any(isinstance(v, bool) or not ok(v) for v in arg):
        raise ValueError(f"expected {'integers' if integer else 'numbers'} {shape}, got {arg!r}")
    return [v if integer else float(v) for v in arg]


def _parse_when(raw: Any) -> tuple[tuple[str, tuple], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise ParamError("`when` expects a mapping {parameter: value or [values]}", "when")
    return tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in raw.items())


# ---- ordering ---------------------------------------------------------------------------

def ordered(space: dict[str, Param]) -> list[str]:
    """Names with every `when` dependency before its dependant (for define-by-run)."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]):
        if name in seen:
            return
        if name in stack:
            raise ParamError(f"`when` conditions form a cycle: {' -> '.join(stack + (name,))}", "when")
        for dep, _ in space[name].when:
            if dep not in space:
                raise ParamError(f"`when` refers to {dep!r}, which is not a parameter", "when")
            visit(dep, stack + (name,))
        seen.add(name)
        done.append(name)

    for name in space:
        visit(name, ())
    return done


# ---- Optuna (define-by-run) -------------------------------------------------------------

class OptunaSpace:
    """A define-by-run function for OptunaSearch: suggests searched values, returns all values.

    A class, not a closure, because OptunaSearch pickles it with its state.
    """

    def __init__(self, space: dict[str, Param]):
        self.space, self.names = space, ordered(space)

    def __call__(self, trial) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for name in self.names:
            p = self.space[name]
            if p.applies(config):  # else: a conditional parameter of another branch, absent here
                config[name] = suggest(trial, name, p)
        return config


def suggest(trial, name: str, p: Param) -> Any:
    if isinstance(p, Fixed):
        return p.value
    if isinstance(p, Choice):
        if p.grid:
            raise ValueError("grid is not supported with optuna")
        labels = [_label(v) for v in p.values]
        return p.values[labels.index(trial.suggest_categorical(name, labels))]
    if isinstance(p, Uniform):
        return trial.suggest_float(name, p.low, p.high, log=p.log, step=p.q)
    if isinstance(p, Int):
        return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
    raise TypeError(p)


def encode_point(space: dict[str, Param], point: dict[str, Any]) -> dict[str, Any]:
    """A `points_to_evaluate` entry as Optuna will see it (categorical values as labels)."""
    return {k: (_label(v) if isinstance(space.get(k), Choice) else v) for k, v in point.items() if space[k].searched}


# ---- Ray Tune domains (random and grid search) ------------------------------------------

def ray_space(space: dict[str, Param], *, seed: int | None) -> dict[str, Any]:
    """A param_space for Ray's BasicVariantGenerator (random search; `grid:` values crossed)."""
    import numpy as np
    from ray import tune

    out: dict[str, Any] = {}
    for i, name in enumerate(ordered(space)):
        p = space[name]
        domain = _ray_domain(tune, p)
        if not p.when:
            out[name] = domain
        elif isinstance(domain, dict):
            raise ParamError("a grid parameter cannot have `when`: grids are expanded before any value is known", "when")
        else:
            # Ray has no conditionals: draw inside sample_from, None (absent) where the condition fails.
            rng = np.random.default_rng(None if seed is None else [seed, i])
            out[name] = tune.sample_from(_conditional(p, domain, rng))
    return out


def _conditional(p: Param, domain: Any, rng):
    def sample(spec):
        if not p.applies(spec.config):
            return None
        return domain.sample(random_state=rng) if hasattr(domain, "sample") else domain

    return sample


def _ray_domain(tune, p: Param) -> Any:
    if isinstance(p, Fixed):
        return p.value
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


def describe(p: Param) -> str:
    """One line for `tune validate`."""
    if isinstance(p, Fixed):
        s = f"fixed {p.value!r}"
    elif isinstance(p, Choice):
        s = f"{'grid' if p.grid else 'choice'} of {len(p.values)}: {list(p.values)}"
    elif isinstance(p, Uniform):
        kind = "quniform" if p.q else "loguniform" if p.log else "uniform"
        s = f"{kind} [{p.low:g}, {p.high:g}]" + (f" step {p.q:g}" if p.q else "")
    else:
        s = f"int [{p.low}, {p.high}]" + (f" step {p.step}" if p.step != 1 else "") + (" log" if p.log else "")
    if p.when:
        s += "  when " + ", ".join(f"{k} in {list(v)}" for k, v in p.when)
    return s


def searched_names(space: dict[str, Param]) -> list[str]:
    return [k for k, p in space.items() if p.searched]


def grid_points(space: dict[str, Param]) -> list[dict[str, Any]]:
    """Every combination of the enumerable values, honouring `when`: a conditional parameter
    multiplies only the branches where it applies (and is absent from the others)."""
    points: list[dict[str, Any]] = [{}]
    for name in ordered(space):
        p = space[name]
        values = [p.value] if isinstance(p, Fixed) else list(p.values) if isinstance(p, Choice) else p.grid_values()
        points = [{**pt, name: v} for pt in points for v in values] if not p.when else [
            new for pt in points for new in ([{**pt, name: v} for v in values] if p.applies(pt) else [pt])
        ]
    return points
