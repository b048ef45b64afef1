"""W&B sweep configs: recognised by their keys and translated into a trainables spec (a YAML mapping).

Each W&B feature is translated exactly, or refused with the parameter named; everything that
cannot be honoured is listed in one message. The semantics are those of W&B's own sweeps code
(wandb/sweeps `params.py`, `grid_search.py`, `hyperband_stopping.py`; wandb/wandb `wandb_agent.py`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from trainables.errors import SpecError, did_you_mean, short
from trainables.spec.schema import WANDB_COMMAND
from trainables.spec.space import parse_param

TOP = ("method", "metric", "parameters", "early_terminate", "program", "command", "run_cap", "name", "description",
       "project", "entity", "controller", "job", "image_uri", "apiVersion", "kind")
IGNORED = ("entity", "controller", "job", "image_uri", "apiVersion", "kind")  # about W&B's service, not the search
METHODS = {"grid": "grid", "random": "random", "bayes": "optuna"}
PARAM_KEYS = ("distribution", "value", "values", "probabilities", "min", "max", "q", "mu", "sigma", "a", "b",
              "parameters")
DISTRIBUTIONS = ("constant", "categorical", "categorical_w_probabilities", "int_uniform", "uniform", "q_uniform",
                 "log_uniform", "log_uniform_values", "inv_log_uniform", "inv_log_uniform_values", "q_log_uniform",
                 "q_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta")
GRIDDABLE = ("constant", "categorical", "int_uniform", "q_uniform")  # what W&B's grid search accepts
DEFAULT_TRIALS = 10  # W&B runs random and bayes sweeps until stopped; without run_cap, this many
NO_LIMIT = 1_000_000  # epochs: a program reports as often as it likes (W&B stops none at a count)


OURS = ("trainable", "dataset", "mode", "epochs", "max_failures", "search", "scheduler", "resources", "tracking",
        "performance", "final", "constraints")  # keys only a trainables spec has


def is_wandb(data: Any) -> bool:
    """A W&B sweep config, by its keys: `method` (which W&B requires), a `metric` mapping, `early_terminate`
    or `run_cap`, and none of the keys only a trainables spec has (a stray `method` there is a typo)."""
    return isinstance(data, dict) and (
        any(k in data for k in ("method", "early_terminate", "run_cap"))
        or isinstance(data.get("metric"), dict)) and not any(k in data for k in OURS)


@dataclass
class Translation:
    spec: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what differs, said once by `tune run` and `tune convert`


class _Problems:
    def __init__(self, doc):
        self.doc, self.items = doc, []

    def add(self, message: str, path: tuple) -> None:
        self.items.append(self.doc.error(message, path))


def translate(data: dict[str, Any], doc, *, default_name: str) -> Translation:
    """The trainables spec for a W&B sweep config; one SpecError listing everything that cannot be honoured.
    doc: the YamlDoc the config came from (errors point at its lines)."""
    bad = _Problems(doc)
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key in data:
        if key not in TOP:
            bad.add(f"unknown W&B sweep key {short(key)}{did_you_mean(key, TOP)}", (key,))
    name = str(data.get("name") or default_name)
    out["name"] = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:100] or "sweep"
    if out["name"] != name:
        notes.append(f"name {name!r} is {out['name']!r} here (a folder and MLflow experiment name)")
    if data.get("description"):
        out["description"] = str(data["description"])
    method = data.get("method")
    method = method if isinstance(method, str) else repr(method)
    if method not in METHODS:
        bad.add(f"expected grid, random or bayes, got {short(method)}"
                + (" (custom sweeps need W&B's service)" if method == "custom" else ""), ("method",))
    out["trainable"] = "program"
    out["program"] = _program(data, bad)
    out.update(_metric(data.get("metric"), bad, notes))
    out["epochs"] = NO_LIMIT
    out["max_failures"] = 0  # a script that fails is a failed run, as in W&B (no retry)
    out["parameters"] = {}
    paths: dict[str, list[str]] = {}
    _parameters(data.get("parameters"), (), method, out["parameters"], bad, paths)
    if any(len(p) > 1 for p in paths.values()):  # where each nested parameter goes in the script's config
        out["program"]["nested"] = {k: p for k, p in paths.items() if len(p) > 1}
    search: dict[str, Any] = {"algorithm": METHODS.get(method, "random")}
    cap = data.get("run_cap")
    if cap is not None:
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= NO_LIMIT:
            bad.add(f"expected a whole number >= 1, got {short(cap)}", ("run_cap",))
        elif method == "grid":  # here num_samples repeats the grid; W&B runs each combination once, at most run_cap
            combos = _grid_size(out["parameters"])
            if combos is not None and cap < combos:
                bad.add(f"run_cap {cap} is fewer than the grid's {combos} combinations: W&B would run some of them; "
                        f"here a grid runs every combination (remove run_cap, or use method: random)", ("run_cap",))
        else:
            search["num_samples"] = cap
    elif method != "grid":
        search["num_samples"] = DEFAULT_TRIALS
        notes.append(f"no run_cap: {DEFAULT_TRIALS} trials (W&B would go on until stopped; "
                     f"-o search.num_samples=N sets another count)")
    out["search"] = search
    out["scheduler"] = _early_terminate(data.get("early_terminate"), bad)
    if data.get("project"):
        out["tracking"] = {"experiment": str(data["project"])}
    ignored = [k for k in IGNORED if k in data]
    if ignored:
        notes.append(f"ignored (about W&B's service): {', '.join(ignored)}")
    if bad.items:
        if len(bad.items) == 1:
            raise bad.items[0]
        raise SpecError("\n  ".join(["this W&B sweep config cannot be honoured:"] + [str(e) for e in bad.items]))
    return Translation(out, notes)


def _program(data: dict, bad: _Problems) -> dict[str, Any]:
    program = data.get("program")
    command = data.get("command", list(WANDB_COMMAND))
    if not isinstance(program, str) or not program:
        bad.add("the training script each trial runs is required (W&B's `program`)",
                ("program",) if "program" in data else ())
    if not isinstance(command, list) or not command or not all(isinstance(c, (str, int, float)) for c in command):
        bad.add(f"expected a list of strings, got {short(command)}", ("command",))
        command = list(WANDB_COMMAND)
    out = {"file": program if isinstance(program, str) else ""}
    if [str(c) for c in command] != list(WANDB_COMMAND):
        out["command"] = [str(c) for c in command]
    return out


def _metric(metric: Any, bad: _Problems, notes: list[str]) -> dict[str, Any]:
    if metric is None:
        bad.add("metric is required ({name: ..., goal: minimize | maximize}): trials are compared by it", ())
        return {}
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or not metric["name"]:
        bad.add(f"expected {{name: ..., goal: ...}}, got {short(metric)}", ("metric",))
        return {}
    for key in metric:
        if not isinstance(key, str):
            bad.add(f"unknown key {short(key)}", ("metric",))
        elif key not in ("name", "goal"):
            why = ("W&B's stop-the-sweep target" if key == "target" else "W&B's imputation of missing values"
                   if key.startswith("impute") else "not a W&B metric key")
            bad.add(f"not supported ({why}); remove it", ("metric", key))
    goal = metric.get("goal", "minimize")
    if goal not in ("minimize", "maximize"):
        bad.add(f"expected minimize or maximize, got {short(goal)}", ("metric", "goal"))
    if "goal" not in metric:
        notes.append("metric.goal not given: minimize, W&B's default")
    return {"metric": metric["name"], "mode": "max" if goal == "maximize" else "min"}


def _early_terminate(et: Any, bad: _Problems) -> dict[str, Any]:
    """hyperband -> ASHA on W&B's bands (milestones), keeping the top 1/eta at each."""
    if et is None:
        return {"name": "fifo"}
    if not isinstance(et, dict) or et.get("type") != "hyperband":
        bad.add(f"expected {{type: hyperband, ...}}, got {short(et)}", ("early_terminate",))
        return {"name": "fifo"}
    for key in et:
        if key not in ("type", "min_iter", "max_iter", "s", "eta", "strict"):
            bad.add(f"unknown key {short(key)}", ("early_terminate", key))
    if et.get("strict", True) is not True:
        bad.add("false is not supported: a trial is compared by its value at each band "
                "(W&B's default, strict: true)", ("early_terminate", "strict"))
    eta = et.get("eta", 3)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 1 < eta <= 1000:
        bad.add(f"expected a number > 1, got {short(eta)}", ("early_terminate", "eta"))
        return {"name": "fifo"}
    if "max_iter" in et:  # W&B: max_iter, divided by eta s times, truncated; it wins over min_iter
        top, s = et["max_iter"], et.get("s")
        if not _whole(top, 1) or not _whole(s, 1, 100):
            bad.add(f"max_iter and s must be whole numbers >= 1 (s at most 100), got {short(top)}, {short(s)}",
                    ("early_terminate",))
            return {"name": "fifo"}
        bands, x = [], float(top)
        for _ in range(s):
            x /= eta
            if x < 1:
                break
            bands.append(int(x))
        bands = sorted(set(bands))
    elif "min_iter" in et:  # W&B: min_iter x eta^k, on without end
        low = et["min_iter"]
        if not _whole(low, 1):
            bad.add(f"expected a whole number >= 1, got {short(low)}",
                    ("early_terminate", "min_iter"))
            return {"name": "fifo"}
        bands = sorted({int(low * eta**k) for k in range(100) if low * eta**k <= NO_LIMIT})
    else:
        bad.add("hyperband needs min_iter, or max_iter and s", ("early_terminate",))
        return {"name": "fifo"}
    if not bands:
        bad.add(f"no band: max_iter {et.get('max_iter')} divided by eta {eta} falls below 1", ("early_terminate",))
        return {"name": "fifo"}
    return {"name": "asha", "milestones": bands, "reduction_factor": float(eta)}


