"""Checks of a whole spec that its schema cannot make: the space against the model registry, the
search algorithm against the scheduler and the starting points, a user's trainable.

Each check raises through `doc.error(message, key_path)`, so the message points at the line.
"""
from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Mapping

from pydantic import ValidationError

from trainables.errors import did_you_mean, short
from trainables.spec.schema import MAX_TRIALS, METRICS, Spec
from trainables.spec.space import Choice, Fixed, Param, ParamError, can_be, check_when, describe, enumerable, grid_size


def check_spec(spec: Spec, doc) -> None:
    """Every check, in order; the first failure raises doc.error(...)."""
    if spec.scheduler.milestones is not None and spec.scheduler.name != "asha":
        raise doc.error("milestones go only with the asha scheduler", ("scheduler", "milestones"))
    if (spec.trainable == "program") != (spec.program is not None):
        raise doc.error("`trainable: program` and a `program:` section go together",
                        ("program",) if spec.program is not None else ("trainable",))
    if spec.trainable == "classifier":
        _check_models(spec, spec.space, doc)
    elif spec.trainable != "program":
        _check_trainable_import(spec, doc)
    if spec.trainable != "classifier":  # both were said only once Ray had started (retrain: after every trial)
        if spec.resources.workers > 1:
            raise doc.error(f"resources.workers > 1 trains the built-in classifier data-parallel; {spec.trainable!r} "
                            f"would have to build its own Ray Train run: use workers: 1", ("resources", "workers"))
        if spec.final.retrain_best:
            raise doc.error(f"retrain_best retrains the built-in classifier's best configuration; {spec.trainable!r} "
                            f"is not it: set it to false", ("final", "retrain_best"))
    try:
        check_when(spec.space)
    except ParamError as e:
        raise doc.error(str(e), ("parameters", e.name, "when")) from None
    _check_search(spec, doc)


def _check_trainable_import(spec: Spec, doc) -> None:
    mod, sep, fn = spec.trainable.partition(":")
    if not sep or not mod or not fn:
        raise doc.error(f"expected 'classifier', 'program' (a script, with program:) or 'package.module:function', "
                        f"got {short(spec.trainable)}{did_you_mean(spec.trainable, ('classifier', 'program'))}",
                        ("trainable",))
    try:
        obj = getattr(importlib.import_module(mod), fn)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - whatever importing the user's module raises (sys.exit
        # too: it ended `tune validate` silently with its code) is their input
        raise doc.error(f"cannot import {short(spec.trainable)}: {type(e).__name__}: {short(str(e), 200)}",
                        ("trainable",)) from None
    if not callable(obj):
        raise doc.error(f"{short(spec.trainable)} is not callable", ("trainable",))
    # what Ray Tune runs: a function of the config, or a subclass of ray.tune.Trainable (named, not imported:
    # the spec stage stays free of Ray)
    trainable_class = inspect.isclass(obj) and any(
        c.__name__ == "Trainable" and c.__module__.startswith("ray.tune") for c in obj.__mro__)
    if not (trainable_class or inspect.isfunction(obj) or inspect.ismethod(obj) or isinstance(obj, functools.partial)):
        kind = "class" if inspect.isclass(obj) else type(obj).__name__
        raise doc.error(f"{short(spec.trainable)} is a {kind}: Ray Tune runs a Python function that "
                        f"takes the config (def train(config): ... tune.report(...)), or a subclass of "
                        f"ray.tune.Trainable", ("trainable",))


