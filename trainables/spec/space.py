"""The search space as value objects: Fixed, Choice, Uniform, Int, with `when` conditions; parsed once.

Every range is inclusive at both ends for the user (`int: [1, 4]` may give 4), whichever
engine samples it: search/optuna.py and tune/space.py convert these objects, nothing else
reads the YAML of a parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from trainables.errors import did_you_mean, short

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "quniform", "int")
BOUND = 2**53  # beyond this floats skip integers and samplers' int64 arithmetic overflows


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
                if not math.isfinite(b / self.q) or abs(b) / self.q > 2**53:
                    raise ValueError(f"q={self.q} is too small for bounds [{self.low}, {self.high}]")
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
        bad = unknown[0] if unknown else None
        hint = did_you_mean(bad, DISTRIBUTIONS + ("when", "step", "log")) if bad is not None else ""
        raise ParamError(
            f"expected exactly one of {', '.join(DISTRIBUTIONS)} (plus optional `when`), "
            f"got {short(sorted(map(str, raw))) if raw else 'nothing'}{hint}",
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
    except (ValueError, OverflowError) as e:  # OverflowError: bounds over a vanishing q
        raise ParamError(str(e), kind) from None


class ParamError(ValueError):
    """A parameter that cannot be: `name` the parameter, `key` the key inside its entry at fault."""

    def __init__(self, message: str, key: Any = None, *, name: str | None = None):
        super().__init__(message)
        self.key, self.name = key, name


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ParamError(f"expected an integer, got {short(v)}", what)
    return v


def _numbers(arg: Any, n: int, *, integer: bool) -> list:
    shape = "[low, high, q]" if n == 3 else "[low, high]"
    if not isinstance(arg, list) or len(arg) != n:
        raise ValueError(f"expected {shape}, got {short(arg)}")
    ok = (lambda v: isinstance(v, int)) if integer else (lambda v: isinstance(v, (int, float)))
    if any(isinstance(v, bool) or not ok(v) for v in arg):
        raise ValueError(f"expected {'integers' if integer else 'numbers'} {shape}, got {short(arg)}")
    if any(not math.isfinite(v) or abs(v) > BOUND for v in arg):
        raise ValueError(f"bounds must be finite numbers within +-{BOUND:.0e}, got {short(arg)}")
    return [v if integer else float(v) for v in arg]


def _parse_when(raw: Any) -> tuple[tuple[str, tuple], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise ParamError("`when` expects a mapping {parameter: value or [values]}", "when")
    if any(isinstance(v, list) and not v for v in raw.values()):
        raise ParamError("`when` waits for at least one value: an empty list never holds", "when")
    return tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in raw.items())


# ---- ordering ---------------------------------------------------------------------------

def ordered(space: Mapping[str, Param]) -> list[str]:
    """Names with every `when` dependency before its dependant (for define-by-run). A ParamError
    names the parameter whose `when` is wrong: an unknown parameter, or the one closing a cycle."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]):
        if name in seen:
            return
        if name in stack:
            cycle = stack[stack.index(name):] + (name,)
            raise ParamError(f"`when` conditions form a cycle: {' -> '.join(cycle)}", "when", name=stack[-1])
        for dep, _ in space[name].when:
            if dep not in space:
                raise ParamError(f"`when` refers to {dep!r}, which is not a parameter", "when", name=name)
            visit(dep, stack + (name,))
        seen.add(name)
        done.append(name)

    for name in space:
        visit(name, ())
    return done


class Space(Mapping[str, Param]):
    """The `parameters:` section parsed once: name -> Param in file order, dependencies ordered,
    the YAML as written kept for the saved spec (`raw`)."""

    def __init__(self, params: Mapping[str, Param], raw: Mapping[str, Any] | None = None):
        self._params = dict(params)
        self.raw = dict(raw) if raw is not None else {k: _unparse(p) for k, p in self._params.items()}
        self.order = ordered(self._params)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> "Space":
        """From the YAML mapping; ParamError (with .name) for the first parameter that cannot be."""
        params = {}
        for name, value in raw.items():
            try:
                params[name] = parse_param(value)
            except ParamError as e:
                e.name = name
                raise
        return cls(params, raw)

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self._params == other._params

    def __repr__(self) -> str:
        return f"Space({self._params!r})"

    @property
    def searched(self) -> list[str]:
        return [k for k, p in self._params.items() if p.searched]


