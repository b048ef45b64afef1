"""MLflow review of a sweep: a retrying sender, server checks, parent and child runs, models."""
from __future__ import annotations

from trainables.spec.schema import Spec
from trainables.tracking.null import NullTracker
from trainables.tracking.runs import Tracker

__all__ = ["NullTracker", "Tracker", "open_tracker"]


def open_tracker(spec: Spec, sweep_path: str, *, resume: bool = False, stream=None) -> Tracker | NullTracker:
    """The sweep's tracker: a Tracker when spec.tracking.enabled, else a NullTracker that does nothing."""
    cls = Tracker if spec.tracking.enabled else NullTracker
    return cls(spec, sweep_path, resume=resume, stream=stream)
