"""The optuna search with its study in the sweep folder (optuna.db): for --resume and optuna-dashboard."""
from __future__ import annotations

from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from trainables.results.layout import record_skipped
from trainables.search.feasible import MAX_SKIPS, Feasibility, infeasible
from trainables.tune import _ray_private


class StudySearch(OptunaSearch):
    """OptunaSearch whose study lives in a file. The file is written as trials report and end, the pickled
    searcher only at Tune's snapshots: after a killed driver the study may know more than the restored
    searcher. What the study already has is kept, and what the restored searcher will never finish (a
    trial asked for after the last snapshot) is marked failed.

    With `constraints:`, a configuration that violates them is never handed to Tune (suggest)."""

    def __init__(self, *args, feasibility: Feasibility | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.feasibility = feasibility
        self.skipped = 0  # configurations never trained: they violate the constraints

    def suggest(self, trial_id: str):
        """The next configuration that satisfies the constraints; each one that does not is told to the
        study as infeasible (Optuna's constraint values, which its samplers rank below every feasible
        trial) and skipped."""
        for _ in range(MAX_SKIPS):
            config = super().suggest(trial_id)
            if not self.feasibility or not isinstance(config, dict):
                return config
            violations = self.feasibility.violations(config)
            trial = _ray_private.optuna_trial(self, trial_id)
            for i, v in enumerate(violations):  # Optuna's samplers read them: > 0 is infeasible
                trial.set_constraint(f"constraint_{i}", v)
            if not infeasible(violations):
                return config
            self.skipped += 1
            record_skipped(self.feasibility.sweep_path, config, violations)
            values = [0.0] * len(self.metric) if isinstance(self.metric, list) else 0.0  # unused: infeasible
            _ray_private.forget_trial(self, trial_id)
            _ray_private.optuna_study(self).tell(trial, values)
        return Searcher.FINISHED  # nothing left that may train

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass  # it ended in the study before the kill; Tune trains its last epochs again

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        _ray_private.fail_orphan_trials(self)
