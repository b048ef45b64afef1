"""The parameter value objects of a search space: Fixed, Choice, Uniform, Int and Drawn, each with `when`.

Small validated values (as Optuna's distributions.py): a bad one cannot be built. Every range is
inclusive at both ends for the user (`int: [1, 4]` may give 4), whichever engine samples it.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

BOUND = 2**53  # beyond this floats skip integers and samplers' int64 arithmetic overflows
EDGE = 1e-9  # the probabilities Drawn.ppf is clipped to: unbounded priors stay finite


def label(v: Any) -> Any:
    """A value as an Optuna categorical holds it: scalars as they are, lists and mappings as JSON."""
    import json

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


DRAWN_KINDS = ("uniform", "loguniform", "normal", "lognormal", "beta", "weighted")


@dataclass(frozen=True)
class Drawn(Param):
    """A value drawn through its inverse CDF from a probability u in (0, 1): the priors W&B sweeps have
    and ranges cannot say (normal, lognormal, beta, a q rounding on a log scale or on bounds that are not
    multiples of q, weights over choices). Optuna searches u, so its first random trials follow the prior;
    random search draws u; the trial sees ppf(u), rounded to a multiple of q when there is one."""

    kind: str  # one of DRAWN_KINDS
    args: tuple  # (low, high) | (mu, sigma) | (a, b) | the values (weighted)
    q: float | int | None = None  # the value rounded to the nearest multiple of q
    weights: tuple = ()  # weighted: one probability per value, summing to 1

    def __post_init__(self):
        if self.kind not in DRAWN_KINDS:
            raise ValueError(f"unknown kind {self.kind!r}")
        if self.kind == "weighted":
            if not self.args or len(self.weights) != len(self.args):
                raise ValueError(f"needs one weight per value: {len(self.args)} values, {len(self.weights)} weights")
            if any(not (isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w <= 1) for w in self.weights):
                raise ValueError("weights must be numbers in [0, 1]")
            if abs(sum(self.weights) - 1) > 1e-5:  # as W&B's np.isclose
                raise ValueError(f"weights must sum to 1, got {sum(self.weights):g}")
            return
        a, b = self.args
        if self.kind in ("uniform", "loguniform") and not a < b:
            raise ValueError(f"bounds must satisfy low < high, got [{a}, {b}]")
        if self.kind == "loguniform" and a <= 0:
            raise ValueError(f"loguniform needs low > 0, got {a}")
        if self.kind in ("normal", "lognormal") and not b > 0:
            raise ValueError(f"sigma must be > 0, got {b}")
        if self.kind == "beta" and not (a > 0 and b > 0):
            raise ValueError(f"beta needs a > 0 and b > 0, got [{a}, {b}]")
        if self.q is not None and not (self.q > 0 and math.isfinite(self.q)):
            raise ValueError(f"q must be > 0, got {self.q}")
        if not all(math.isfinite(v) for v in self.candidates()):
            raise ValueError("the distribution's values overflow a float")

    @property
    def log(self) -> bool:  # for plots: values spread over orders of magnitude
        return self.kind in ("loguniform", "lognormal")

    @property
    def numeric(self) -> bool:
        return self.kind != "weighted"

    def ppf(self, u: float) -> Any:
        """The value at probability u."""
        u = min(max(float(u), EDGE), 1 - EDGE)
        if self.kind == "weighted":
            cum = [sum(self.weights[: i + 1]) for i in range(len(self.weights))]
            return self.args[min(bisect.bisect_right(cum, u), len(self.args) - 1)]
        a, b = self.args
        if self.kind == "uniform":
            x = a + u * (b - a)
        elif self.kind == "loguniform":
            x = math.exp(math.log(a) + u * (math.log(b) - math.log(a)))
        elif self.kind == "normal":
            x = NormalDist(a, b).inv_cdf(u)
        elif self.kind == "lognormal":
            x = math.exp(NormalDist(a, b).inv_cdf(u))
        else:
            from scipy.special import betaincinv

            x = float(betaincinv(a, b, u))
        return self._round(x)

    def _round(self, x: float) -> float | int:
        if self.q is None:
            return x
        x = round(x / self.q) * self.q  # half to even, as W&B's np.round
        return int(x) if isinstance(self.q, int) else x  # as W&B: whole numbers where q is written as one

    def cdf(self, x: Any) -> float | None:
        """The probability whose value is x (the middle of a weighted value's share); None where x
        cannot come from this distribution."""
        if self.kind == "weighted":
            for i, v in enumerate(self.args):
                if v == x and isinstance(v, bool) == isinstance(x, bool):
                    return sum(self.weights[:i]) + self.weights[i] / 2
            return None
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            return None
        a, b = self.args
        try:
            if self.kind == "uniform":
                u = (x - a) / (b - a)
            elif self.kind == "loguniform":
                u = (math.log(x) - math.log(a)) / (math.log(b) - math.log(a))
            elif self.kind == "normal":
                u = NormalDist(a, b).cdf(x)
            elif self.kind == "lognormal":
                u = NormalDist(a, b).cdf(math.log(x))
            else:
                from scipy.special import betainc

                u = float(betainc(a, b, x)) if 0 <= x <= 1 else -1.0
        except ValueError:  # log of a value <= 0
            return None
        slack = 0.0 if self.q is None else 1e-6  # a rounded draw may sit just past the range
        if not -slack <= u <= 1 + slack:
            return None
        return min(max(u, EDGE), 1 - EDGE)

    def candidates(self):
        return list(self.args) if self.kind == "weighted" else [self.ppf(0.0), self.ppf(1.0)]
