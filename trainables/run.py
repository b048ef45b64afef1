"""`tune run` end to end: the sweep with its tracker and callbacks, then the final steps (retrain, report)."""
from __future__ import annotations

import sys
import time
from typing import Any

from trainables.errors import SpecError
from trainables.results.layout import experiment_dir, save_spec
from trainables.results.read import Sweep, load_sweep
from trainables.results.retrained import (
    load_retrained,
    model_dir,
    model_file,
    save_retrained,
    update_retrained,
    write_model_folder,
)
from trainables.results.summary import print_summary
from trainables.spec.schema import Spec
from trainables.tracking import open_tracker
from trainables.tune import _ray_private
from trainables.tune.callbacks import MendCheckpoints, MetricCheck, TrackerCallback, WaitingForResources
from trainables.tune.cluster import check_cluster, check_resources
from trainables.tune.interrupt import Interrupts, raise_pending
from trainables.tune.progress import Progress
from trainables.tune.tuner import build_tuner
from trainables.tune.warm_start import Warm, gather


def run_sweep(spec: Spec, *, storage: str | None = None, resume: bool = False, stream=None,
              interrupts: Interrupts | None = None, warm: Warm | None = None) -> int:
    """Run (or resume) the sweep; print a summary; then final.retrain_best and final.report.

    With tracking.enabled the sweep is logged to MLflow from this process (trainables.tracking):
    a store that does not answer stops the sweep before any trial (SpecError: exit 2), and a fault
    later never stops it. A signal (see tune/interrupt.py) stops the trials, keeps the state, marks
    the MLflow parent run KILLED and raises Interrupted. `warm`: search.warm_start's trials, gathered
    by the caller (tune/warm_start.py). Returns 0, or 1 if every trial failed."""
    stream = stream or sys.stdout  # looked up now: whoever called us may have replaced it
    interrupts = interrupts or Interrupts(stream)
    path = experiment_dir(spec, storage)
    check_cluster(spec, storage)
    check_resources(spec)
    if warm is None and spec.search.warm_start and not resume:
        warm = gather(spec, storage)  # (tune run gathers it before Ray starts, and prints what it used)
    progress = Progress(spec, stream)
    lines = progress.lines()  # what else is said while the live table is up goes above it
    tracker = open_tracker(spec, path, resume=resume, stream=lines)
    callbacks = [progress, TrackerCallback(tracker), WaitingForResources(spec, lines)]
    t0 = time.time()
    try:
        tracker.start()  # before the tuner: it makes the sweep folder (the study's file)
        tuner = build_tuner(spec, storage=storage, resume=resume, callbacks=callbacks, warm=warm)
        if resume:  # the restored Tuner's own callbacks were pickled inert: this run's go in
            for callback in [*callbacks, MendCheckpoints(lines)]:
                _ray_private.attach(tuner, callback)
        metric_check = MetricCheck([m for m, _ in spec.objectives] or spec.metric)
        _ray_private.set_stopper(tuner, metric_check)
        if not resume:
            save_spec(spec, path)
        tracker.log_spec()
        for line in tracker.where():
            print(line, file=stream)
        t0 = time.time()
        interrupts.check()  # a signal whose exception MLflow or the searcher's storage swallowed on the way
        with interrupts.tuning():
            grid = tuner.fit()
        progress.close()
        wall = time.time() - t0
        sweep = load_sweep(path, spec=spec)  # this run's spec: remote storage keeps no spec.yaml
        print_summary(sweep, wall_seconds=wall, stream=stream)
        finished = grid.num_terminated + grid.num_errors == len(grid)
        # every trial diverged or reported no finite value: nothing was found, whatever Ray's statuses say
        no_value = bool(sweep.trials) and not (sweep.pareto() if spec.multi else sweep.ranked())
        tracker.sync(sweep, close=finished)
        interrupts.check()
        if metric_check.not_number is not None:
            raise SpecError(f"{spec.trainable} reports {metric_check.absent} = {metric_check.not_number}, not a number "
                            f"(the spec's metric: each trial must report it as one); the sweep was stopped",
                            file=spec.source, path="metric")
        if metric_check.missing is not None:
            absent, had = metric_check.absent, ", ".join(metric_check.missing)
            if spec.program is not None:  # a script's words: it logs through wandb
                raise SpecError(f"{spec.program.file} logs no {absent!r} (the sweep's metric); "
                                + (f"it logged {had}. Log {absent} with wandb.log, or set the metric to one of those"
                                   if had else f"it logged nothing. Log {absent} with wandb.log")
                                + "; the sweep was stopped", file=spec.source, path="metric")
            raise SpecError(f"{spec.trainable} reports no {absent!r} (the spec's metric); its first result had "
                            f"{had or 'no keys'}. Report {absent} with tune.report, or set metric: to one of those; "
                            f"the sweep was stopped", file=spec.source, path="metric")
        interrupts.finishing = True
        final_steps(sweep, finished=finished, stream=stream, tracker=tracker)
        interrupts.check()  # a signal during the final steps whose exception a library swallowed
        tracker.finish(sweep, wall_seconds=wall, status="FINISHED" if finished else "KILLED")
    except BaseException:
        # Interrupted, or anything else: the parent run must not stay RUNNING. What the trials
        # recorded is already in the results folder; --resume sends what MLflow lacks.
        progress.close()
        try:
            tracker.finish(None, wall_seconds=time.time() - t0, status="KILLED", wait=10)
        except Exception as e:  # noqa: BLE001 - what is on its way up (a signal, bad input) matters more
            print(f"mlflow: could not mark the parent run KILLED ({type(e).__name__}: {e})", file=stream)
        raise
    finally:
        progress.close()
        tracker.close()
    return 1 if (grid.num_errors == len(grid) and len(grid)) or no_value else 0


