"""The retrained best model on the parent run (its test metrics, the model, registered if asked), and reports."""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

from trainables.errors import SpecError, redact
from trainables.results.layout import read_run_file
from trainables.tracking.server import check_reachable, reason
from trainables.tracking.values import metrics_of, mlflow_key, param_value


def queue_retrained(submit: Callable[[str, Callable[[], None]], None], client, *, uri: str, parent_id: str,
                    experiment_id: str, info: dict[str, Any], folder: str | None, register: str | None,
                    on_logged: Callable[[dict[str, Any]], None]) -> None:
    """Queue test_acc/test_loss (and the retrain's epochs) on the parent, then the model (the MLflow model
    folder package_model made, registered under `register` unless None; None: no model to log);
    on_logged(model info) once it arrived."""
    import mlflow.models  # noqa: F401 - imported here, not on the sender thread: see below
    from mlflow.entities import Metric, RunTag

    try:  # mlflow imports IPython when it is installed; half-imported on the sender thread it
        import IPython  # noqa: F401  breaks matplotlib, which the report imports meanwhile
    except ImportError:
        pass
    now = int(time.time() * 1000)
    metrics = [Metric("test_acc", info["test_acc"], now, 0), Metric("test_loss", info["test_loss"], now, 0)]
    for row in info.get("history", []):
        metrics += [Metric(mlflow_key(f"retrain_{k}"), v, now, int(row["epoch"])) for k, v in metrics_of(row).items()]
    metrics = [m for m in metrics if math.isfinite(m.value)]
    tags = [RunTag("retrained_trial_id", info["trial_id"])]
    submit("the retrained model's test metrics", lambda: client.log_batch(parent_id, metrics=metrics, tags=tags))
    if folder is None:
        return
    params = {mlflow_key(k): param_value(v)[:6000] for k, v in info.get("config", {}).items()}
    submit("the retrained model", lambda: on_logged(log_model(client, uri, parent_id, experiment_id, folder, register,
                                                              params)))


def package_model(model, example) -> dict[str, bytes]:
    """The model as an MLflow model folder (its signature, this package's code, torch pinned), each file's
    relative path -> content. Called where the model is (the retrain's Ray task, with torch): the driver,
    which writes and logs the folder, never imports torch."""
    import tempfile
    from pathlib import Path

    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    import trainables

    model = model.cpu().eval()
    with torch.no_grad():
        signature = infer_signature(example.numpy(), model(example).numpy())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        mlflow.pytorch.save_model(
            model, str(path), signature=signature, serialization_format="pickle",
            code_paths=[os.path.dirname(trainables.__file__)],  # the model's classes, to load it anywhere
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*"))
                if f.is_file() and "__pycache__" not in f.parts}


class _Saved:
    """A flavor for MLflow's Model.log whose save_model copies a folder package_model made: MLflow's own
    logging (logged model, run output, registration) without the model object, which needs torch."""

    __name__ = "mlflow.pytorch"

    def __init__(self, folder: str):
        self.folder = folder

    def save_model(self, path: str, mlflow_model, **kwargs) -> None:
        import shutil

        from mlflow.models import Model

        shutil.copytree(self.folder, path)
        made = Model.load(path)
        mlflow_model.flavors, mlflow_model.signature = made.flavors, made.signature
        mlflow_model.saved_input_example_info = made.saved_input_example_info
        mlflow_model.model_size_bytes = made.model_size_bytes
        mlflow_model.save(os.path.join(path, "MLmodel"))


