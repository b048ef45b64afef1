"""The optuna search with its study in the sweep folder (optuna.db): for --resume and optuna-dashboard."""
from __future__ import annotations

from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search.optuna import OptunaSearch

from trainables.tune import _ray_private


class StudySearch(OptunaSearch):
    """OptunaSearch whose study lives in a file. The file is written as trials report and end, the pickled
    searcher only at Tune's snapshots: after a killed driver the study may know more than the restored
    searcher. What the study already has is kept, and what the restored searcher will never finish (a
    trial asked for after the last snapshot) is marked failed."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass  # it ended in the study before the kill; Tune trains its last epochs again

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        _ray_private.fail_orphan_trials(self)
