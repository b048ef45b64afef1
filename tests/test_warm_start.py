"""search.warm_start and the persistent study: an optuna sweep given an earlier sweep's trials first,
its study kept in the sweep folder for optuna-dashboard and for --resume."""
from __future__ import annotations

import optuna
import pytest

from tests.helpers import write

pytestmark = pytest.mark.slow

SPEC = """\
name: {name}
dataset: {{name: digits, limit: 200}}
epochs: 2
parameters:
  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 16
  lr: {{loguniform: [1.0e-3, 1.0e-2]}}
  activation: {{choice: [relu, gelu]}}
search: {{algorithm: {algorithm}, num_samples: {samples}, max_concurrent: 2, seed: 0}}
scheduler: {{name: fifo}}
tracking: {{enabled: false}}
final: {{report: false}}
"""


def _study(folder) -> optuna.Study:
    name = folder.name
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'optuna.db'}")


@pytest.fixture(scope="module")
def earlier(tune_in_process, tmp_path_factory):
    """One 4-trial random sweep ('rand'), the earlier sweep both warm starts below read."""
    folder = tmp_path_factory.mktemp("earlier")
    tune_in_process("run", write(folder / "a.yaml", SPEC.format(name="rand", algorithm="random", samples=4)),
                    cwd=folder)
    return folder


def test_a_bayesian_sweep_starts_from_a_random_one(tune_in_process, earlier):
    """Seed 004's two sweeps in a row: the random sweep's trials are in the study before the first new one."""
    tmp_path = earlier
    spec = write(tmp_path / "b.yaml", SPEC.format(name="tpe", algorithm="optuna", samples=2))
    out = tune_in_process("run", spec, "-o", "search.warm_start=[rand]", "-o", "dataset.limit=150", cwd=tmp_path)
    assert "warm start: 4 of 4 trials of sweep 'rand' given to the search" in out, out
    # values reached on other data (or over other epochs) may not compare: said
    assert "it differs from this sweep in dataset.limit (200 there, 150 here)" in out, out
    study = _study(tmp_path / "results" / "tpe")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert len(trials) == 6
    assert [t.user_attrs.get("warm_start_from") for t in trials[:4]] == ["rand"] * 4  # before the new ones
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.value is not None for t in trials)
    assert all("warm_start_from" not in t.user_attrs for t in trials[4:])


def test_trials_that_do_not_fit_the_space_are_reported(tune_in_process, earlier):
    tmp_path = earlier
    spec = write(tmp_path / "c.yaml", SPEC.format(name="narrow", algorithm="optuna", samples=1))
    out = tune_in_process("run", spec, "-o", "search.warm_start=[rand]", "-o",
                          "parameters.activation={choice: [relu]}", "-o", "parameters.dense_units=32", cwd=tmp_path)
    line = next(ln for ln in out.splitlines() if ln.startswith("warm start:"))
    used = int(line.split()[2])
    assert 0 < used < 4 and "not used:" in line and "outside this space" in line, line
    # a value this sweep fixes otherwise (16 there): the trials are used (seed 000: another model), and it is said
    assert f"another value of what this sweep fixes: dense_units ({used} trials)" in line, line
    assert "differs from this sweep in" not in line, line  # same epochs and data
    assert len([t for t in _study(tmp_path / "results" / "narrow").trials if t.user_attrs.get("warm_start_from")]) \
        == used


def test_warm_start_of_a_sweep_that_does_not_exist_is_bad_input(tune_in_process, tmp_path):
    out = tune_in_process("run", write(tmp_path / "b.yaml", SPEC.format(name="x", algorithm="optuna", samples=1)),
                          "-o", "search.warm_start=[nope]", cwd=tmp_path, check=2)
    assert "search.warm_start" in out and "no sweep named 'nope'" in out


def test_a_new_sweep_starts_a_new_study_over_one_left_by_a_start_without_trials(tmp_path):
    """A folder without Ray's state holds no sweep (tune run starts there); an optuna.db left in it by a start
    that ended before any trial, damaged or not, was opened: SQLAlchemy's "file is not a database"."""
    from trainables.tune.tuner import study_storage

    (tmp_path / "optuna.db").write_bytes(b"not a database" * 100)
    storage = study_storage(str(tmp_path))
    study = optuna.create_study(storage=storage, study_name="s")
    assert study.trials == [] and (tmp_path / "optuna.db").read_bytes().startswith(b"SQLite format 3")
