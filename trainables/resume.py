"""What `tune run --resume` mends before Tune restarts a sweep's unfinished trials.

Tune restores each trial from the checkpoint its last experiment-state snapshot names. It deletes
a trial's older checkpoints (CheckpointConfig.num_to_keep) as soon as it registers a newer one,
and writes the snapshot that names the newer one a moment later: a driver killed in between
leaves a snapshot naming a checkpoint that is gone, and Tune's restore then fails the trial
("Could not recover from checkpoint as it does not exist on storage anymore"). Such a trial
starts again instead: the checkpoints it wrote after that snapshot are not in its result.json
(saved with the snapshot), so going on from one would leave epochs missing from its history.
"""
from __future__ import annotations

import sys
from typing import TextIO


def mend_trial(trial) -> str | None:
    """Let a restored, unfinished trial whose checkpoint is gone start again; a line saying so,
    or None when its checkpoint is there."""
    from ray.train._internal.storage import _exists_at_fs_path

    def exists(checkpoint) -> bool:
        return _exists_at_fs_path(checkpoint.filesystem, checkpoint.path)

    named = trial.checkpoint
    if trial.status not in ("PENDING", "PAUSED") or named is None or exists(named):
        return None
    manager = trial.run_metadata.checkpoint_manager
    # Forgotten, or Tune would restore from it, or try to delete it again and fail.
    manager._checkpoint_results = [r for r in manager._checkpoint_results if exists(r.checkpoint)]
    manager._latest_checkpoint_result = None
    trial.invalidate_json_state()
    trial.run_metadata.invalidate_cache()
    name = named.path.rstrip("/").rsplit("/", 1)[-1]
    return (f"resume: trial {trial.trial_id}'s {name}, named by the sweep's last saved state, is gone "
            f"(Ray deleted it before saving the state again); the trial starts again")


def mend_callback(stream: TextIO | None = None):
    """A Tune callback that mends every restored trial once, before the first is started."""
    from ray.tune import Callback

    class MendCheckpoints(Callback):
        def __init__(self):
            self.done = False

        def on_step_begin(self, iteration, trials, **info):
            if self.done:
                return
            self.done = True
            for trial in trials:
                try:
                    line = mend_trial(trial)
                except (AttributeError, ImportError) as e:  # Ray's internals moved (ray>=2.40 is allowed)
                    line = f"resume: could not check trial {trial.trial_id}'s checkpoint ({e}); Tune restores it as saved"
                if line:
                    print(line, file=stream or sys.stdout, flush=True)

    return MendCheckpoints()
