"""Spec -> Ray Tune Tuner (search algorithm, scheduler, resources, storage, callbacks); run and resume."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from trainables.errors import SpecError
from trainables.space import OptunaSpace, encode_point, ray_space
from trainables.spec import Spec

DEFAULT_STORAGE = "results"
SPEC_FILE = "spec.yaml"  # the resolved spec, kept beside Ray's experiment state


def storage_root(storage: str | None) -> str:
    """Where experiments live: a URI (s3://, gs://, ...) as given, a local path made absolute."""
    storage = storage or os.environ.get("TRAINABLES_STORAGE") or DEFAULT_STORAGE
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def experiment_dir(spec: Spec, storage: str | None) -> str:
    return f"{storage_root(storage).rstrip('/')}/{spec.name}"


def _search_alg(spec: Spec):
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    space, s = spec.space, spec.search
    if s.algorithm == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        alg = OptunaSearch(
            space=OptunaSpace(space),
            metric=spec.metric,
            mode=spec.mode,
            sampler=optuna.samplers.TPESampler(seed=s.seed),
            points_to_evaluate=[encode_point(space, p) for p in s.points_to_evaluate] or None,
        )
    elif s.algorithm == "grid":
        from trainables.gridsearch import GridSearch

        alg = GridSearch(space, repeats=s.num_samples or 1, points=s.points_to_evaluate)
    else:  # random: Ray's generator samples the Ray Tune domains and limits concurrency itself
        alg = BasicVariantGenerator(
            points_to_evaluate=list(s.points_to_evaluate) or None,
            max_concurrent=s.max_concurrent or 0,
            random_state=s.seed,
        )
        return alg, ray_space(space, seed=s.seed)
    return (ConcurrencyLimiter(alg, max_concurrent=s.max_concurrent) if s.max_concurrent else alg), {}


def _scheduler(spec: Spec, param_space: dict[str, Any]):
    from ray.tune import schedulers as S

    c = spec.scheduler
    if c.name == "asha":
        # A grace period past the last epoch just means no early stop (e.g. with -o epochs=1).
        return S.ASHAScheduler(time_attr="training_iteration", max_t=spec.epochs, grace_period=min(c.grace_period, spec.epochs),
                               reduction_factor=c.reduction_factor, brackets=c.brackets)
    if c.name == "hyperband":
        return S.HyperBandScheduler(time_attr="training_iteration", max_t=spec.epochs, reduction_factor=c.reduction_factor)
    if c.name == "median":
        return S.MedianStoppingRule(time_attr="training_iteration", grace_period=c.grace_period, min_samples_required=3)
    if c.name == "pbt":
        names = c.mutations or spec.searched
        return S.PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=c.perturbation_interval,
            quantile_fraction=c.quantile_fraction,
            hyperparam_mutations={n: param_space[n] for n in names},
        )
    return S.FIFOScheduler()


