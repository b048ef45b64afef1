"""Data-parallel trials (resources.workers > 1) on Ray Train V2, and what a trial learns of
the accelerator Ray gave it.

One Tune trial of `workers` workers: the trial's function (trainable.data_parallel, a light
driver) builds a `TorchTrainer` whose workers each run the ordinary engine on their shard of
the training split, the model wrapped in DistributedDataParallel (NCCL on GPUs, gloo on CPUs).
Rank 0 reports the epoch's metrics (averaged over the workers) and the same state.pt checkpoint
a one-worker trial writes; `_TuneBridge`, a Train callback, hands both to the Tune trial, which
reports them to Tune exactly as a one-worker trial does. Tune is the one owner of a trial's
state: ASHA, PBT, `--resume` and FailureConfig work unchanged, and a Tune retry starts a fresh
Train run from Tune's last checkpoint. Inside one Train run, Ray Train itself restarts a worker
group that lost a worker (its own FailureConfig), from the run's latest checkpoint.
"""
from __future__ import annotations

import functools
import math
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Callable

from trainables.core.checkpoint import load_state, save_state
from trainables.core.data import DatasetConfig
from trainables.errors import SpecError
from trainables.results.storage import filesystem, join
from trainables.spec.schema import ResourcesConfig, Spec

if TYPE_CHECKING:
    import torch

DRIVER_CPU = 0.01  # the Tune trial of a data-parallel run only waits on its Train run
STOP_TIMEOUT_S = 60.0  # how long a stopped trial waits for its Train run to shut down
TRAIN_RUNS = "train_runs"  # <experiment>/train_runs/trial_<id>: Ray Train's own storage per trial


def assigned_gpu() -> int | None:
    """The first GPU Ray assigned to this process (the trial, or a Train worker), as an int;
    None without a GPU (or with ids that are not numbers, e.g. GPU UUIDs)."""
    import ray

    ids = ray.get_gpu_ids()
    try:
        return int(ids[0]) if ids else None
    except (TypeError, ValueError):
        return None


# ---- planning (on the sweep driver) -------------------------------------------------------

def check_spec(spec: Spec) -> None:
    """What a data-parallel sweep needs, as SpecErrors naming the key."""
    from trainables.tune._ray_private import train_v2_enabled

    r = spec.resources  # (a trainable of the user's with workers > 1 is refused with the spec: spec/checks.py)
    if r.gpu not in (0, 1):
        raise SpecError(f"with workers > 1 each worker trains on one whole GPU (NCCL cannot put two ranks on one GPU): "
                        f"resources.gpu must be 0 or 1, got {r.gpu:g}", file=spec.source, path="resources.gpu")
    enabled, switch = train_v2_enabled()
    if not enabled:
        raise SpecError(f"data-parallel trials use Ray Train V2, switched off here by {switch}=0: unset it",
                        file=spec.source, path="resources.workers")


