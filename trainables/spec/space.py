"""The search space: parameters parsed once from YAML (spec/params.py's value objects), ordered by
their `when` conditions, checked, counted and listed for grids.

search/optuna.py and tune/space.py convert the value objects, nothing else reads the YAML of a parameter.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

from trainables.errors import did_you_mean, short
from trainables.spec.params import BOUND, Choice, Drawn, Fixed, Int, Param, Uniform

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "quniform", "int", "normal", "lognormal", "beta")
# keys that refine a distribution -> the distributions they go with
MODIFIERS = {"step": ("int",), "log": ("int",), "q": ("uniform", "loguniform", "normal", "lognormal", "beta"),
             "weights": ("choice",)}


def parse_param(raw: Any) -> Param:
    """A YAML value -> Param. A plain value is fixed; a mapping names one distribution.

    Raises ValueError(message, subpath) where subpath is the key inside the entry at fault.
    """
    if not isinstance(raw, dict):
        return Fixed(raw)
    raw = dict(raw)
    when = _parse_when(raw.pop("when", None))
    extra = {k: raw.pop(k) for k in MODIFIERS if k in raw}
    keys = [k for k in raw if k in DISTRIBUTIONS]
    unknown = [k for k in raw if k not in DISTRIBUTIONS]
    if unknown or len(keys) != 1:
        bad = unknown[0] if unknown else None
        hint = did_you_mean(bad, DISTRIBUTIONS + ("when",) + tuple(MODIFIERS)) if bad is not None else ""
        raise ParamError(
            f"expected exactly one of {', '.join(DISTRIBUTIONS)} (plus optional `when`), "
            f"got {short(sorted(map(str, raw))) if raw else 'nothing'}{hint}",
            bad,
        )
    kind = keys[0]
    for key in extra:
        if kind not in MODIFIERS[key]:
            raise ParamError(f"`{key}` goes only with {' or '.join(f'`{k}`' for k in MODIFIERS[key])}", key)
    try:
        return _parse(kind, raw[kind], extra, when)
    except ParamError:
        raise
    except OverflowError:  # bounds over a vanishing q
        raise ParamError(f"q={extra.get('q')} is too small for these bounds (their ratio overflows a float)",
                         kind) from None
    except ValueError as e:
        raise ParamError(str(e), kind) from None


def _parse(kind: str, arg: Any, extra: dict[str, Any], when) -> Param:
    if kind in ("choice", "grid"):
        if not isinstance(arg, list):
            raise ValueError(f"expected a list of values, got {type(arg).__name__}")
        if "weights" in extra:
            weights = extra["weights"]
            if not isinstance(weights, list) or any(isinstance(w, bool) or not isinstance(w, (int, float))
                                                    for w in weights):
                raise ParamError(f"`weights` expects a list of numbers, got {short(weights)}", "weights")
            try:
                return Drawn("weighted", tuple(arg), weights=tuple(float(w) for w in weights), when=when)
            except ValueError as e:
                raise ParamError(str(e), "weights") from None
        return Choice(tuple(arg), grid=kind == "grid", when=when)
    nums = _numbers(arg, 3 if kind == "quniform" else 2, integer=kind == "int")
    if "q" in extra:
        q = extra["q"]
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not (0 < q < BOUND):
            raise ParamError(f"`q` expects a number > 0 and < 2**53, got {short(q)}", "q")
        try:
            return Drawn(kind, tuple(nums), q=q, when=when)
        except ValueError as e:
            raise ParamError(str(e), kind) from None
    if kind in ("normal", "lognormal", "beta"):
        return Drawn(kind, tuple(nums), when=when)
    if kind == "uniform":
        return Uniform(*nums, when=when)
    if kind == "loguniform":
        return Uniform(*nums, log=True, when=when)
    if kind == "quniform":
        return Uniform(nums[0], nums[1], q=nums[2], when=when)
    step, log = extra.get("step"), extra.get("log")
    if log is not None and not isinstance(log, bool):
        raise ParamError(f"`log` expects true or false, got {short(log)}", "log")
    return Int(nums[0], nums[1], step=1 if step is None else _int(step, "step"), log=bool(log), when=when)


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
    if isinstance(p, Drawn):
        return p.cdf(v) is not None
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
    if isinstance(p, Drawn):
        if p.kind == "weighted":
            return {"choice": list(p.args), "weights": list(p.weights), **when}
        return {p.kind: list(p.args), **({"q": p.q} if p.q is not None else {}), **when}
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
    elif isinstance(p, Drawn):
        s = (f"weighted choice of {len(p.args)}: {short(list(p.args), 200)}, weights {short(list(p.weights))}"
             if p.kind == "weighted" else f"{p.kind} {short(list(p.args))}" + (f" rounded to multiples of {p.q:g}"
                                                                              if p.q is not None else ""))
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
    return not (isinstance(p, Uniform) and p.q is None) and not (isinstance(p, Drawn) and p.numeric)


def count(p: Param) -> int:
    """How many values p takes in a grid, counted without listing them."""
    if isinstance(p, Fixed):
        return 1
    if isinstance(p, Choice):
        return len(p.values)
    if isinstance(p, Drawn):
        return 0 if p.numeric else len(p.args)
    if isinstance(p, Int):
        return (p.high - p.low) // p.step + 1
    return round((p.high - p.low) / p.q) + 1 if p.q else 0


def _values(p: Param) -> list[Any]:
    if isinstance(p, Drawn):  # weighted: a grid tries every value, as W&B's grid does
        return list(p.args)
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
