"""final.retrain_best where the trials train: a Ray task with the sweep's per-trial resources (a GPU node,
not the CPU head of a cluster), or the data-parallel Ray Train path for resources.workers > 1.

The driver gets back core.retrained.Packed (scores, history, the weights and the model as an MLflow
model folder, all bytes: the driver never imports torch) and where it ran; writing, logging,
registering and the report stay on the driver.
"""
from __future__ import annotations

import socket
from typing import Any

from trainables.core.retrained import Package, Packed, packed
from trainables.spec.schema import Spec


def _where() -> tuple[str, str | None]:
    """(host (ip), Ray node id) of this process."""
    import ray

    ctx = ray.get_runtime_context()
    return f"{socket.gethostname()} ({ray.util.get_node_ip_address()})", ctx.get_node_id()


def _device():
    """A GPU only where Ray assigned one to this task (CUDA_VISIBLE_DEVICES is set to it)."""
    import ray
    import torch

    return torch.device("cuda") if ray.get_gpu_ids() and torch.cuda.is_available() else torch.device("cpu")


def _one_worker(config: dict[str, Any], *, dataset, epochs: int, performance: dict[str, Any], threads: int,
                package: Package):
    import torch

    from trainables.core.engine import retrain

    torch.set_num_threads(max(1, threads))
    result = retrain(config, dataset=dataset, epochs=epochs, device=_device(), performance=performance)
    return packed(result, package), *_where()


def _data_parallel(config: dict[str, Any], *, dataset, epochs: int, resources, max_failures: int,
                   performance: dict[str, Any], train_storage: str, package: Package):
    """The trials' Ray Train path (tune/data_parallel.py), then the test split scored here on the CPU
    from the last epoch's state."""
    import torch

    from trainables.core.checkpoint import load_state
    from trainables.core.engine import score
    from trainables.core.trial import build
    from trainables.tune.data_parallel import fit_data_parallel

    history: list[dict[str, Any]] = []
    last: dict[str, Any] = {}

    def report(metrics: dict[str, Any], checkpoint) -> None:
        history.append(dict(metrics))
        if checkpoint is not None:  # Ray Train deletes it once the next arrives: keep the state now
            with checkpoint.as_directory() as d:
                last["state"] = load_state(d)

    fit_data_parallel(config, dataset=dataset, epochs=epochs, resources=resources, max_failures=max_failures,
                      storage_path=train_storage, name="retrain_best", start=None, report=report,
                      performance=performance)
    model, splits, training = build(config, dataset, torch.device("cpu"))
    model.load_state_dict(last["state"]["model"])
    return packed(score(model, splits, training, history), package), *_where()


def retrain_on_cluster(spec: Spec, config: dict[str, Any], *, sweep_path: str,
                       package: Package) -> tuple[Packed, str, str | None]:
    """(the retrained model, where it ran, its Ray node id): on a node with the sweep's per-trial
    resources, through the path the trials took. `package` makes the MLflow model folder there
    (a module-level function: Ray sends it by name)."""
    import ray

    r = spec.resources
    if r.workers > 1:
        from trainables.tune.data_parallel import DRIVER_CPU, train_storage

        task = ray.remote(_data_parallel).options(num_cpus=DRIVER_CPU, max_retries=0)
        return ray.get(task.remote(config, dataset=spec.dataset, epochs=spec.epochs, resources=r,
                                   max_failures=spec.max_failures, performance=spec.performance.trial_options(),
                                   train_storage=train_storage(sweep_path), package=package))
    task = ray.remote(_one_worker).options(num_cpus=r.cpu, num_gpus=r.gpu, max_retries=spec.max_failures)
    return ray.get(task.remote(config, dataset=spec.dataset, epochs=spec.epochs,
                               performance=spec.performance.trial_options(), threads=int(r.cpu), package=package))
