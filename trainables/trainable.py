"""The Ray rim of a trial: the only caller of tune.report / tune.get_checkpoint."""
from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from trainables.data import DatasetConfig
from trainables.engine import run_trial

STATE_FILE = "state.pt"


def clean_config(config: dict[str, Any]) -> dict[str, Any]:
    """The trial's hyperparameters: conditional parameters of other branches (None) dropped."""
    return {k: v for k, v in config.items() if v is not None}


def classifier(config: dict[str, Any], *, dataset: DatasetConfig, epochs: int, threads: int = 1) -> None:
    """A Ray Tune function trainable: one report (with a checkpoint) per epoch; resumes from one."""
    from ray import tune

    torch.set_num_threads(max(1, threads))
    start = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # resumed after a failure, or cloned by PBT
        with checkpoint.as_directory() as d:
            start = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)

    def report(metrics: dict[str, Any], state) -> None:
        with tempfile.TemporaryDirectory() as d:
            torch.save(state(), os.path.join(d, STATE_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    run_trial(clean_config(config), dataset=dataset, epochs=epochs, report=report, start=start)
