"""The Ray rim of a trial: the only caller of tune.report / tune.get_checkpoint.

The driver imports this module to hand Tune its functions: torch is imported in the trial, not here.
"""
from __future__ import annotations

import functools
import sys
import tempfile
from typing import Any

from trainables.core.checkpoint import Cadence, load_state, save_state
from trainables.core.data import DatasetConfig
from trainables.core.training import clean_config


def classifier(config: dict[str, Any], *, dataset: DatasetConfig, epochs: int, threads: int = 1,
               performance: dict[str, Any] | None = None, checkpoint_every: int | None = 1) -> None:
    """A Ray Tune function trainable: one report per epoch, with a checkpoint when Cadence(checkpoint_every)
    says; resumes from one. `performance`: the spec's performance options (engine.run_trial's keywords)."""
    import torch
    from ray import tune

    from trainables.core.engine import run_trial
    from trainables.tune.data_parallel import assigned_gpu

    torch.set_num_threads(max(1, threads))
    _cap_malloc_arenas()
    start = _start_state(tune.get_checkpoint())
    gpu = assigned_gpu()  # the engine trains on it: Ray set CUDA_VISIBLE_DEVICES to it

    cadence = Cadence(checkpoint_every, epochs)

    def report(metrics: dict[str, Any], state) -> None:
        if gpu is not None:
            metrics = {**metrics, "gpu_id": gpu}  # which GPU (Ray's id on the node) the trial used
        if not cadence.due(int(metrics["epoch"])):
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            save_state(state(), d)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    try:
        run_trial(clean_config(config), dataset=dataset, epochs=epochs, report=report, start=start,
                  **(performance or {}))
    finally:
        _trim_malloc()  # what this trial freed goes back to the system before the actor's next trial


MALLOC_ARENAS = 2


@functools.cache
def _glibc():
    """glibc, for its malloc tuning; None elsewhere (other platforms and libcs go untuned)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@functools.cache
def _cap_malloc_arenas() -> None:
    """Each trial runs in a new thread of a reused actor, and glibc gives every new thread its
    own malloc arena, which keeps what the trial freed: a reused actor grew by ~150 MB a trial.
    Capped (once per process), later trials' threads share the arenas that exist."""
    if _glibc() is not None:
        _glibc().mallopt(-8, MALLOC_ARENAS)  # M_ARENA_MAX


def _trim_malloc() -> None:
    if _glibc() is not None:
        _glibc().malloc_trim(0)


def _start_state(checkpoint) -> dict[str, Any] | None:
    """The state a trial resumes from: after a failure, on --resume, or cloned by PBT."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return load_state(d)


def program(config: dict[str, Any], *, file: str, command: list[str], metric: str, sweep: str, home: str,
            paths: dict[str, list[str]]) -> None:
    """A Ray Tune function trainable for `trainable: program`: the user's script, its wandb.log rows
    reported (tune/program.py)."""
    from ray import tune

    from trainables.tune.program import run_program

    ctx = tune.get_context()
    run_program(config, file=file, command=command, metric=metric, report=tune.report,
                workdir=ctx.get_trial_dir(), trial_id=ctx.get_trial_id(), sweep=sweep, home=home,
                paths=paths)


def data_parallel(config: dict[str, Any], *, dataset: DatasetConfig, epochs: int, resources, max_failures: int,
                  train_storage: str, performance: dict[str, Any] | None = None) -> None:
    """A Ray Tune function trainable for resources.workers > 1: one Ray Train run per trial
    (trainables.tune.data_parallel), its per-epoch metrics and checkpoints reported to Tune as
    `classifier` reports its own."""
    from ray import tune

    from trainables.tune.data_parallel import fit_data_parallel

    def report(metrics: dict[str, Any], checkpoint) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint(checkpoint.path, checkpoint.filesystem) if checkpoint else None)

    fit_data_parallel(clean_config(config), dataset=dataset, epochs=epochs, resources=resources,
                      max_failures=max_failures,
                      storage_path=train_storage, name=f"trial_{tune.get_context().get_trial_id()}",
                      start=_start_state(tune.get_checkpoint()), report=report, performance=performance)
