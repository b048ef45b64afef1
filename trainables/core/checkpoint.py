"""A trial's checkpoint: one state.pt (model, optimiser, scheduler, epoch, training keys) in a folder."""
from __future__ import annotations

import os
from typing import Any

import torch

STATE_FILE = "state.pt"


def save_state(state: dict[str, Any], folder: str) -> None:
    torch.save(state, os.path.join(folder, STATE_FILE))


def load_state(folder: str) -> dict[str, Any]:
    """The state saved in folder; weights_only: a checkpoint is data, never code."""
    return torch.load(os.path.join(folder, STATE_FILE), map_location="cpu", weights_only=True)