def _grid_size(parameters: dict[str, Any]) -> int | None:
    from trainables.spec.space import Space, grid_size

    try:
        return grid_size(Space.parse(parameters))
    except ValueError:
        return None  # a bad parameter: said on its own


def _whole(v: Any, low: int, high: int = NO_LIMIT) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _parameters(raw: Any, prefix: tuple, method: Any, out: dict[str, Any], bad: _Problems,
                paths: dict[str, list[str]]) -> None:
    where = ("parameters",) + sum(((p, "parameters") for p in prefix), ())
    if not isinstance(raw, dict) or not raw:
        bad.add(f"expected a mapping of parameter names, got {short(raw)}", where[:-1] if prefix else where)
        return
    for name, spec in raw.items():
        path = where + (name,)
        dotted = ".".join(map(str, prefix + (name,)))
        if not isinstance(spec, dict):
            bad.add(f"expected a mapping such as {{value: ...}}, {{values: [...]}} or {{min: .., max: ..}}, got "
                    f"{short(spec)}", path)
            continue
        unknown = [k for k in spec if k not in PARAM_KEYS]
        if unknown:
            bad.add(f"unknown key {short(unknown[0])}{did_you_mean(unknown[0], PARAM_KEYS)}", path + (unknown[0],))
            continue
        if not isinstance(name, str) or not name:
            bad.add(f"a parameter name must be text, got {short(name)}", where)
            continue
        if "parameters" in spec:
            if len(spec) > 1:
                bad.add("a nested `parameters:` block takes no other keys", path)
            else:
                _parameters(spec["parameters"], prefix + (name,), method, out, bad, paths)
            continue
        if dotted in out:
            bad.add(f"{dotted!r} is also the name of a nested parameter ({'.'.join(paths[dotted])}): rename one",
                    path)
            continue
        paths[dotted] = [*prefix, name]
        try:
            out[dotted] = _param(spec, method == "grid", nested=bool(prefix))
            parse_param(out[dotted])  # what the trainables space says of it, in the same message
        except ValueError as e:
            bad.add(str(e), path)


