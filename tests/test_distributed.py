"""GPUs and data-parallel trials: fractional and whole-GPU placement on fake GPUs of a real
multi-node Ray, and one trial trained by two Ray Train (V2) workers over gloo; plus the engine's
sharding and DDP hooks in plain torch."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from tests.helpers import write
from tests.test_cluster import local_cluster, node_of

# ---- the engine's hooks, no Ray --------------------------------------------------------------


def test_shards_split_every_epoch_evenly_and_completely():
    from trainables.core.data import TensorSplit, shard_order

    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    parts = [shard_order(order, (r, 3)) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]  # padded: every worker takes as many steps
    assert set(torch.cat(parts).tolist()) == set(range(10))
    assert [len(shard_order(torch.arange(1), (r, 2))) for r in range(2)] == [1, 1]

    split = TensorSplit(torch.arange(10.0).view(10, 1, 1, 1), torch.arange(10))
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731 - every worker draws the same order
    seen = [torch.cat([y for _, y in split.batches(3, shuffle=True, generator=gen(), shard=(r, 2))]) for r in range(2)]
    assert len(seen[0]) == len(seen[1]) == 5 and set(torch.cat(seen).tolist()) == set(range(10))
    unsharded = torch.cat([y for _, y in split.batches(3, shuffle=True, generator=gen())])
    assert torch.equal(torch.stack(seen, 1).flatten(), unsharded)  # rank r takes every world-th sample


def _ddp_worker(rank: int, world: int, port: int, out) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from trainables.core.data import DatasetConfig
    from trainables.core.engine import fit
    from trainables.core.trial import build

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model, splits, t = build({"model": "cnn", "filters": [4] * 5, "dense_units": 16, "batch_size": 32},
                             DatasetConfig(name="digits", limit=100), device=torch.device("cpu"))
    reports = []
    fit(model, splits, t, epochs=2, report=lambda m, state: reports.append((m, state())),
        wrap_model=DistributedDataParallel, shard=(rank, world))
    out.put((rank, [m["train_loss"] for m, _ in reports],
             {k: v.sum().item() for k, v in reports[-1][1]["model"].items()}))
    dist.destroy_process_group()


@pytest.mark.slow  # two processes: ~20 s on a busy 2-core machine
def test_engine_trains_data_parallel_in_plain_torch():
    """wrap_model + shard, as a Ray Train worker uses them, with torch.distributed alone: the
    workers stay in step (same weights after every epoch), each on its half of the data."""
    import torch.multiprocessing as mp

    from tests.helpers import free_port

    ctx = mp.get_context("spawn")
    out, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict((r, (losses, weights)) for r, losses, weights in (out.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=30)
    assert got[0][1] == pytest.approx(got[1][1])  # DDP kept the replicas identical
    assert got[0][0] != got[1][0]  # ... while each saw different samples
    assert not any(k.startswith("module.") for k in got[0][1])  # the state is the plain model's


# ---- fake GPUs on a real multi-node Ray --------------------------------------------------------

@pytest.fixture(scope="module")
def gpu_cluster():
    """A CPU head (1 CPU) and a worker node with 2 CPUs and 2 (fake) GPUs: Ray schedules and
    assigns them and sets CUDA_VISIBLE_DEVICES, but there is no CUDA behind them, so trials
    train on the CPU (the engine uses cuda only when torch sees it)."""
    with local_cluster({"num_cpus": 1}, {"num_cpus": 2, "num_gpus": 2}) as cluster:
        yield cluster


_TIMELINES: dict[str, tuple] = {}  # Timeline key -> (cluster, events, lock): the Tuner pickles its callbacks


def _callback_base():
    from ray.tune import Callback

    return Callback


class Timeline(_callback_base()):
    """When each trial ran (on the driver's clock), on which node and with which GPU id."""

    def __init__(self, cluster):
        self.key = str(id(self))
        _TIMELINES[self.key] = (cluster, {}, threading.Lock())

    def _trial(self, trial):
        cluster, trials, lock = _TIMELINES[self.key]
        return (
            trials.setdefault(trial.trial_id, {"start": None, "end": None, "gpu": set(), "node": set()}), cluster, lock
        )

    def on_trial_start(self, iteration, trials, trial, **info):
        t, _, lock = self._trial(trial)
        with lock:
            t["start"] = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        t, cluster, lock = self._trial(trial)
        with lock:
            t["gpu"].add(result.get("gpu_id"))
            t["node"].add(node_of(cluster, result["pid"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        t, _, lock = self._trial(trial)
        with lock:
            t["end"] = time.monotonic()

    on_trial_error = on_trial_complete

    def trials(self) -> dict:
        return _TIMELINES[self.key][1]


def overlapping(trials: dict) -> list[tuple[str, str]]:
    ids = sorted(trials)
    return [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]
            if trials[a]["start"] < trials[b]["end"] and trials[b]["start"] < trials[a]["end"]]


def max_concurrent(trials: dict) -> int:
    events = sorted([(t["start"], 1) for t in trials.values()] + [(t["end"], -1) for t in trials.values()])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


SPEC = """\
name: {name}
dataset: {{name: digits, limit: {limit}}}
epochs: {epochs}
parameters:
  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 32
  batch_norm: true
  batch_size: 32
  lr: {lr}
search: {{algorithm: random, num_samples: {samples}, seed: 0}}
scheduler: {{name: {scheduler}, grace_period: 1}}
resources: {{cpu: {cpu}, gpu: {gpu}, workers: {workers}}}
tracking: {{enabled: false}}
final: {{report: false}}
"""


def sweep_on(cluster, tmp_path, name, *, epochs=2, limit=300, samples=4, cpu=0.5, gpu=0, workers=1, lr="3.0e-3",
             scheduler="fifo", after=None):
    """Run a sweep in this process on the cluster; (ResultGrid, Timeline, what after() returned
    when called still connected)."""
    import ray

    from trainables.spec.load import load_spec
    from trainables.tune.tuner import build_tuner

    text = SPEC.format(name=name, epochs=epochs, limit=limit, samples=samples, cpu=cpu, gpu=gpu, workers=workers,
                       lr=lr, scheduler=scheduler)
    spec = load_spec(write(tmp_path / f"{name}.yaml", text))
    timeline = Timeline(cluster)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        grid = build_tuner(spec, storage=str(tmp_path / "shared"), callbacks=[timeline]).fit()
        extra = after() if after is not None else None
    finally:
        ray.shutdown()
    return grid, timeline.trials(), extra


@pytest.mark.slow
def test_half_a_gpu_packs_two_trials_on_each_gpu(gpu_cluster, tmp_path):
    grid, trials, _ = sweep_on(gpu_cluster, tmp_path, "half", gpu=0.5)
    assert grid.num_errors == 0 and len(trials) == 4
    (gpu_node,) = gpu_cluster.worker_nodes
    assert all(t["node"] == {gpu_node.node_id} for t in trials.values())  # only that node has GPUs
    assert all(len(t["gpu"]) == 1 and t["gpu"] <= {0, 1} for t in trials.values())  # gpu_id recorded
    assert max_concurrent(trials) == 4  # 4 trials at once on 2 GPUs ...
    shared = [(a, b) for a, b in overlapping(trials) if trials[a]["gpu"] == trials[b]["gpu"]]
    assert shared  # ... two of them at once on one GPU
    assert not torch.cuda.is_available()  # (fake GPUs: the trials trained on the CPU)


@pytest.mark.slow
def test_whole_gpu_trials_never_share_a_gpu(gpu_cluster, tmp_path):
    grid, trials, _ = sweep_on(gpu_cluster, tmp_path, "whole", gpu=1)
    assert grid.num_errors == 0 and len(trials) == 4
    assert all(len(t["gpu"]) == 1 and t["gpu"] <= {0, 1} for t in trials.values())
    assert max_concurrent(trials) == 2  # as many at once as there are GPUs
    pairs = overlapping(trials)
    assert pairs and all(trials[a]["gpu"] != trials[b]["gpu"] for a, b in pairs)


# ---- data-parallel trials ---------------------------------------------------------------------

@pytest.mark.slow
def test_two_gloo_workers_train_one_trial_as_well_as_one_worker(gpu_cluster, tmp_path):
    """resources.workers: 2 runs one trial on two Ray Train workers (DDP over gloo, each on
    half of every epoch, batch_size the global batch): metrics each epoch and a checkpoint come
    back to Tune as from a one-worker trial, and it learns digits as well as one worker does."""
    from trainables.core.checkpoint import load_state
    from trainables.core.data import DatasetConfig
    from trainables.core.engine import run_trial

    epochs, limit = 5, 600
    config = {"model": "cnn", "filters": [8] * 5, "dense_units": 32, "batch_norm": True, "batch_size": 32, "lr": 3e-3}
    torch.set_num_threads(1)
    t0 = time.time()
    one: list[float] = []
    run_trial(config, dataset=DatasetConfig(name="digits", limit=limit), epochs=epochs,
              report=lambda m, state: one.append(m["val_acc"]))
    t1 = time.time()
    grid, trials, released = sweep_on(gpu_cluster, tmp_path, "ddp", epochs=epochs, limit=limit, samples=1, workers=2,
                                      scheduler="asha", after=all_resources_back)
    t2 = time.time()
    assert grid.num_errors == 0, grid.errors
    (result,) = grid
    history = result.metrics_dataframe
    assert list(history["training_iteration"]) == list(range(1, epochs + 1))
    assert list(history["epoch"]) == list(range(1, epochs + 1))
    two = list(history["val_acc"])
    print(f"val_acc by epoch: one worker {[round(v, 3) for v in one]} ({t1 - t0:.0f}s in-process), "
          f"two gloo workers {[round(v, 3) for v in two]} ({t2 - t1:.0f}s with Ray Train start-up)")
    assert two[-1] >= 0.8 and abs(two[-1] - one[-1]) <= 0.1
    with result.checkpoint.as_directory() as d:  # Tune's own checkpoint: what --resume and PBT restore
        state = load_state(d)
    assert state["epoch"] == epochs and not any(k.startswith("module.") for k in state["model"])
    assert not list((tmp_path / "shared/ddp/train_runs").glob("*"))  # Train's copies were dropped
    # ASHA stops a trial that reaches max_t: the trial's Train run was shut down with it, its
    # workers' placement group removed (else the next data-parallel trials would wait forever).
    assert released, "the Train run's resources were not given back"


def all_resources_back(timeout: float = 30) -> bool:
    import ray

    deadline = time.time() + timeout
    while time.time() < deadline:
        total, free = ray.cluster_resources(), ray.available_resources()
        if free.get("CPU", 0) >= total.get("CPU", 0) - 1e-6:
            return True
        time.sleep(0.5)
    return False
