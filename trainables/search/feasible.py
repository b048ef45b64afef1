"""`constraints:` applied to a configuration before it trains: the names they may use, and each one's violation.

A configuration whose violations are all 0 may train; any other is never trained (searchers skip it,
Optuna is told it is infeasible). The model's size comes from a meta-device build (core/size.py),
computed only when a constraint names it.
"""
from __future__ import annotations

from typing import Any

from trainables.core.size import SIZES
from trainables.spec.constraints import Constraint, ConstraintError
from trainables.spec.schema import Spec

MAX_SKIPS = 10_000  # configurations in a row that violate the constraints before the search gives up


class Feasibility:
    """The spec's constraints, ready to check configurations; picklable (searchers are)."""

    def __init__(self, spec: Spec, sweep_path: str | None = None):
        self.constraints = [Constraint.parse(c) for c in spec.constraints]
        self.sweep_path = sweep_path  # where the searchers record what they skipped (results/layout.py)
        self.dataset = spec.dataset
        self.classifier = spec.trainable == "classifier"
        self.sized = self.classifier and any(n in SIZES for c in self.constraints for n in c.names)

    def __bool__(self) -> bool:
        return bool(self.constraints)

    def violations(self, config: dict[str, Any]) -> list[float]:
        """One value per constraint: 0 where it holds."""
        if not self.constraints:
            return []
        values = {k: v for k, v in config.items() if isinstance(v, (int, float))}
        if self.classifier:
            values.setdefault("image_size", self.dataset.image_size or 0)
        if self.sized:  # the model built on the meta device: milliseconds, no memory
            from trainables.core.size import model_size

            values.update(model_size(config, self.dataset))
        out = []
        for c in self.constraints:
            try:
                out.append(c.violation(values))
            except ConstraintError:
                out.append(1.0)  # cannot be computed for this configuration (a name absent in its branch): not run
        return out


def infeasible(violations: list[float]) -> bool:
    return any(v > 0 for v in violations)