def _check_models(spec: Spec, space: Mapping[str, Param], doc) -> None:
    """Every value a trial may see is valid for every model it may be paired with."""
    from trainables.core.models import get_model, model_names
    from trainables.core.training import TRAINING_KEYS, Training

    for metric, _ in spec.objectives:
        if metric not in METRICS:
            raise doc.error(f"the classifier reports {', '.join(METRICS)}; got {short(metric)}"
                            f"{did_you_mean(metric, METRICS)}", ("metric",))
    model_param = space.get("model")
    names = model_param.candidates() if model_param is not None else ["cnn"]
    entries = []
    for i, n in enumerate(names):
        try:
            entries.append(get_model(n))
        except (ValueError, TypeError):
            searched = model_param is not None and model_param.searched
            sub = ("parameters", "model") + ((_dist_key(spec, "model"), i) if searched else ())
            raise doc.error(f"unknown model {short(n)}; expected one of {', '.join(model_names())}"
                            f"{did_you_mean(n, model_names())}", sub) from None
    for name, p in space.items():
        if name == "model":
            continue
        owners = [e for e in entries if name in e.params.model_fields]
        if name not in TRAINING_KEYS and not owners:
            known = sorted(TRAINING_KEYS | {f for e in entries for f in e.params.model_fields})
            raise doc.error(f"unknown hyperparameter for model {', '.join(e.name for e in entries)}"
                            f"{did_you_mean(name, known)}", ("parameters", name))
        # Each value alone against each owner: the field's type, bounds and validators.
        owners_of = [Training] if name in TRAINING_KEYS else [e.params for e in owners]
        for i, value in enumerate(p.candidates()):
            for owner in owners_of:
                try:
                    owner.model_validate({name: value})
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    who = "training" if owner is Training else next(e.name for e in owners if e.params is owner)
                    sub = ("parameters", name) + ((_dist_key(spec, name), i) if p.searched else ())
                    raise doc.error(f"{short(value)} is not valid for {who}.{name}: {msg}", sub) from None
        fraction = _a_fraction(p)
        for owner in owners_of if fraction is not None else []:  # a continuous range where whole numbers go
            try:
                owner.model_validate({name: fraction})
            except ValidationError as exc:
                if exc.errors()[0]["type"] == "int_from_float":
                    raise doc.error(f"{name} takes whole numbers, and this range draws fractions such as {fraction:g}: "
                                    f"use int: [low, high] (or choice)", ("parameters", name, _dist_key(spec, name))
                                    ) from None
    _check_combinations(entries, space, doc)
    _check_image_size(spec, entries, space, doc)