def _infer(spec: dict, nested: bool) -> str:
    """The distribution W&B infers when none is named (its schema's order)."""
    if "values" in spec:
        return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
    if "value" in spec:
        return "constant"
    if "min" in spec and "max" in spec:
        lo, hi = spec["min"], spec["max"]
        if _int(lo) and _int(hi):
            return "int_uniform"
        if _int(lo) != _int(hi) and _num(lo) and _num(hi) and not nested:  # W&B's SDK checks the top level
            raise ValueError(f"min {lo!r} and max {hi!r}: one whole, one not, is ambiguous to W&B; write both as "
                             f"floats (uniform) or both as integers (int_uniform), or name the distribution")
        return "uniform"
    raise ValueError(f"cannot tell the distribution from the keys {short(sorted(spec))}; name it with `distribution:`")


def _param(spec: dict, grid: bool, *, nested: bool = False) -> Any:
    kind = spec.get("distribution") or _infer(spec, nested)
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"distribution: unknown {short(kind)}{did_you_mean(kind, DISTRIBUTIONS)}")
    if grid and kind not in GRIDDABLE:
        raise ValueError(f"grid search takes {', '.join(GRIDDABLE)} (as W&B's grid does), not {kind}")
    allowed = _KEYS[kind]
    extra = [k for k in spec if k not in allowed and k != "distribution"]
    if extra:
        hint = f" (a rounded {kind} is q_{kind})" if extra == ["q"] and f"q_{kind}" in DISTRIBUTIONS else ""
        raise ValueError(f"{kind} takes {', '.join(allowed)}, not {', '.join(extra)}{hint}")
    if kind == "constant" and "value" not in spec:
        raise ValueError("constant needs a value")
    if kind == "constant":  # a mapping would read as a distribution: a choice of one says it plainly
        return {"choice": [spec["value"]]} if isinstance(spec.get("value"), dict) else spec.get("value")
    if kind in ("categorical", "categorical_w_probabilities"):
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ValueError(f"values: expected a non-empty list, got {short(values)}")
        if kind == "categorical":
            return {"choice": values}
        return {"choice": values, "weights": _nums(spec, "probabilities")}
    if kind == "int_uniform":
        lo, hi = spec.get("min"), spec.get("max")
        if not (_int(lo) and _int(hi)):
            raise ValueError(f"int_uniform needs whole min and max, got {short(lo)}, {short(hi)}")
        return {"int": [lo, hi]}  # W&B: randint(min, max + 1), both ends included
    if kind in ("normal", "q_normal", "log_normal", "q_log_normal"):
        mu, sigma = _num_or(spec, "mu", 0), _num_or(spec, "sigma", 1)
        return _q({"lognormal" if "log" in kind else "normal": [mu, sigma]}, spec, kind)
    if kind in ("beta", "q_beta"):
        return _q({"beta": [_num_or(spec, "a", 1), _num_or(spec, "b", 1)]}, spec, kind)
    lo, hi = _num_or(spec, "min", None), _num_or(spec, "max", None)
    if not lo < hi:
        raise ValueError(f"min must be < max, got {lo}, {hi}")
    if kind in ("uniform", "q_uniform"):
        if kind == "q_uniform" and grid:  # W&B's grid: np.arange(min, max, q), max excluded
            import numpy as np

            q = _q_of(spec)
            n = (hi - lo) / q
            if not math.isfinite(n) or n > 10_000:
                raise ValueError(f"a grid of more than 10,000 values (min {lo}, max {hi}, q {q})")
            return {"choice": [_clean(float(x), q) for x in np.arange(lo, hi, q)]}
        return _q({"uniform": [lo, hi]}, spec, kind)
    if kind in ("log_uniform", "q_log_uniform"):  # min, max are natural-log exponents
        return _q({"loguniform": [_exp(lo), _exp(hi)]}, spec, kind)
    if kind == "inv_log_uniform":  # X = exp(-U(min, max)): log-uniform on [e^-max, e^-min]
        return {"loguniform": [_exp(-hi), _exp(-lo)]}
    if lo <= 0:
        raise ValueError(f"{kind} needs min > 0, got {lo}")
    # log_uniform_values, inv_log_uniform_values (W&B draws the same distribution), q_log_uniform_values
    return _q({"loguniform": [lo, hi]}, spec, kind)