def final_steps(sweep: Sweep, *, finished: bool, stream=None, tracker=None, out: str = "reports"):
    """What `tune run` does after the trials: final.retrain_best (when the sweep finished) and
    final.report (attached to the MLflow parent run). A failure here is reported, never raised:
    the sweep's results are already safe. Returns the report folder, if written."""
    from trainables.report.write import write_report
    from trainables.tracking.null import NullTracker

    stream = stream or sys.stdout
    tracker = tracker or NullTracker()
    spec, folder = sweep.spec, None
    if spec.final.retrain_best and finished:
        try:
            retrain_best(sweep, stream=stream, tracker=tracker)
        except Exception as e:  # noqa: BLE001
            print(f"final: retraining the best configuration failed: {type(e).__name__}: {e}", file=stream)
        tracker.wait(60, quiet=True)  # the logged model's URI and version, for the report
    raise_pending()  # a signal during the retrain that a library swallowed: no report after it
    if spec.final.report:
        try:
            folder = write_report(sweep, out)
        except Exception as e:  # noqa: BLE001
            print(f"final: writing the report failed: {type(e).__name__}: {e}", file=stream)
            return None
        print(f"report: {folder / 'report.md'} (and report.html)", file=stream)
        tracker.log_report(folder)
    return folder


def retrain_best(sweep: Sweep, *, stream=None, tracker=None) -> dict[str, Any] | None:
    """final.retrain_best: the best trial's configuration trained again for the full epochs where the
    trials train (a node with their resources: tune/retrain.py), scored on the held-out test split;
    recorded in the sweep folder (retrain.json, best_model.pt, best_model/ as an MLflow model) and
    logged to the parent run by the tracker (test metrics, the model, registered if asked).
    A configuration already retrained (an earlier run of this sweep) is not trained again."""
    from trainables.tracking.models import package_model
    from trainables.tracking.null import NullTracker
    from trainables.tune.retrain import retrain_on_cluster

    stream = stream or sys.stdout
    tracker = tracker or NullTracker()
    spec, best = sweep.spec, sweep.best()
    if best is None or spec.trainable != "classifier":
        why = f"no trial has a {spec.metric}" if best is None else "retrain_best needs the classifier trainable"
        print(f"final: {why}; nothing retrained", file=stream)
        return None
    info, fresh = load_retrained(sweep.path), None
    if not (info and info.get("trial_id") == best.trial_id and info.get("config") == best.config
            and info.get("epochs") == spec.epochs
            and (info.get("model_uri") or info.get("package_error") or model_dir(sweep.path, info))):
        print(f"final: retraining trial {best.trial_id}'s configuration for {spec.epochs} epochs, "
              f"then scoring the test split...", file=stream, flush=True)
        fresh, where, node_id = retrain_on_cluster(spec, best.config, sweep_path=sweep.path, package=package_model)
        info = save_retrained(sweep.path, trial_id=best.trial_id, config=best.config, epochs=spec.epochs,
                              retrained=fresh, node=where, node_id=node_id)
    print(f"final: retrained best: test_acc={_fmt(info['test_acc'])} test_loss={_fmt(info['test_loss'])} "
          f"(on {info.get('node', 'this machine')}, {info.get('precision', 'fp32')})", file=stream)
    if info.get("package_error"):
        print(f"final: the retrained model could not be saved as an MLflow model ({info['package_error']}); its "
              f"weights are in {model_file(sweep.path)}, and no model is logged", file=stream)
    if not info.get("model_uri"):
        path = sweep.path
        tracker.log_retrained(info, lambda: _model_folder(sweep, info, fresh),
                              on_logged=lambda got: update_retrained(path, **got))
    return info


def _model_folder(sweep: Sweep, info: dict[str, Any], fresh) -> str | None:
    """The retrained model's MLflow model folder: in the sweep folder, or (remote storage) a temporary one,
    removed when the command ends; None where there is none (it could not be packed)."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    saved = model_dir(sweep.path, info)
    if saved is not None:
        return str(saved)
    if fresh is None or not fresh.files:
        return None
    tmp = tempfile.mkdtemp(prefix="trainables-model-")
    atexit.register(shutil.rmtree, tmp, True)
    return str(write_model_folder(fresh.files, Path(tmp) / "model"))


def _fmt(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.4f}"
