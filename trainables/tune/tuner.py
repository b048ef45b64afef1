"""Spec -> Ray Tune Tuner: search algorithm, scheduler, trainable with its resources, storage."""
from __future__ import annotations

import os
from typing import Any

from trainables.errors import SpecError, redact, short
from trainables.results.layout import STUDY_FILE, experiment_dir, is_remote, storage_root, study_url
from trainables.search.feasible import Feasibility
from trainables.search.optuna import DefineByRun, encode_point
from trainables.spec.schema import Spec
from trainables.tune import _ray_private
from trainables.tune.space import ray_space
from trainables.tune.warm_start import Warm, add_to_study


def _search_alg(spec: Spec, *, storage: str | None = None, warm: Warm | None = None):
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    space, s = spec.space, spec.search
    feasibility = Feasibility(spec, experiment_dir(spec, storage))
    # random search with constraints: Optuna's random sampler through the same searcher, which skips
    # what violates them (Ray's generator has no place to)
    if s.algorithm == "optuna" or (s.algorithm == "random" and feasibility):
        import optuna

        from trainables.tune.study import StudySearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        alg = StudySearch(
            space=DefineByRun(space),
            metric=[m for m, _ in spec.objectives] if spec.multi else spec.metric,
            mode=[d for _, d in spec.objectives] if spec.multi else spec.mode,
            sampler=_sampler(spec),
            points_to_evaluate=[encode_point(space, p) for p in s.points_to_evaluate] or None,
            study_name=spec.name,
            storage=study_storage(experiment_dir(spec, storage)),
            feasibility=feasibility,
        )
        if warm is not None and warm.trials:  # the study exists now: it was made with the space
            add_to_study(_ray_private.optuna_study(alg), spec, warm)
    elif s.algorithm == "grid":
        from trainables.tune.searchers import GridSearch

        alg = GridSearch(space, repeats=s.num_samples or 1, points=s.points_to_evaluate, feasibility=feasibility)
    else:  # random: Ray's generator samples the Ray Tune domains and limits concurrency itself
        alg = BasicVariantGenerator(
            points_to_evaluate=list(s.points_to_evaluate) or None,
            max_concurrent=s.max_concurrent or 0,
            random_state=s.seed,
        )
        return alg, ray_space(space, seed=s.seed)
    return (ConcurrencyLimiter(alg, max_concurrent=s.max_concurrent) if s.max_concurrent else alg), {}


def _sampler(spec: Spec):
    """TPE (multi-objective too) or NSGA-II, seeded; random for random search. Constraints reach them as
    each trial's constraint values (StudySearch.suggest)."""
    import optuna

    s = spec.search
    if s.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    return optuna.samplers.TPESampler(seed=s.seed)


def study_storage(path: str):
    """An Optuna storage in the sweep folder of a new sweep (written only by this driver), so --resume continues
    the same study and optuna-dashboard can show it; in memory on remote storage (s3://, gs://)."""
    from pathlib import Path

    import optuna

    url = study_url(path)
    if url is None:
        return None
    Path(path).mkdir(parents=True, exist_ok=True)
    # a new sweep's folder holds no sweep (layout.check_fresh): a study file there is left from a start that
    # ended before any trial, and its asked-for trials are no part of this sweep
    for leftover in ("", "-journal", "-wal", "-shm"):  # SQLite would roll an old journal into the new file
        (Path(path) / f"{STUDY_FILE}{leftover}").unlink(missing_ok=True)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's errors: a folder that is not writable, a full disk
        raise SpecError(f"cannot keep the sweep's Optuna study in {redact(path)}/{STUDY_FILE}: "
                        f"{short(str(e).splitlines()[0], 200)}", path="--storage") from None