_KEYS = {
    "constant": ("value",), "categorical": ("values",), "categorical_w_probabilities": ("values", "probabilities"),
    "int_uniform": ("min", "max"), "uniform": ("min", "max"), "q_uniform": ("min", "max", "q"),
    "log_uniform": ("min", "max"), "log_uniform_values": ("min", "max"), "inv_log_uniform": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"), "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"), "normal": ("mu", "sigma"), "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"), "q_log_normal": ("mu", "sigma", "q"), "beta": ("a", "b"),
    "q_beta": ("a", "b", "q"),
}


def _q(out: dict, spec: dict, kind: str) -> dict:
    if kind.startswith("q_"):
        out["q"] = _q_of(spec)
    return out


def _q_of(spec: dict) -> float | int:
    q = spec.get("q", 1.0)  # W&B's default is the float 1.0: values like 8.0, not 8
    if not _num(q) or not q > 0:
        raise ValueError(f"q: expected a number > 0, got {short(q)}")
    return q


def _clean(x: float, q: float | int) -> float | int:
    return int(round(x)) if isinstance(q, int) and float(x).is_integer() else round(x, 12)


def _exp(x: float) -> float:
    """e^x for W&B's log_uniform bounds, which are natural-log exponents (log_uniform_values takes values)."""
    if x > 700:
        raise ValueError(f"exp({x}) overflows a float (log_uniform's min and max are exponents: "
                         f"log_uniform_values takes the values themselves)")
    if x < -700:
        raise ValueError(f"exp({x}) is 0 as a float (log_uniform's min and max are exponents: "
                         f"log_uniform_values takes the values themselves)")
    return math.exp(x)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num_or(spec: dict, key: str, default: Any) -> float:
    v = spec.get(key, default)
    if not _num(v):
        raise ValueError(f"{key}: expected a number, got {short(v)}" if key in spec else f"{key} is required")
    return v


def _nums(spec: dict, key: str) -> list[float]:
    v = spec.get(key)
    if not isinstance(v, list) or not all(_num(x) for x in v):
        raise ValueError(f"{key}: expected a list of numbers, got {short(v)}")
    return v
