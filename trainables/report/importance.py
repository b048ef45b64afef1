"""fANOVA importance of the searched parameters: the finished trials as an Optuna study, evaluated."""
from __future__ import annotations

from dataclasses import replace

from trainables.report.values import scored
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

    dists = {k: distribution(p) for k, p in space.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if spec.mode == "max" else "minimize")
    for t in trials:
        params = encode_trial(space, t.config)  # values outside the space (PBT) are left out
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=t.value(spec.metric)))
    try:
        imp = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError) as e:
        return None, f"fANOVA could not be computed: {e}"
    absent = [k for k in space if k not in imp]
    note = f"fANOVA (Optuna) over {len(trials)} finished trials."
    if absent:
        note += f" Not assessed (absent from some trials): {', '.join(absent)}."
    return dict(imp), note