def _scheduler(spec: Spec, param_space: dict[str, Any]):
    from ray.tune import schedulers as S

    c = spec.scheduler
    if c.name == "asha":
        # A grace period past the last epoch just means no early stop (e.g. with -o epochs=1).
        asha = S.ASHAScheduler(time_attr="training_iteration", max_t=spec.epochs,
                               grace_period=min(c.grace_period, spec.epochs),
                               reduction_factor=c.reduction_factor, brackets=c.brackets)
        if c.milestones:  # W&B hyperband's bands, as they are
            _ray_private.set_milestones(asha, c.milestones)
        return asha
    if c.name == "hyperband":
        return S.HyperBandScheduler(time_attr="training_iteration", max_t=spec.epochs,
                                    reduction_factor=c.reduction_factor)
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
        from trainables.tune.data_parallel import DRIVER_CPU, data_parallel_trainable, train_storage
        from trainables.tune.trainable import data_parallel

        fn = tune.with_parameters(data_parallel, dataset=spec.dataset, epochs=spec.epochs, resources=spec.resources,
                                  max_failures=spec.max_failures,
                                  train_storage=train_storage(experiment_dir(spec, storage)),
                                  performance=spec.performance.trial_options())
        return tune.with_resources(data_parallel_trainable(fn), {"cpu": DRIVER_CPU})
    if spec.trainable == "program":
        from trainables.tune.trainable import program

        fn = tune.with_parameters(program, file=spec.program.file, command=spec.program.command, metric=spec.metric,
                                  sweep=spec.name, home=os.getcwd(), paths=spec.program.nested)
    elif spec.trainable == "classifier":
        from trainables.tune.trainable import classifier

        fn = tune.with_parameters(classifier, dataset=spec.dataset, epochs=spec.epochs, threads=int(spec.resources.cpu),
                                  performance=spec.performance.trial_options(), checkpoint_every=spec.checkpoint_every)
    else:
        import importlib

        mod, _, name = spec.trainable.partition(":")
        fn = getattr(importlib.import_module(mod), name)
    return tune.with_resources(fn, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def build_tuner(spec: Spec, *, storage: str | None = None, resume: bool = False, callbacks: list | None = None,
                warm: Warm | None = None):
    """A Tuner for the spec: a fresh one, or the interrupted sweep of the same name restored."""
    from ray.tune.logger import JsonLoggerCallback

    if spec.resources.workers > 1:
        from trainables.tune.data_parallel import check_spec, with_trial_limit

        check_spec(spec)
        spec = with_trial_limit(spec)
    # Ray's default loggers write TensorBoard files and progress.csv that nothing here reads
    # (ExperimentAnalysis reads result.json): keep the JSON logger only.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our Progress lines replace Ray's tables
    # Trials work in the directory `tune run` was started from (Tune propagates this to its
    # actors), so relative paths in a spec (dataset.root, weights: PATH) mean what they say.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    # A result without the metric is callbacks.MetricCheck's to report, as one clear error; Tune's own
    # check would raise from inside fit() with the whole result in the message.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # Tune saves the experiment's state (what --resume reads) every 10 s at least, and at once whenever
    # a trial's older checkpoint is deleted; with checkpoints at performance.checkpoint_every's pace,
    # every 5 s keeps --resume within 5 s of the sweep at a few milliseconds a save.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
    from trainables.tune.callbacks import MarkStopped

    callbacks = [MarkStopped(), JsonLoggerCallback(), *(callbacks or [])]
    path = experiment_dir(spec, storage)
    trainable = trainable_for(spec, storage=storage)
    try:
        return _tuner(spec, path, trainable, storage=storage, resume=resume, callbacks=callbacks, warm=warm)
    except OSError as e:  # remote storage that does not answer (no network, no such bucket, no credentials)
        if not is_remote(path):
            raise
        raise SpecError(f"{redact(storage_root(storage))}: the sweep cannot be written there: "
                        f"{short(str(e), 300)}", path="--storage") from None


def _tuner(spec: Spec, path: str, trainable, *, storage: str | None, resume: bool, callbacks: list, warm):
    from ray import tune

    if resume:
        if not tune.Tuner.can_restore(path):
            raise SpecError(f"nothing to resume at {path}: run without --resume to start the sweep", file=spec.source)
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    search_alg, param_space = _search_alg(spec, storage=storage, warm=warm)
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