def trial_limit(resources: ResourcesConfig) -> int:
    """How many data-parallel trials fit the cluster as it is now (at least 1). A trial's
    workers are reserved by its Train run, not by its Tune trial: without a limit Tune would
    start every trial and leave their Train runs waiting for resources."""
    import ray

    total = ray.cluster_resources()
    fits = [total.get("CPU", 0.0) // (resources.cpu * resources.workers + DRIVER_CPU)]
    if resources.gpu:
        fits.append(total.get("GPU", 0.0) // (resources.gpu * resources.workers))
    return max(1, int(min(fits)))


def with_trial_limit(spec: Spec) -> Spec:
    """The spec with search.max_concurrent set to trial_limit() where the user left it open."""
    if spec.search.max_concurrent is not None:
        return spec
    search = spec.search.model_copy(update={"max_concurrent": trial_limit(spec.resources)})
    return spec.model_copy(update={"search": search})


def train_storage(experiment: str) -> str:
    """Where a sweep's Train runs keep their checkpoints: beside its trials (so shared storage
    for the sweep is shared storage for them)."""
    return join(experiment, TRAIN_RUNS)


# ---- one trial: the Train run behind a Tune trial -----------------------------------------

def remove_run(storage_path: str, name: str) -> None:
    """Drop a Train run's folder: Ray Train would otherwise resume it, and Tune's checkpoint
    (possibly another trial's, under PBT) is the state a Tune (re)start must begin from."""
    import pyarrow.fs

    fs, root = filesystem(storage_path)
    path = f"{root.rstrip('/')}/{name}"
    if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(path)


def _pinned_queue():
    """A one-item queue on this node: it lives and dies with the trial that made it."""
    import ray
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    return Queue(maxsize=1, actor_options={"num_cpus": 0, "scheduling_strategy": here})


def _bridge_class():
    from ray.train.v2.api.callback import UserCallback

    class _TuneBridge(UserCallback):
        """On the Train controller: each report (rank 0's metrics, the persisted checkpoint) goes
        to the Tune trial, and the controller waits until Tune has its own copy of the checkpoint
        (Train keeps only the latest, and deletes the one before as the next one arrives)."""

        def __init__(self, results, acks):
            self.results, self.acks = results, acks

        def after_report(self, run_context, metrics, checkpoint):
            self.results.put((dict(metrics[0]), checkpoint))
            self.acks.get()

    return _TuneBridge


class _Run:
    """A Train run driven from this process: its two queues and whether it has ended."""

    def __init__(self):
        self.results, self.acks = _pinned_queue(), _pinned_queue()
        self.done = threading.Event()

    def abort(self) -> None:
        """End the Train run gracefully: with the queues gone, its controller fails on a
        non-retryable error, shuts its workers down and removes their placement group."""
        for q in (self.results, self.acks):
            try:
                q.shutdown(force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


_RUNS: set[_Run] = set()  # the Train runs this process drives (one: a data-parallel trial's process)


def stop_runs(timeout: float = STOP_TIMEOUT_S) -> None:
    """Abort this process's Train runs and wait until they have shut down."""
    for run in list(_RUNS):
        run.abort()
    for run in list(_RUNS):
        run.done.wait(timeout)


def data_parallel_trainable(fn: Callable):
    """The Tune trainable class of a data-parallel trial function. When Tune stops the trial
    (ASHA, PBT, or a scheduler at the last epoch), its stop() ends the Train run before the
    trial's process goes: killed along with that process instead, the Train run would leave its
    placement group to Ray Train's cleaner actor, which only notices through the dashboard's
    state API (so not at all where the dashboard does not run) and the next trials would wait."""
    from ray.tune.trainable import wrap_function

    class DataParallelTrial(wrap_function(fn)):
        def cleanup(self):
            stop_runs()
            super().cleanup()

    return DataParallelTrial


def fit_data_parallel(
    config: dict[str, Any],
    *,
    dataset: DatasetConfig,
    epochs: int,
    resources: ResourcesConfig,
    max_failures: int,
    storage_path: str,
    name: str,
    start: dict[str, Any] | None,
    report: Callable[[dict[str, Any], Any], None],
    performance: dict[str, Any] | None = None,
) -> None:
    """Train `config` on resources.workers Ray Train workers; report(metrics, checkpoint) once
    per epoch on the calling thread (the Tune trial's), checkpoint being the Train checkpoint of
    that epoch (rank 0's state.pt). Raises what the Train run raised."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Empty

    remove_run(storage_path, name)
    run = _Run()
    per_worker = {"CPU": resources.cpu, **({"GPU": resources.gpu} if resources.gpu else {})}
    trainer = TorchTrainer(
        functools.partial(_train_loop, dataset=dataset, start=start, threads=max(1, int(resources.cpu)),
                          performance=performance or {}),
        train_loop_config={"config": config, "epochs": epochs},
        scaling_config=ray.train.ScalingConfig(num_workers=resources.workers, use_gpu=resources.gpu > 0,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            callbacks=[_bridge_class()(run.results, run.acks)],
        ),
    )
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as e:  # noqa: BLE001 - handed to the Tune thread, raised there
            failure.append(e)
        finally:
            run.done.set()

    _RUNS.add(run)
    threading.Thread(target=fit, name=f"train-{name}", daemon=True).start()
    try:
        # Every report is acknowledged before the Train run can end, so once it has ended the
        # queue is empty: nothing is lost by stopping at `done`.
        while not run.done.is_set():
            try:
                metrics, checkpoint = run.results.get(timeout=0.5)
            except Empty:
                continue
            report(metrics, checkpoint)
            run.acks.put(True)
    except BaseException:  # Tune stopped the trial (SystemExit out of report), or reporting failed
        run.abort()
        if run.done.wait(STOP_TIMEOUT_S):
            try:
                remove_run(storage_path, name)  # Tune's checkpoint is where the trial goes on from
            except OSError:
                pass
        raise
    finally:
        _RUNS.discard(run)
    run.abort()  # (the queues: the run has ended)
    if failure:
        raise failure[0]
    remove_run(storage_path, name)  # Tune holds the checkpoints now


# ---- on each Ray Train worker ---------------------------------------------------------------

def _train_loop(hparams: dict[str, Any], *, dataset: DatasetConfig, start: dict[str, Any] | None, threads: int,
                performance: dict[str, Any]) -> None:
    """One data-parallel worker: the engine on its shard, the model in DDP; rank 0 checkpoints."""
    import ray.train
    import ray.train.torch
    import torch

    from trainables.core.engine import run_trial

    torch.set_num_threads(threads)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # the worker group was restarted: Train's latest checkpoint of this run
        with checkpoint.as_directory() as d:
            start = load_state(d)
    device = ray.train.torch.get_device()
    gpu = assigned_gpu()

    def report(metrics: dict[str, Any], state) -> None:
        average_over_workers(metrics, world=world, device=device)
        if gpu is not None:
            metrics["gpu_id"] = gpu
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as d:
            save_state(state(), d)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    run_trial(hparams["config"], dataset=dataset, epochs=hparams["epochs"], report=report, start=start, device=device,
              wrap_model=ray.train.torch.prepare_model, shard=(rank, world), **performance)


def average_over_workers(metrics: dict[str, Any], *, world: int, device: torch.device) -> None:
    """In place: train loss and accuracy averaged over the workers (equal shards), throughput
    summed, epoch time the slowest worker's; validation is the same on every worker already."""
    import torch
    import torch.distributed as dist

    if world == 1 or not dist.is_initialized():
        return
    summed = torch.tensor([metrics["train_loss"], metrics["train_acc"], metrics["samples_per_second"]],
                          dtype=torch.float64, device=device)
    slowest = torch.tensor([metrics["epoch_seconds"]], dtype=torch.float64, device=device)
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    loss, acc, rate = summed.tolist()
    metrics.update(train_loss=loss / world, train_acc=acc / world, samples_per_second=rate,
                   epoch_seconds=slowest.item())
    if not math.isfinite(metrics["train_loss"]):
        metrics["diverged"] = True
