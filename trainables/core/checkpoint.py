"""A trial's checkpoint: one state.pt (model, optimiser, scheduler, epoch, training keys) in a folder."""
from __future__ import annotations

import os
from typing import Any

STATE_FILE = "state.pt"


def save_state(state: dict[str, Any], folder: str) -> None:
    import torch

    torch.save(state, os.path.join(folder, STATE_FILE))


def load_state(folder: str) -> dict[str, Any]:
    """The state saved in folder; weights_only: a checkpoint is data, never code."""
    import torch

    return torch.load(os.path.join(folder, STATE_FILE), map_location="cpu", weights_only=True)


class Cadence:
    """When a trial saves its checkpoint (what a failed or resumed trial goes on from): every `every`
    epochs, or, with every=None, at the first epoch end `seconds` after the last save; always after
    the last epoch. A checkpoint costs a save, a copy into the sweep's storage and, every few, Tune's
    snapshot of the whole experiment: on 2-second trials that was a third of the trial's time."""

    def __init__(self, every: int | None, epochs: int, seconds: float = 30.0, clock=None):
        import time

        self.every, self.epochs, self.seconds = every, epochs, seconds
        self.clock = clock or time.monotonic
        self.last = self.clock()

    def due(self, epoch: int) -> bool:
        now = self.clock()
        if epoch >= self.epochs or (self.every and epoch % self.every == 0) or (
                self.every is None and now - self.last >= self.seconds):
            self.last = now
            return True
        return False
