"""`search.algorithm: grid`: every combination of the space, conditionals honoured, as a Ray Tune Searcher.

Ray's own grid_search crosses every grid with every other, so a conditional parameter
would multiply branches where it does not exist; this searcher hands out the exact list.
"""
from __future__ import annotations

import pickle
from typing import Any

from ray.tune.search import Searcher

from trainables.space import Param, grid_points


class GridSearch(Searcher):
    def __init__(self, space: dict[str, Param], *, repeats: int = 1, points: list[dict[str, Any]] = ()):
        super().__init__()
        self.points = [dict(p) for p in points] + grid_points(space) * repeats  # points_to_evaluate first
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
