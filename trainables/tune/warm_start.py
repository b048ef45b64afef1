"""search.warm_start: the finished trials of earlier sweeps given to this sweep's Optuna study as observations
before its first trial (seed 004's random-then-Bayesian sweeps; seed 000's related architectures).

Earlier sweeps are read from their JSON results, never from pickled state. A trial is used when its
configuration fits this sweep's space: parameters this space does not have are dropped, and a trial
missing a searched parameter that applies, or with a value outside its range, is skipped. A trial
that a scheduler stopped early counts with the value it reached, flagged as such.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainables.errors import SpecError
from trainables.results.read import load_sweep
from trainables.search.optuna import distribution, encode_trial
from trainables.spec.schema import Spec
from trainables.spec.space import Fixed, can_be


@dataclass
class Warm:
    """What to give the study: (params as Optuna sees them, value, user attributes) per trial."""

    trials: list[tuple[dict[str, Any], float, dict[str, Any]]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # what was used, and why the rest was not


def gather(spec: Spec, storage: str | None) -> Warm:
    """The usable trials of spec.search.warm_start; SpecError naming a sweep that cannot be read."""
    warm = Warm()
    space = spec.space
    searched = {k: p for k, p in space.items() if p.searched}
    fixed = [k for k, p in space.items() if isinstance(p, Fixed)]
    seen: set[str] = set()
    for name in spec.search.warm_start:
        try:
            earlier = load_sweep(name, storage)
        except SpecError as e:
            raise SpecError(f"warm_start: {e.message}", file=spec.source, path="search.warm_start") from None
        if earlier.path in seen:  # named twice (a name and its folder): its trials count once
            continue
        seen.add(earlier.path)
        if earlier.spec.metric != spec.metric or earlier.spec.mode != spec.mode:
            raise SpecError(f"warm_start: sweep {earlier.spec.name!r} optimised {earlier.spec.metric} "
                            f"({earlier.spec.mode}), this one {spec.metric} ({spec.mode})", file=spec.source,
                            path="search.warm_start")
        used, stopped, why, other = 0, 0, {}, {}
        for t in earlier.trials:
            value = t.value(spec.metric)
            if value is None or t.status == "errored":
                why["no value"] = why.get("no value", 0) + 1
                continue
            params = encode_trial(space, t.config)
            applying = {k for k, p in searched.items() if p.applies(t.config)}
            missing = applying - set(params)
            if missing:
                reason = f"outside this space or without {', '.join(sorted(missing))}"
                why[reason] = why.get(reason, 0) + 1
                continue
            attrs = {"warm_start_from": earlier.spec.name, "warm_start_trial": t.trial_id,
                     "stopped_early": t.status == "stopped early", "epochs": t.epochs}
            warm.trials.append((params, value, attrs))
            used += 1
            for k in fixed:  # model: cnn here, resnet18 there (seed 000): used, and said
                if k in t.config and not can_be(space[k], t.config[k]):
                    other[k] = other.get(k, 0) + 1
            stopped += t.status == "stopped early"
        dropped = sorted(set().union(*(t.config for t in earlier.trials)) - set(space)) if earlier.trials else []
        line = (f"warm start: {used} of {len(earlier.trials)} trials of sweep {earlier.spec.name!r} given to the "
                f"search ({stopped} of them stopped early, with the value they reached)")
        if why:
            line += "; not used: " + ", ".join(f"{n} ({r})" for r, n in why.items())
        if other:
            line += "; used, though they ran with another value of what this sweep fixes: " + ", ".join(
                f"{k} ({n} trials)" for k, n in sorted(other.items()))
        if dropped:
            line += f"; parameters this sweep does not have, dropped: {', '.join(dropped)}"
        if unlike := _unlike(earlier.spec, spec):  # its values may not compare with this sweep's
            line += f"; it differs from this sweep in {unlike}"
        warm.lines.append(line)
    return warm


def _unlike(earlier: Spec, spec: Spec) -> str:
    """The settings outside `parameters` under which the earlier sweep's values were reached, where they differ."""
    pairs = [("epochs", earlier.epochs, spec.epochs)] + [
        (f"dataset.{k}", getattr(earlier.dataset, k), getattr(spec.dataset, k))
        for k in ("name", "root", "image_size", "limit", "val_fraction", "test_fraction", "seed")]
    return ", ".join(f"{k} ({a} there, {b} here)" for k, a, b in pairs if a != b)


def add_to_study(study, spec: Spec, warm: Warm) -> None:
    """Each warm trial as a finished trial of the study (with the distributions this space gives)."""
    import optuna

    dists = {k: distribution(p) for k, p in spec.space.items() if p.searched}
    for params, value, attrs in warm.trials:
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=value, user_attrs=attrs))
