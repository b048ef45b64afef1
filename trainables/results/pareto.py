"""Several objectives: which trials are Pareto-optimal, which of them is `best` (final.select), and the
hypervolume a set of trials reaches (the bench's measure of a multi-objective search)."""
from __future__ import annotations

from typing import Sequence


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """a is at least as good as b on every objective and better on one."""
    better = False
    for x, y, mode in zip(a, b, modes, strict=True):
        if (x < y) if mode == "max" else (x > y):
            return False
        better = better or x != y
    return better


def front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates (ties: each of them), in their order."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p, modes) for j, q in enumerate(points) if j != i)]


def hypervolume(points: Sequence[Sequence[float]], modes: Sequence[str], reference: Sequence[float]) -> float:
    """The area (two objectives) dominated by the points and bounded by the reference point, which every
    objective's worst acceptable value makes. Larger is better."""
    if len(modes) != 2:
        raise ValueError("hypervolume is computed for two objectives")
    # as minimisation: max objectives negated, then a sweep over the first objective
    flip = [(-1.0 if m == "max" else 1.0) for m in modes]
    ref = [r * f for r, f in zip(reference, flip, strict=True)]
    pts = sorted({(p[0] * flip[0], p[1] * flip[1]) for p in points if p[0] * flip[0] < ref[0] and
                  p[1] * flip[1] < ref[1]})
    area, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area