def trainable_for(spec: Spec, *, storage: str | None = None):
    from ray import tune

    if spec.resources.workers > 1:  # data-parallel: a light Tune trial driving a Ray Train run
        from trainables.distributed import DRIVER_CPU, data_parallel_trainable, train_storage
        from trainables.trainable import data_parallel

        fn = tune.with_parameters(data_parallel, dataset=spec.dataset, epochs=spec.epochs, resources=spec.resources,
                                  max_failures=spec.max_failures, train_storage=train_storage(experiment_dir(spec, storage)),
                                  performance=spec.performance.trial_options())
        return tune.with_resources(data_parallel_trainable(fn), {"cpu": DRIVER_CPU})
    if spec.trainable == "classifier":
        from trainables.trainable import classifier

        fn = tune.with_parameters(classifier, dataset=spec.dataset, epochs=spec.epochs, threads=int(spec.resources.cpu),
                                  performance=spec.performance.trial_options())
    else:
        import importlib

        mod, _, name = spec.trainable.partition(":")
        fn = getattr(importlib.import_module(mod), name)
    return tune.with_resources(fn, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def build_tuner(spec: Spec, *, storage: str | None = None, resume: bool = False, callbacks: list | None = None):
    """A Tuner for the spec: a fresh one, or the interrupted sweep of the same name restored."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    if spec.resources.workers > 1:
        from trainables.distributed import check_spec, with_trial_limit

        check_spec(spec)
        spec = with_trial_limit(spec)
    # Ray's default loggers write TensorBoard files and progress.csv that nothing here reads
    # (ExperimentAnalysis reads result.json): keep the JSON logger only.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our Progress lines replace Ray's tables
    # Trials work in the directory `tune run` was started from (Tune propagates this to its
    # actors), so relative paths in a spec (dataset.root, weights: PATH) mean what they say.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    callbacks = [JsonLoggerCallback(), *(callbacks or [])]
    path = experiment_dir(spec, storage)
    trainable = trainable_for(spec, storage=storage)
    if resume:
        if not tune.Tuner.can_restore(path):
            raise SpecError(f"nothing to resume at {path}: run without --resume to start the sweep", file=spec.source)
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    search_alg, param_space = _search_alg(spec)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=search_alg,
            scheduler=_scheduler(spec, param_space),
            # Ray counts random-search samples per `grid:` point; our count is the total.
            num_samples=spec.num_samples if spec.search.algorithm == "grid" else spec.search.num_samples or 10,
            # a data-parallel trial's process owns its Train run
            reuse_actors=spec.performance.reuse_actors and spec.resources.workers == 1,
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=storage_root(storage),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            # Tune snapshots the whole experiment state each time a trial has made num_to_keep
            # checkpoints (so that the snapshot never names a deleted one): 1 meant a snapshot
            # after every epoch of every trial; 2 halves them for one more checkpoint on disk.
            # PBT keeps them all: a paused trial told to clone another restores that trial's
            # checkpoint later, when the other may have deleted it (Ray warns of it; it failed
            # trials here with epochs of 0.1 s).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None if spec.scheduler.name == "pbt" else 2),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def trial_status(result_or_trial, epochs: int) -> str:
    """completed (ran every epoch), stopped early (scheduler or divergence) or errored."""
    error = getattr(result_or_trial, "error", None)
    if error:
        return "errored"
    metrics = getattr(result_or_trial, "metrics", None) or getattr(result_or_trial, "last_result", None) or {}
    return "completed" if metrics.get("training_iteration", 0) >= epochs and not metrics.get("diverged") else "stopped early"


class Progress:
    """One line per finished trial on stdout, instead of Ray's periodic tables."""

    def __init__(self, spec: Spec, stream=None):
        from ray.tune import Callback

        outer = self

        class _CB(Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                outer.line(trial, trials, error=False)

            def on_trial_error(self, iteration, trials, trial, **info):
                outer.line(trial, trials, error=True)

        self.callback = _CB()
        self.spec, self.stream, self.start = spec, stream or sys.stdout, time.time()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; a stream (a StringIO, a test
        # runner's capture) does not pickle, and a restored sweep prints to its own stdout.
        return {**self.__dict__, "stream": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, stream=state.get("stream") or sys.stdout)

    def line(self, trial, trials, *, error: bool) -> None:
        r = trial.last_result or {}
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials) + (0 if trial.status in ("TERMINATED", "ERROR") else 1)
        status = "errored" if error else trial_status(trial, self.spec.epochs)
        value = r.get(self.spec.metric)
        shown = f"{self.spec.metric}={value:.4f}" if isinstance(value, (int, float)) else "no result"
        print(f"[{time.time() - self.start:6.0f}s] trial {trial.trial_id} {status:13s} {shown} after "
              f"{r.get('training_iteration', 0)} epochs  ({done}/{self.spec.num_samples} done)", file=self.stream, flush=True)


def check_fresh(spec: Spec, path: str) -> None:
    """A new sweep never writes into an existing one's folder."""
    if "://" not in path and Path(path).exists() and any(Path(path).iterdir()):
        raise SpecError(f"{path} already holds a sweep named {spec.name!r}: add --resume to continue it, "
                        f"or start another with -o name={spec.name}-2", file=spec.source)


def connect(address: str | None) -> None:
    """Start a local Ray, or join the cluster at `address` (failing fast if it does not answer)."""
    import logging
    import socket

    import ray

    if ray.is_initialized():
        return
    if address and address not in ("auto", "local") and "://" not in address or (address or "").startswith("ray://"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as e:
            raise SpecError(f"the Ray cluster at {address} does not answer ({e}); is `ray start --head` running there?",
                            path="--address") from None
    try:
        ray.init(address=address or None, logging_level=logging.ERROR, log_to_driver=False,
                 include_dashboard=False if not address else None)
    except ConnectionError as e:
        raise SpecError(f"cannot join the Ray cluster at {address}: {e}", path="--address") from None


# Filesystems every node of a cluster can mount at the same path (from /proc/mounts).
SHARED_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs",
                                "glusterfs", "fuse.glusterfs", "fuse.cephfs", "fuse.gcsfuse", "fuse.s3fs", "fuse.juicefs",
                                "fuse.mountpoint-s3", "efs", "virtiofs"})


def on_cluster() -> int:
    """The alive nodes of the Ray cluster this process is connected to; with TRAINABLES_CLUSTER=1
    (the cluster files set it) at least 2: an autoscaling cluster may have only its head yet."""
    import ray

    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return max(nodes, 2) if os.environ.get("TRAINABLES_CLUSTER") == "1" else nodes


def _filesystem_type(path: str) -> str | None:
    """The type of the filesystem holding path (its nearest existing ancestor), from /proc/mounts."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    best, kind = "", None
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (str(p) == mount or str(p).startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best, kind = mount, parts[2]
    return kind


def storage_is_shared(storage: str | None) -> bool:
    """Whether every node sees the sweep's storage: a URI (s3://, gs://, ... but not file://), a
    path on a network filesystem (SHARED_FILESYSTEMS), or a path given explicitly (--storage or
    TRAINABLES_STORAGE) and declared shared with TRAINABLES_SHARED_STORAGE=1."""
    root = storage_root(storage)
    if "://" in root:
        return not root.startswith("file://")
    explicit = bool(storage or os.environ.get("TRAINABLES_STORAGE"))
    if explicit and os.environ.get("TRAINABLES_SHARED_STORAGE") == "1":
        return True
    return _filesystem_type(root) in SHARED_FILESYSTEMS


def check_cluster(spec: Spec, storage: str | None) -> None:
    """On more than one node (see on_cluster), before any trial starts: trial storage must be
    shared by every node, and MLflow (when tracking) a server, not a file on this machine."""
    nodes = on_cluster()
    if nodes < 2:
        return
    where = f"a Ray cluster of {nodes} nodes" if os.environ.get("TRAINABLES_CLUSTER") != "1" else "a Ray cluster (TRAINABLES_CLUSTER=1)"
    if not storage_is_shared(storage):
        raise SpecError(
            f"on {where}, trials run on several machines and each must read and write the sweep's storage, "
            f"but {storage_root(storage)} is local to this machine. Pass --storage s3://BUCKET/PATH, gs://BUCKET/PATH "
            f"or a path on a shared filesystem (NFS, ...) mounted on every node; a path every node mounts that is not "
            f"recognised as one can be declared with TRAINABLES_SHARED_STORAGE=1 and an explicit --storage PATH",
            file=spec.source, path="--storage")
    if spec.tracking.enabled:
        uri = spec.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme in ("", "file", "sqlite"):
            raise SpecError(
                f"on {where}, MLflow needs a tracking server that outlives this machine, but {uri} is a local file. "
                f"Set tracking.uri: http://HOST:5000 (or MLFLOW_TRACKING_URI), or tracking.enabled: false",
                file=spec.source, path="tracking.uri")


def save_spec(spec: Spec, path: str) -> None:
    import yaml

    if "://" in path:
        return  # remote storage: the spec travels in the MLflow parent run instead
    Path(path).mkdir(parents=True, exist_ok=True)
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=False)
    tmp = Path(path) / (SPEC_FILE + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(Path(path) / SPEC_FILE)


def run_sweep(spec: Spec, *, storage: str | None = None, resume: bool = False, stream=None) -> int:
    """Run (or resume) the sweep; print a summary; then final.retrain_best and final.report.

    With tracking.enabled the sweep is logged to MLflow from this process (trainables.tracking):
    the store must answer before any trial starts (else SpecError: exit 2), and a fault later
    never stops the sweep. Returns the exit code: 0, or 1 if every trial failed."""
    from trainables.reporting import final_steps
    from trainables.results import load_sweep, print_summary
    from trainables.resume import mend_callback
    from trainables.tracking import Tracker, attach

    stream = stream or sys.stdout  # looked up now: whoever called us may have replaced it
    path = experiment_dir(spec, storage)
    progress = Progress(spec, stream)
    check_cluster(spec, storage)
    tracker = Tracker(spec, path, resume=resume, stream=stream) if spec.tracking.enabled else None
    try:
        if tracker is not None:
            tracker.check()
        tuner = build_tuner(spec, storage=storage, resume=resume,
                            callbacks=[progress.callback] + ([tracker.callback] if tracker is not None else []))
        if resume:
            attach(tuner, mend_callback(stream))
        if tracker is not None:
            tracker.start()
            attach(tuner, tracker.callback)
        if not resume:
            save_spec(spec, path)
        if tracker is not None:
            tracker.log_spec()
            print(tracker.where(), file=stream)
        t0 = time.time()
        try:
            grid = tuner.fit()
        except BaseException:
            if tracker is not None:
                tracker.finish(None, wall_seconds=time.time() - t0, status="KILLED", wait=10)
            raise
        wall = time.time() - t0
        sweep = load_sweep(path)
        print_summary(sweep, wall_seconds=wall, stream=stream)
        finished = grid.num_terminated + grid.num_errors == len(grid)
        if tracker is not None:
            tracker.sync(sweep, close=finished)
        final_steps(sweep, finished=finished, stream=stream, tracker=tracker)
        if tracker is not None:
            tracker.finish(sweep, wall_seconds=wall, status="FINISHED" if finished else "KILLED")
    finally:
        if tracker is not None:
            tracker.close()
    return 1 if grid.num_errors == len(grid) and len(grid) else 0
