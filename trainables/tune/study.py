"""The optuna search with its study in the sweep folder (optuna.db): for --resume and optuna-dashboard."""
from __future__ import annotations

from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from trainables.results.layout import record_skipped
from trainables.results.read import STOPPED
from trainables.search.feasible import MAX_SKIPS, Feasibility, infeasible
from trainables.tune import _ray_private


class StudySearch(OptunaSearch):
    """OptunaSearch whose study lives in a file. The file is written as trials report and end, the pickled
    searcher only at Tune's snapshots: after a killed driver the study may know more than the restored
    searcher. What the study already has is kept, and what the restored searcher will never finish (a
    trial asked for after the last snapshot) is marked failed.

    A trial the scheduler stopped early is told to the study as PRUNED at the epoch it reached, not as
    COMPLETE with its early value: TPE then ranks it below every trial that trained to the end (by how
    far it got, then its value), as Optuna's own pruners have it, instead of taking an epoch-1 value for
    what the configuration can do."""

    def __init__(self, *args, epochs: int, feasibility: Feasibility | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.epochs = epochs
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
            self._ot_study.tell(trial, values)
        return Searcher.FINISHED  # nothing left that may train

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if isinstance(self.metric, list):  # several objectives: no scheduler stops a trial early
            return super().on_trial_complete(trial_id, result=result, error=error)
        step = (result or {}).get("training_iteration")
        value = (result or {}).get(self.metric)
        stopped = bool(result and result.get(STOPPED)) and not error and isinstance(step, int) and step < self.epochs
        if stopped and isinstance(value, (int, float)) and _ray_private.report_last(self, trial_id, value, step):
            return super().on_trial_complete(trial_id, result=None)  # no value: PRUNED, at its last report
        return super().on_trial_complete(trial_id, result=result, error=error)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass  # it ended in the study before the kill; Tune trains its last epochs again

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        _ray_private.fail_orphan_trials(self)