def check_when(space: Mapping[str, Param]) -> None:
    """Each value a `when` waits for can occur: among the choices, equal to the fixed value, or in
    range. A ParamError names the parameter whose condition can never hold."""
    for name, p in space.items():
        for dep, allowed in p.when:
            if not any(can_be(space[dep], v) for v in allowed):
                got = list(allowed) if len(allowed) > 1 else allowed[0]
                raise ParamError(f"`when: {{{dep}: {short(got)}}}` can never hold: {dep} is {describe(space[dep])}",
                                 "when", name=name)


def can_be(p: Param, v: Any) -> bool:
    """Whether a trial may see value v for p."""
    if isinstance(p, Fixed):
        return _same(p.value, v)
    if isinstance(p, Choice):
        return any(_same(c, v) for c in p.values)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(p, Int):
        return isinstance(v, int) and p.low <= v <= p.high and (v - p.low) % p.step == 0
    if isinstance(p, Uniform):
        return p.low <= v <= p.high and (p.q is None or abs(v / p.q - round(v / p.q)) < 1e-9)
    return False


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML means it: True is not 1, 1.0 is 1."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _unparse(p: Param) -> Any:
    """A Param as the YAML that parses to it (for spaces built in code)."""
    when = {"when": {k: list(v) for k, v in p.when}} if p.when else {}
    if isinstance(p, Fixed):
        return p.value
    if isinstance(p, Choice):
        return {"grid" if p.grid else "choice": list(p.values), **when}
    if isinstance(p, Uniform):
        if p.q is not None:
            return {"quniform": [p.low, p.high, p.q], **when}
        return {"loguniform" if p.log else "uniform": [p.low, p.high], **when}
    extra = ({"step": p.step} if p.step != 1 else {}) | ({"log": True} if p.log else {})
    return {"int": [p.low, p.high], **extra, **when}


def describe(p: Param) -> str:
    """One line for `tune validate`."""
    if isinstance(p, Fixed):
        s = f"fixed {short(p.value)}"
    elif isinstance(p, Choice):
        s = f"{'grid' if p.grid else 'choice'} of {len(p.values)}: {short(list(p.values), 200)}"
    elif isinstance(p, Uniform):
        kind = "quniform" if p.q else "loguniform" if p.log else "uniform"
        s = f"{kind} [{p.low:g}, {p.high:g}]" + (f" step {p.q:g}" if p.q else "")
    else:
        s = f"int [{p.low}, {p.high}]" + (f" step {p.step}" if p.step != 1 else "") + (" log" if p.log else "")
    if p.when:
        s += "  when " + ", ".join(f"{k} in {short(list(v))}" for k, v in p.when)
    return s


def enumerable(p: Param) -> bool:
    """Whether every value of p can be listed (for grid search): not a continuous range."""
    return not (isinstance(p, Uniform) and p.q is None)


def count(p: Param) -> int:
    """How many values p takes in a grid, counted without listing them."""
    if isinstance(p, Fixed):
        return 1
    if isinstance(p, Choice):
        return len(p.values)
    if isinstance(p, Int):
        return (p.high - p.low) // p.step + 1
    return round((p.high - p.low) / p.q) + 1 if p.q else 0


def _values(p: Param) -> list[Any]:
    return [p.value] if isinstance(p, Fixed) else list(p.values) if isinstance(p, Choice) else p.grid_values()


def grid_size(space: Mapping[str, Param], cap: int = 10**7) -> int:
    """The number of grid_points, computed without listing them (a conditional parameter multiplies only
    the branches where it applies); cap + 1 once it is known to be larger than cap."""
    deciders = {dep for p in space.values() for dep, _ in p.when}
    branches: list[tuple[dict[str, Any], int]] = [({}, 1)]  # the deciders' values so far -> points with them
    for name in ordered(space):
        p = space[name]
        if name in deciders and count(p) > cap:
            return cap + 1
        grown: list[tuple[dict[str, Any], int]] = []
        for values, n in branches:
            if not p.applies(values):
                grown.append((values, n))
            elif name in deciders:
                grown.extend(({**values, name: v}, n) for v in _values(p))
            else:
                grown.append((values, n * count(p)))
        branches = grown
        if len(branches) > cap or sum(n for _, n in branches) > cap:
            return cap + 1
    return sum(n for _, n in branches)


def grid_points(space: Mapping[str, Param]) -> list[dict[str, Any]]:
    """Every combination of the enumerable values, honouring `when`: a conditional parameter
    multiplies only the branches where it applies (and is absent from the others)."""
    points: list[dict[str, Any]] = [{}]
    for name in ordered(space):
        p = space[name]
        values = _values(p)
        points = [{**pt, name: v} for pt in points for v in values] if not p.when else [
            new for pt in points for new in ([{**pt, name: v} for v in values] if p.applies(pt) else [pt])
        ]
    return points