def log_model(client, uri: str, parent_id: str, experiment_id: str, folder: str, register: str | None,
              params: dict[str, str]) -> dict[str, Any]:
    """Log the model folder in the sweep's experiment, linked to the parent run, the best configuration as
    its params; its URI and registered version, also tagged on the parent. Runs on the sender thread."""
    import mlflow
    from mlflow.entities import RunTag
    from mlflow.models import Model

    old = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        # MLflow 3 puts a logged model in the *active* experiment (Default, id 0, in this process)
        # unless it is made first in the one it belongs to.
        pending = mlflow.initialize_logged_model(name="model", source_run_id=parent_id, experiment_id=experiment_id,
                                                 params=params, model_type="classifier")
        logged = Model.log(artifact_path=None, name="model", flavor=_Saved(folder), run_id=parent_id,
                           model_id=pending.model_id, registered_model_name=register, await_registration_for=60)
    finally:
        mlflow.set_tracking_uri(old)  # None: back to unset
    out = {"model_uri": logged.model_uri}
    tags = [RunTag("model_uri", logged.model_uri)]
    if register and logged.registered_model_version is not None:
        out.update(registered_model=register, registered_model_version=int(logged.registered_model_version))
        tags.append(RunTag("registered_model", f"{register} v{logged.registered_model_version}"))
    client.log_batch(parent_id, tags=tags)
    return out


_CREDENTIALS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                "MLFLOW_TRACKING_CLIENT_CERT_PATH")


def attach_report(sweep_path: str, folder: str | os.PathLike) -> str:
    """Attach a report folder to the sweep's parent run (from <sweep>/mlflow_run.json); a line
    saying what happened. `tune report` uses it; a tracking fault is reported, not raised."""
    saved = read_run_file(sweep_path)
    shown, run_id = saved.get("tracking_uri"), saved.get("run_id")
    if not isinstance(shown, str) or not isinstance(run_id, str) or not shown or not run_id:
        return "mlflow: this sweep has no MLflow parent run; the report is not attached"
    shown = redact(shown)  # as we write it; a run file from elsewhere may hold a password
    if shown.startswith("sqlite:///") and not os.path.isfile(shown[len("sqlite:///"):]):
        # MLflow would create a new database wherever a (copied, foreign) run file points
        return f"mlflow: the tracking database {shown} is not there; the report is not attached"
    # The run file keeps the URI without its credentials: they come back from the environment.
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    uri = env if env and redact(env) == shown else shown
    if "***" in uri:
        return (f"mlflow: the tracking server {shown} needs credentials: set MLFLOW_TRACKING_URI to its full URI "
                f"and run `tune report` again to attach the report")
    held = [k for k in _CREDENTIALS if os.environ.get(k)]
    if held and uri.split("://")[0].lower() in ("http", "https") and uri != env:
        # MLflow sends these to whatever server it talks to: never to one a sweep folder (from anywhere) names
        return (f"mlflow: the report is not attached: the sweep's run file names {shown}, and {', '.join(held)} "
                f"would be sent there; set MLFLOW_TRACKING_URI to {shown} if that is your server")
    try:
        check_reachable(uri, timeout=5.0, hint="run `tune report` again once it answers")
        from mlflow import MlflowClient

        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")  # MLflow's 120 s was two minutes of silence
        client = MlflowClient(tracking_uri=uri)
        try:
            run = client.get_run(run_id)
        except Exception as e:  # noqa: BLE001 - which fault: asked below
            if getattr(e, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                raise
            return f"mlflow: {shown} holds no run {run_id} (the sweep's parent run); the report is not attached"
        if run.info.lifecycle_stage == "deleted":  # MLflow takes artifacts for a run in its trash, unseen
            return (f"mlflow: the sweep's parent run {run_id} at {shown} is deleted; restore it (mlflow runs restore "
                    f"--run-id {run_id}) and run `tune report` again to attach the report")
        client.log_artifacts(run_id, str(folder), "report")
    except SpecError as e:  # a store that does not answer, or that MLflow refuses (a folder): said whole
        return f"mlflow: the report is not attached: {e.message}"
    except Exception as e:  # noqa: BLE001 - the report is written; attaching it is a bonus
        return (f"mlflow: could not attach the report to parent run {run_id} at {shown} ({reason(e)}); "
                f"run `tune report` again later")
    return f"mlflow: attached to parent run {run_id} at {shown} (artifacts: report/)"