def trial_configs(space: Mapping[str, Param], model: str) -> list[tuple[str | None, dict[str, Any]]]:
    """Configurations trials of `model` can get, as (the searched key varied or None, config): every parameter
    at its first value (or bound), then each searched one at each of its values, `when` conditions applied as
    a trial's config applies them."""
    from trainables.spec.space import ordered

    def config(key: str | None, value: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ordered(space):
            p = space[name]
            if p.applies(out):
                out[name] = model if name == "model" else value if name == key else p.candidates()[0]
        return out

    varied = [(k, v) for k, p in space.items() if p.searched and k != "model" for v in p.candidates()]
    return [(None, config(None, None))] + [(k, config(k, v)) for k, v in varied]


def _a_fraction(p: Param) -> float | None:
    """A value with a fraction that a continuous range (uniform, loguniform, normal, ... or a quniform of a
    fractional q) can draw; None for the rest."""
    from trainables.spec.space import Drawn, Uniform

    if isinstance(p, Uniform) and (p.q is None or not float(p.q).is_integer()):
        x = p.low + (p.q if p.q is not None else min(0.5, (p.high - p.low) / 2))
        return x if not float(x).is_integer() else None
    if isinstance(p, Drawn) and p.numeric:
        return 0.5
    return None


def _check_combinations(entries, space: Mapping[str, Param], doc) -> None:
    """Values valid alone, but not together (freeze last_k_trainable with k 0)."""
    for e in entries:
        for key, config in trial_configs(space, e.name):
            try:
                e.params(**{k: v for k, v in config.items() if k in e.params.model_fields})
            except ValidationError as exc:
                msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                where = key or next((k for k in space if space[k].searched and k in e.params.model_fields), None)
                raise doc.error(f"model {e.name}{f' with {key}={short(config[key])}' if key else ''}: {msg}",
                                ("parameters", where) if where else ("parameters",)) from None


def _dist_key(spec: Spec, name: str) -> str:
    raw = spec.parameters.raw[name]
    return next((k for k in raw if k != "when"), "") if isinstance(raw, dict) else ""


def _check_image_size(spec: Spec, entries, space, doc) -> None:
    from trainables.core.size import BUILTIN_SHAPES

    size = spec.dataset.image_size or BUILTIN_SHAPES.get(spec.dataset.name, (0, 0, None))[2]
    if size is None:
        return
    for e in entries:
        fields = e.params.model_fields
        for key, config in trial_configs(space, e.name):  # a trial drawing any value must fit
            if key is not None and key not in fields:
                continue
            try:
                pre = e.preprocess(e.params(**{k: v for k, v in config.items() if k in fields}))
            except ValidationError:
                continue
            if pre.image_size is not None or size >= pre.min_image_size:
                continue
            if key is None:  # (the first value of each: a need that no single value brings)
                raise doc.error(f"model {e.name} needs image_size >= {pre.min_image_size}, got {size}",
                                ("dataset", "image_size"))
            raise doc.error(f"model {e.name} with {key}={short(config[key])} needs image_size >= {pre.min_image_size}, "
                            f"got {size}: every trial drawing it would fail; narrow parameters.{key} or raise "
                            f"dataset.image_size", ("parameters", key))


def _check_search(spec: Spec, doc) -> None:
    """The search algorithm, the scheduler, `grid:`, `when` and the starting points fit together."""
    space, algo = spec.space, spec.search.algorithm
    if spec.scheduler.name == "pbt":
        _check_pbt(spec, doc)
    for name, p in space.items():
        if algo == "optuna" and isinstance(p, Choice) and p.grid:
            raise doc.error("grid is not supported with search.algorithm optuna (use choice, or algorithm random "
                            "or grid)", ("parameters", name, "grid"))
        if algo == "optuna" and isinstance(p, Choice):
            _distinct_for_optuna(p, doc, ("parameters", name, _dist_key(spec, name)))
        if algo == "random" and isinstance(p, Choice) and p.grid and p.when:
            raise doc.error("a `grid:` parameter cannot have `when` with random search (Ray expands grids before "
                            "any value is drawn): use choice, or search.algorithm grid", ("parameters", name, "when"))
        if algo == "grid" and p.searched and not enumerable(p):
            raise doc.error("search.algorithm grid enumerates every value: use choice, grid, int or quniform here, "
                            "or algorithm random", ("parameters", name))
    _check_size(spec, doc)
    _check_points(spec, doc)
    _check_objectives(spec, doc)
    if spec.search.warm_start and algo != "optuna":
        raise doc.error(f"warm_start gives earlier results to a search that learns from them: use search.algorithm "
                        f"optuna ({algo} search would ignore them)", ("search", "warm_start"))


def _distinct_for_optuna(p: Choice, doc, where: tuple) -> None:
    """Optuna finds a drawn value by equality: with 1 and true (1 == True), or [1, 2] and "[1, 2]" (one label),
    only the first is ever drawn."""
    from trainables.spec.params import label

    first: dict = {}  # label -> index: 1, True and 1.0 hash (and compare) alike
    for j, v in enumerate(p.values):
        i = first.setdefault(label(v), j)
        if i != j:
            raise doc.error(f"choice values {short(p.values[i])} and {short(v)} are one value to Optuna (it would "
                            f"only ever draw the first): keep one", (*where, j))


def _check_objectives(spec: Spec, doc) -> None:
    """Several objectives: a search that can take them, no scheduler that compares trials by one metric,
    a select rule over one of them; constraints that parse."""
    from trainables.core.size import SIZES
    from trainables.spec.constraints import Constraint, ConstraintError

    known = set(spec.space) | (set(SIZES) if spec.trainable == "classifier" else set())
    for i, text in enumerate(spec.constraints):
        try:
            c = Constraint.parse(text)
        except ConstraintError as e:
            raise doc.error(str(e), ("constraints", i)) from None
        unknown = sorted(c.names - known)
        if unknown:
            sizes = f" and {', '.join(SIZES)}" if spec.trainable == "classifier" else ""
            raise doc.error(f"unknown name {unknown[0]!r} in {c.text!r}; constraints use the parameters{sizes}"
                            f"{did_you_mean(unknown[0], sorted(known))}", ("constraints", i))
    if spec.constraints and spec.search.algorithm == "random" and any(
            isinstance(p, Choice) and p.grid for p in spec.space.values()):
        raise doc.error("constraints with random search draw each configuration: use choice instead of grid here",
                        ("constraints",))
    select = spec.final.select
    if select and next(iter(select)) not in [m for m, _ in spec.objectives]:
        raise doc.error(f"final.select picks among the objectives ({', '.join(m for m, _ in spec.objectives)}), got "
                        f"{short(next(iter(select)))}", ("final", "select"))
    if select and not spec.multi and select != {spec.metric: spec.mode}:  # the best is the metric's, as mode says
        raise doc.error(f"final.select with one objective can only repeat it ({spec.metric}: {spec.mode}); got "
                        f"{short(select)}: change mode instead", ("final", "select"))
    if not spec.multi:
        return
    if spec.scheduler.name != "fifo":
        raise doc.error(f"{spec.scheduler.name} stops trials by one metric; with several objectives a trial that is "
                        f"worse on {spec.metric} may be better on another: use scheduler: {{name: fifo}}",
                        ("scheduler", "name"))
    if spec.search.warm_start:
        raise doc.error("warm_start takes single-objective sweeps", ("search", "warm_start"))


def _check_size(spec: Spec, doc) -> None:
    """The number of trials, computed before anything is enumerated."""
    space, algo = spec.space, spec.search.algorithm
    if algo == "grid":
        combos = grid_size(space)
        total = combos * (spec.search.num_samples or 1) + len(spec.search.points_to_evaluate)
        what = f"{combos:,} combinations" if combos <= MAX_TRIALS else f"more than {MAX_TRIALS:,} combinations"
    else:
        crossed = 1  # random search: Ray crosses every `grid:` with num_samples draws
        for p in space.values():
            crossed *= len(p.values) if isinstance(p, Choice) and p.grid else 1
        total = crossed * (spec.search.num_samples or 10)
        what = f"{crossed:,} grid combinations x {spec.search.num_samples or 10} samples"
    if total > MAX_TRIALS:
        raise doc.error(f"the search space makes {what}: more than {MAX_TRIALS:,} trials; narrow the grid or "
                        f"lower search.num_samples", ("parameters",) if algo == "grid" else ("search", "num_samples"))


def _check_pbt(spec: Spec, doc) -> None:
    space, algo = spec.space, spec.search.algorithm
    if algo != "random":
        raise doc.error(f"pbt explores by itself and takes no {algo} search: use search.algorithm random",
                        ("scheduler", "name"))
    every, interval = spec.performance.checkpoint_every, spec.scheduler.perturbation_interval
    if every != "auto" and interval % every:
        raise doc.error(f"pbt clones trials from their checkpoints every {interval} epochs (perturbation_interval): "
                        f"checkpoint_every {every} does not divide it, so a clone would start from an older epoch; "
                        f"use auto (every epoch) or a divisor of {interval}", ("performance", "checkpoint_every"))
    muts = spec.scheduler.mutations or spec.searched
    if not muts:
        raise doc.error("pbt needs at least one searched parameter to mutate", ("scheduler", "name"))
    for i, m in enumerate(muts):
        where = ("scheduler", "mutations", i) if spec.scheduler.mutations else ("parameters", m)
        if m not in space or not space[m].searched:
            raise doc.error(f"pbt mutates searched parameters; {short(m)} is not one"
                            f"{did_you_mean(m, spec.searched)}", where)
        if space[m].when:
            raise doc.error(f"pbt cannot mutate {m}: it is conditional (`when`), absent from some trials", where)
        if isinstance(space[m], Choice) and space[m].grid:
            raise doc.error(f"pbt cannot mutate {m}: a `grid:` is fixed per trial; use choice", where)


def _check_points(spec: Spec, doc) -> None:
    """Every starting point names known parameters with values the space can give, conditions holding, and
    each one runs (with grid search they come on top of the grid)."""
    space = spec.space
    points, samples = len(spec.search.points_to_evaluate), spec.search.num_samples or 10
    if spec.search.algorithm != "grid" and points > samples:
        raise doc.error(f"{points} starting points but num_samples {samples}: only the first {samples} would run; "
                        f"raise search.num_samples or drop points", ("search", "points_to_evaluate"))
    if spec.search.sampler != "tpe" and spec.search.algorithm != "optuna":
        raise doc.error(f"sampler {spec.search.sampler} is an optuna sampler: use search.algorithm optuna, or drop "
                        f"sampler ({spec.search.algorithm} search would ignore it)", ("search", "sampler"))
    fixed = {k: p.value for k, p in space.items() if isinstance(p, Fixed)}
    for i, point in enumerate(spec.search.points_to_evaluate):
        full = {**fixed, **point}
        for k, v in point.items():
            where = ("search", "points_to_evaluate", i, k)
            if k not in space:
                raise doc.error(f"unknown parameter {short(k)}{did_you_mean(k, space)}", where)
            p = space[k]
            if not can_be(p, v):
                raise doc.error(f"{short(v)} cannot be a value of {k}: it is {describe(p)}", where)
            if not p.applies(full):
                raise doc.error(f"{k} exists only {_conditions(p)}, which this point does not meet", where)
        if spec.search.algorithm == "grid":
            missing = [k for k in space.order if space[k].searched and space[k].applies(full) and k not in point]
            if missing:
                raise doc.error(f"a starting point of a grid search names every searched parameter; missing: "
                                f"{', '.join(missing)}", ("search", "points_to_evaluate", i))


def _conditions(p: Param) -> str:
    return "when " + " and ".join(f"{k} is {' or '.join(map(short, v))}" for k, v in p.when)
