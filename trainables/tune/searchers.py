"""`search.algorithm: grid`: every combination of the space, conditionals honoured, as a Ray Tune Searcher.

Ray's own grid_search crosses every grid with every other, so a conditional parameter
would multiply branches where it does not exist; this searcher hands out the exact list.
"""
from __future__ import annotations

import pickle
from typing import Any, Mapping

from ray.tune.search import Searcher

from trainables.results.layout import record_skipped
from trainables.search.feasible import Feasibility, infeasible
from trainables.spec.space import Fixed, Param, grid_points


class GridSearch(Searcher):
    def __init__(self, space: Mapping[str, Param], *, repeats: int = 1, points: list[dict[str, Any]] = (),
                 feasibility: Feasibility | None = None):
        super().__init__()
        self.feasibility = feasibility
        self.skipped = 0  # combinations never trained: they violate the constraints
        # points_to_evaluate first, completed with the fixed values (checks.py made sure they name every
        # searched parameter that applies): a trial must never fall back on a model's defaults unseen.
        fixed = {k: p.value for k, p in space.items() if isinstance(p, Fixed)}
        self.points = [{**fixed, **p} for p in points] + grid_points(space) * repeats
        self.next = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        while self.next < len(self.points):
            self.next += 1
            point = dict(self.points[self.next - 1])
            violations = self.feasibility.violations(point) if self.feasibility else []
            if not infeasible(violations):
                return point
            self.skipped += 1
            record_skipped(self.feasibility.sweep_path, point, violations)
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump((self.points, self.next, self.skipped), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.points, self.next, self.skipped = pickle.load(f)

