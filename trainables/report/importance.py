"""fANOVA importance of the searched parameters: the finished trials as an Optuna study, evaluated."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from trainables.report.values import scored
from trainables.results.layout import STUDY_FILE, is_sqlite, study_url
from trainables.search.optuna import distribution, encode_trial
from trainables.spec.space import Choice, Int, Param, Uniform


def _as_measured(p: Param) -> Param:
    """p as importance sees it: a grid's values are categories like a choice's (only OptunaSearch
    cannot draw a grid), and ranges lose their step, since a PBT trial may land between steps
    and fANOVA needs none: Optuna would reject such a value rather than leave it out."""
    if isinstance(p, Choice) and p.grid:
        return replace(p, grid=False)
    if isinstance(p, Int) and p.step != 1:
        return replace(p, step=1)
    if isinstance(p, Uniform) and p.q is not None:
        return replace(p, q=None)
    return p


def importances(sweep) -> tuple[dict[str, float] | None, str]:
    """fANOVA importance of the searched parameters over the finished trials, and a note."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    spec = sweep.spec
    space = {k: _as_measured(p) for k, p in spec.space.items() if p.searched}
    trials = [t for t in scored(sweep) if t.status != "errored"]
    if not space:
        return None, "no parameter was searched."
    if len(trials) < 2:
        return None, f"needs at least 2 finished trials with a {spec.metric}; this sweep has {len(trials)}."

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, source = _saved_study(sweep), "the sweep's Optuna study (optuna.db, as optuna-dashboard shows it)"
    if study is not None and (len(study.directions) > 1 or any(
            any(v > 0 for v in t.constraints.values()) for t in study.trials)):
        study = None  # several objectives, or configurations told infeasible untrained: the trials themselves
    if study is not None:
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        warm = sum(1 for t in done if t.user_attrs.get("warm_start_from"))
        source += f", {len(done)} finished trials" + (f", {warm} of them from warm start" if warm else "")
        if len(done) < 2:
            study = None
    if study is None:
        study, source = _rebuilt(sweep, space, trials), f"{len(trials)} finished trials" + (
            f", for {spec.metric}, the first objective" if spec.multi else "")
    try:
        imp = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError) as e:
        return None, f"fANOVA could not be computed: {e}"
    absent = [k for k in space if k not in imp]
    note = f"fANOVA (Optuna) over {source}."
    if absent:
        note += f" Not assessed (absent from some trials): {', '.join(absent)}."
    return dict(imp), note


def _saved_study(sweep):
    """The study the optuna search kept in the sweep folder, or None (another search, remote storage)."""
    import shutil
    import tempfile

    import optuna

    if study_url(sweep.path) is None:
        return None
    db = Path(sweep.path) / STUDY_FILE
    if not is_sqlite(db):  # not a link either: Optuna would write its tables into the target
        return None
    # Optuna creates its tables, or migrates them, in the storage it opens: it opens a copy, so that reading
    # a sweep never writes to it
    with tempfile.TemporaryDirectory(prefix="trainables-study-") as tmp:
        try:
            shutil.copyfile(db, Path(tmp) / STUDY_FILE)
            storage = optuna.storages.RDBStorage(f"sqlite:///{Path(tmp) / STUDY_FILE}", skip_table_creation=True)
            study = optuna.load_study(study_name=sweep.spec.name, storage=storage)
            memory = optuna.create_study(directions=study.directions)  # what the report needs, in memory
            memory.add_trials(study.trials)
            return memory
        except Exception:  # noqa: BLE001 - another name, a file that is not a study: the trials themselves
            return None


def _rebuilt(sweep, space, trials):
    """The trials as a new in-memory study (random and grid sweeps, PBT)."""
    import optuna

    spec = sweep.spec
    dists = {k: distribution(p) for k, p in space.items()}
    study = optuna.create_study(direction="maximize" if spec.mode == "max" else "minimize")
    for t in trials:
        params = encode_trial(space, t.config)  # values outside the space (PBT) are left out
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=t.value(spec.metric)))
    return study
