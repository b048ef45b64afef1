"""What is logged of a trial: its metrics, epoch, params, node tags and error, taken from Ray's results."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from trainables.errors import redact
from trainables.results.read import RAY_KEYS
from trainables.results.trials import flat


def metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    """The model's numeric metrics in a Ray result (or a history row): no Ray internals, no config."""
    out = {}
    for k, v in flat(result).items():  # a nested value as Ray Tune names it: val/acc
        if k in RAY_KEYS or k.startswith("config/") or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out[k] = float(v)
    return out


def mlflow_key(key: str) -> str:
    """key as MLflow takes a metric or param name: a character it refuses (`acc@1`) as `_`, no path that
    normalises to another name (`a//b`, `../x`), at most 250 characters. A name MLflow takes is kept.
    (The server refuses a whole batch for one such name: every metric of those epochs was lost.)"""
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, path_not_unique, validate_param_and_metric_name

    key = str(key)
    if len(key) <= MAX_ENTITY_KEY_LENGTH and validate_param_and_metric_name(key) and not path_not_unique(key):
        return key
    name = re.sub(r"[^/\w.\- :]", "_", key)[:MAX_ENTITY_KEY_LENGTH - 1]
    name = "/".join(part if part.strip(".") else "_" for part in name.split("/") if part) or "_"
    return "_" + name if path_not_unique(name) else name


def step_of(result: Mapping[str, Any], *, by_epoch: bool = True) -> int | None:
    """The step of a result in MLflow: the classifier's `epoch` (by_epoch); else Ray's iteration, one per
    report (a user's own `epoch`, logged with each batch of a W&B script, or from 0, is not a step: all
    but one report of each were dropped as sent already)."""
    v = result.get("epoch", result.get("training_iteration")) if by_epoch else result.get("training_iteration")
    try:
        return int(v) if v is not None and math.isfinite(float(v)) else None
    except (TypeError, ValueError):
        return None


def param_value(v: Any) -> str:
    """A config value as an MLflow param: lists and mappings as JSON, the rest as text; a URI's
    credentials elided (a weights URL, a data source)."""
    return redact(json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v))


def node_tags(result: Mapping[str, Any]) -> dict[str, str]:
    """node: Ray's hostname (ip) of the trial's worker; gpu: the GPU id the classifier reported, or none;
    precision, when the trial reported it."""
    host, ip, gpu = result.get("hostname"), result.get("node_ip"), result.get("gpu_id")
    tags = {}
    if host or ip:
        tags["node"] = f"{host} ({ip})" if host and ip and host != ip else str(host or ip)
    if isinstance(gpu, (int, float)) and not isinstance(gpu, bool) and math.isfinite(gpu):
        tags["gpu"] = str(int(gpu))
    elif isinstance(gpu, str) and gpu:
        tags["gpu"] = gpu
    else:
        tags["gpu"] = "none"
    if isinstance(result.get("precision"), str):
        tags["precision"] = result["precision"]  # what the trial trained in: fp32, bf16 or fp16
    return tags


def error_text(error_file: str | None) -> str | None:
    """The last line of a trial's error file (the exception), or None."""
    if not error_file:
        return None
    try:
        lines = [ln for ln in Path(error_file).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "errored"
    return lines[-1].strip() if lines else "errored"


def dataset_input(spec) -> Any:
    """The sweep's dataset as an MLflow dataset input (the runs table's Dataset column)."""
    import hashlib

    from mlflow.entities import Dataset, DatasetInput, InputTag

    d = spec.dataset
    described = json.dumps(d.model_dump(mode="json"), sort_keys=True)
    source = d.root or {"digits": "sklearn.datasets.load_digits", "fake": "torchvision.datasets.FakeData"}.get(
        d.name, d.name)
    name = d.name if d.limit is None else f"{d.name} (first {d.limit})"
    dataset = Dataset(name=name, digest=hashlib.sha256(described.encode()).hexdigest()[:8],
                      source_type="local" if d.root else "code", source=json.dumps({"uri": redact(str(source))}),
                      schema=None, profile=json.dumps({"image_size": d.image_size, "val_fraction": d.val_fraction}))
    return DatasetInput(dataset=dataset, tags=[InputTag("mlflow.data.context", "training")])
