"""NullTracker: the tracker of a sweep with tracking.enabled false; the Tracker's interface, doing nothing."""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from trainables.spec.schema import Spec


class NullTracker:
    """Stands in for trainables.tracking.runs.Tracker so that callers never ask whether tracking is on."""

    parent_id = None

    def __init__(self, spec: Spec | None = None, sweep_path: str = "", *, resume: bool = False, stream=None):
        self.spec, self.path, self.resume, self.stream = spec, sweep_path, resume, stream

    def check(self) -> None:
        pass

    def start(self) -> None:
        return None  # no parent run

    def where(self) -> list[str]:
        return []

    def log_spec(self) -> None:
        pass

    def guard(self, hook: str, fn: Callable[[], None]) -> None:
        pass  # the hook's work only feeds a tracker: there is none

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        pass

    def trial_result(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        pass

    def trial_ended(self, trial_id: str, status: str, error: str | None = None, error_file: str | None = None) -> None:
        pass

    def tick(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def sync(self, sweep, *, close: bool = True) -> None:
        pass

    def log_retrained(self, info: dict[str, Any], model_folder: Callable[[], str | None],
                      on_logged: Callable[[dict[str, Any]], None]) -> None:
        pass  # model_folder is not called: nobody logs the model

    def log_report(self, folder: str | os.PathLike) -> None:
        pass

    def finish(self, sweep, *, wall_seconds: float, status: str = "FINISHED", wait: float | None = None) -> bool:
        return True

    def wait(self, timeout: float | None = None, *, quiet: bool = False) -> bool:
        return True

    def close(self) -> None:
        pass
