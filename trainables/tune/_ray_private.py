"""Every use of Ray's internals, in one place: a Ray upgrade that moves them breaks only here.

What `tune run --resume` mends before Tune restarts a sweep's unfinished trials:

Tune restores each trial from the checkpoint its last experiment-state snapshot names. It deletes
a trial's older checkpoints (CheckpointConfig.num_to_keep) as soon as it registers a newer one,
and writes the snapshot that names the newer one a moment later: a driver killed in between
leaves a snapshot naming a checkpoint that is gone, and Tune's restore then fails the trial
("Could not recover from checkpoint as it does not exist on storage anymore"). Such a trial
starts again instead: the checkpoints it wrote after that snapshot are not in its result.json
(saved with the snapshot), so going on from one would leave epochs missing from its history.
"""
from __future__ import annotations


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


def attach(tuner, callback) -> None:
    """Make sure a restored Tuner calls `callback`. A restored Tuner keeps the callbacks pickled in
    its tuner.pkl (ours come back as the live tracker's); a sweep started without one has none
    of it, so it is added to the restored run config (a private attribute of the Tuner)."""
    run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
    if run_config is None:
        return
    callbacks = list(run_config.callbacks or [])
    if not any(c is callback for c in callbacks):
        run_config.callbacks = callbacks + [callback]


def train_v2_enabled() -> tuple[bool, str]:
    """Whether Ray Train V2 (what data-parallel trials use) is on, and the variable that switches it."""
    from ray.train.v2._internal.constants import V2_ENABLED_ENV_VAR, is_v2_enabled

    return is_v2_enabled(), V2_ENABLED_ENV_VAR


def set_stopper(tuner, stopper) -> None:
    """The Tuner's stopper (RunConfig.stop), also on a restored Tuner (whose run config is private)."""
    run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
    if run_config is not None:
        run_config.stop = stopper


def address_file() -> str:
    """Where `ray start` records the address of the cluster it started (Ray's temp folder)."""
    from ray._private.utils import get_ray_address_file

    return get_ray_address_file(None)


def recorded_address() -> str | None:
    """The address in Ray's address file, or None."""
    from ray._private.utils import read_ray_address

    try:
        return read_ray_address(None) or None
    except OSError:
        return None


def optuna_study(searcher):
    """The Optuna study inside Ray's OptunaSearch (created when it has its space, metric and mode)."""
    return searcher._ot_study


def fail_orphan_trials(searcher) -> int:
    """In a restored OptunaSearch, the study's RUNNING trials that no restored Tune trial will finish
    (asked for after the last snapshot) marked FAIL; how many."""
    import optuna

    study = optuna_study(searcher)
    if study is None:
        return 0
    mine = {t._trial_id for t in searcher._ot_trials.values()}
    orphans = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
               if t._trial_id not in mine]
    for t in orphans:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    return len(orphans)


def set_milestones(scheduler, milestones: list[int]) -> None:
    """ASHA comparing trials at exactly these epochs (W&B hyperband's bands), not grace x factor^k."""
    for bracket in scheduler._brackets:
        bracket._rungs = [(m, {}) for m in sorted(milestones, reverse=True)]  # ASHA keeps the last first


def optuna_trial(searcher, trial_id: str):
    """The Optuna trial OptunaSearch asked for this Tune trial."""
    return searcher._ot_trials[trial_id]


def forget_trial(searcher, trial_id: str) -> None:
    """OptunaSearch no longer holds an Optuna trial for this Tune trial id (it is about to ask another)."""
    searcher._ot_trials.pop(trial_id, None)


def refresh_saved_result(trial) -> None:
    """The trial's state, as Tune saves it next, made from its last result as it is now: Tune caches
    that JSON and marks a trainable that returned done by changing the cached result in place."""
    trial.run_metadata.invalidate_cache()
    trial.invalidate_json_state()
