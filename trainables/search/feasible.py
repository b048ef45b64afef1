"""`constraints:` applied to a configuration before it trains: the names they may use, and each one's violation.

A configuration whose violations are all 0 may train; any other is never trained (searchers skip it,
Optuna is told it is infeasible). The model's size comes from a meta-device build (core/size.py),
computed only when a constraint names it.
"""
from __future__ import annotations

import itertools
import json
from typing import Any

from trainables.core.size import SIZES
from trainables.spec.constraints import Constraint, ConstraintError
from trainables.spec.schema import Spec

MAX_SKIPS = 1_000  # configurations in a row that violate the constraints before the search gives up
DRAWS = 200  # configurations drawn before the sweep starts, to find one that satisfies the constraints


class Feasibility:
    """The spec's constraints, ready to check configurations; picklable (searchers are)."""

    def __init__(self, spec: Spec, sweep_path: str | None = None):
        self.constraints = [Constraint.parse(c) for c in spec.constraints]
        self.sweep_path = sweep_path  # where the searchers record what they skipped (results/layout.py)
        self.dataset = spec.dataset
        self.classifier = spec.trainable == "classifier"
        self.sized = self.classifier and any(n in SIZES for c in self.constraints for n in c.names)
        self._sizes: dict[str, dict[str, int]] = {}  # by the model's own hyperparameters: a resnet101 built once

    def __bool__(self) -> bool:
        return bool(self.constraints)

    def violations(self, config: dict[str, Any]) -> list[float]:
        """One value per constraint: 0 where it holds."""
        if not self.constraints:
            return []
        values = {k: v for k, v in config.items() if isinstance(v, (int, float))}
        if self.sized:  # the model built on the meta device: no memory, milliseconds (a resnet101: ~0.1 s)
            values.update(self._size(config))
        out = []
        for c in self.constraints:
            try:
                out.append(c.violation(values))
            except ConstraintError:
                out.append(1.0)  # cannot be computed for this configuration (a name absent in its branch): not run
        return out


    def _size(self, config: dict[str, Any]) -> dict[str, int]:
        from trainables.core.models import get_model
        from trainables.core.size import model_size

        try:
            fields = get_model(config.get("model", "cnn")).params.model_fields
        except (ValueError, TypeError):
            return model_size(config, self.dataset)  # (its error, as before)
        key = json.dumps({k: v for k, v in config.items() if k in fields or k == "model"}, sort_keys=True, default=str)
        if key not in self._sizes:
            self._sizes[key] = model_size(config, self.dataset)
        return self._sizes[key]


def infeasible(violations: list[float]) -> bool:
    return any(v > 0 for v in violations)


def check_feasible(spec: Spec) -> tuple[int, int]:
    """(configurations that satisfy the constraints, configurations tried): up to DRAWS random draws of the
    space (a grid: its first DRAWS points), stopping at the first that holds. (0, n) means the sweep
    would train nothing."""
    import optuna

    from trainables.search.optuna import DefineByRun
    from trainables.spec.space import grid_points

    feasibility = Feasibility(spec)
    if not feasibility:
        return 0, 0
    if spec.search.algorithm == "grid":
        configs = itertools.islice(grid_points(spec.space), DRAWS)
    else:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.search.seed))
        define = DefineByRun(spec.space)
        configs = (define(study.ask()) for _ in range(DRAWS))
    tried = 0
    for config in configs:
        tried += 1
        if not infeasible(feasibility.violations(config)):
            return 1, tried
    return 0, tried
