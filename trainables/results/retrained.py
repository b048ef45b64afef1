"""The retrained best model's record in the sweep folder: retrain.json and its weights, best_model.pt."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trainables.results.layout import MODEL_FILE, RETRAIN_FILE, is_remote, read_json, write_json


def save_retrained(sweep_path: str, *, trial_id: str, config: dict[str, Any], epochs: int, retrained,
                   node: str | None = None, node_id: str | None = None) -> dict[str, Any]:
    """Write <sweep>/retrain.json and the weights (<sweep>/best_model.pt); returns the record."""
    info = {
        "trial_id": trial_id, "config": config, "epochs": epochs, "node": node, "node_id": node_id,
        "precision": getattr(retrained, "precision", "fp32"),
        "test_acc": retrained.test_acc, "test_loss": retrained.test_loss,
        "history": [{k: v for k, v in row.items() if isinstance(v, (int, float))} for row in retrained.history],
        "classes": retrained.classes, "model_file": MODEL_FILE,
    }
    if not is_remote(sweep_path):
        import torch

        torch.save(retrained.model.state_dict(), Path(sweep_path) / MODEL_FILE)
        write_json(Path(sweep_path) / RETRAIN_FILE, info)
    return info


def update_retrained(sweep_path: str, **fields: Any) -> None:
    """Add fields (the logged model's URI, its registered version) to retrain.json."""
    info = load_retrained(sweep_path)
    if info is not None and not is_remote(sweep_path):
        write_json(Path(sweep_path) / RETRAIN_FILE, {**info, **fields})


def load_retrained(sweep_path: str) -> dict[str, Any] | None:
    if is_remote(sweep_path):
        return None
    info = read_json(Path(sweep_path) / RETRAIN_FILE)
    return info if isinstance(info, dict) else None


def model_file(sweep_path: str, info: dict[str, Any]) -> Path:
    """Where the record's weights are."""
    return Path(sweep_path) / info.get("model_file", MODEL_FILE)
