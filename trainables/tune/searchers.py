"""`search.algorithm: grid`: every combination of the space, conditionals honoured, as a Ray Tune Searcher.

Ray's own grid_search crosses every grid with every other, so a conditional parameter
would multiply branches where it does not exist; this searcher hands out the exact list.
"""
from __future__ import annotations

import pickle
from typing import Any, Mapping

from ray.tune.search import Searcher

from trainables.spec.space import Fixed, Param, grid_points


class GridSearch(Searcher):
    def __init__(self, space: Mapping[str, Param], *, repeats: int = 1, points: list[dict[str, Any]] = ()):
        super().__init__()
        # points_to_evaluate first, completed with the fixed values (checks.py made sure they name every
        # searched parameter that applies): a trial must never fall back on a model's defaults unseen.
        fixed = {k: p.value for k, p in space.items() if isinstance(p, Fixed)}
        self.points = [{**fixed, **p} for p in points] + grid_points(space) * repeats
        self.next = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.next >= len(self.points):
            return Searcher.FINISHED
        self.next += 1
        return dict(self.points[self.next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump((self.points, self.next), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.points, self.next = pickle.load(f)

