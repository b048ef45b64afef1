"""The retrained best model's record in the sweep folder: retrain.json, its weights (best_model.pt) and the
model as an MLflow model folder (best_model/)."""
from __future__ import annotations


import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from trainables.results.layout import (
    MODEL_DIR,
    MODEL_FILE,
    RETRAIN_FILE,
    atomic_write,
    is_remote,
    read_json,
    write_json,
)


def save_retrained(sweep_path: str, *, trial_id: str, config: dict[str, Any], epochs: int, retrained,
                   node: str | None = None, node_id: str | None = None) -> dict[str, Any]:
    """Write <sweep>/retrain.json, the weights (<sweep>/best_model.pt) and the MLflow model folder
    (<sweep>/best_model/) of a core.retrained.Packed; returns the record."""
    info = {
        "trial_id": trial_id, "config": config, "epochs": epochs, "node": node, "node_id": node_id,
        "precision": getattr(retrained, "precision", "fp32"),
        "test_acc": retrained.test_acc, "test_loss": retrained.test_loss,
        "history": [{k: v for k, v in row.items() if isinstance(v, (int, float))} for row in retrained.history],
        "classes": retrained.classes, "model_file": MODEL_FILE,
    }
    if not is_remote(sweep_path):
        folder = Path(sweep_path)
        if (folder / MODEL_FILE).is_dir() and not (folder / MODEL_FILE).is_symlink():
            shutil.rmtree(folder / MODEL_FILE)  # a damaged folder: no file can be renamed over a folder
        atomic_write(folder / MODEL_FILE, retrained.weights)
        if retrained.files:
            write_model_folder(retrained.files, folder / MODEL_DIR)
            info["model_dir"] = MODEL_DIR
        if retrained.package_error:
            info["package_error"] = retrained.package_error
        write_json(folder / RETRAIN_FILE, info)
    return info


def write_model_folder(files: dict[str, bytes], dest: Path) -> Path:
    """The MLflow model folder's files written under dest (an earlier one replaced); a path that would
    leave dest is refused (ValueError)."""
    dest = Path(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for rel, data in files.items():
            target = (tmp / rel).resolve()
            if Path(rel).is_absolute() or not target.is_relative_to(tmp.resolve()):
                raise ValueError(f"a model file outside its folder: {rel!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _clear(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _clear(path: Path) -> None:
    """Whatever is at path (an earlier model, or what a damaged folder holds there: a file, a link, a
    folder) removed, so that the new one can take its place."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def update_retrained(sweep_path: str, **fields: Any) -> None:
    """Add fields (the logged model's URI, its registered version) to retrain.json."""
    info = load_retrained(sweep_path)
    if info is not None and not is_remote(sweep_path):
        write_json(Path(sweep_path) / RETRAIN_FILE, {**info, **fields})


def load_retrained(sweep_path: str) -> dict[str, Any] | None:
    if is_remote(sweep_path):
        return None
    info = read_json(Path(sweep_path) / RETRAIN_FILE)
    return info if _well_formed(info) else None


def _well_formed(info: Any) -> bool:
    """A record as retrain writes it (the report reads these fields); a damaged one is as good as none."""
    def number(v: Any) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))  # NaN: a diverged run

    return (isinstance(info, dict) and isinstance(info.get("trial_id"), str)
            and isinstance(info.get("epochs"), int) and not isinstance(info.get("epochs"), bool)
            and isinstance(info.get("history", []), list)
            and all(isinstance(r, dict) and isinstance(r.get("epoch"), int) and all(
                number(r.get(k)) for k in ("val_acc", "train_acc", "val_loss", "train_loss"))
                    for r in info.get("history", []))
            and all(number(info.get(k)) for k in ("test_acc", "test_loss")))


def model_file(sweep_path: str) -> Path:
    """Where the retrained model's weights are."""
    return Path(sweep_path) / MODEL_FILE


def model_dir(sweep_path: str, info: dict[str, Any]) -> Path | None:
    """Where the record's MLflow model folder is; None if it has none (made before there was one, or it
    could not be packed). Always best_model/ in the sweep folder: a retrain.json naming another folder
    is not followed (it would be logged to the tracking server as the model)."""
    path = Path(sweep_path) / MODEL_DIR
    return path if info.get("model_dir") and (path / "MLmodel").is_file() else None
