"""Distributions mean the same thing under Optuna and under Ray: bounds, conditionals, grids."""
from __future__ import annotations

import optuna
import pytest
from ray.tune.search.variant_generator import generate_variants

from trainables.search.optuna import DefineByRun, encode_point
from trainables.spec.space import Choice, Int, Uniform, grid_points, parse_param
from trainables.tune.space import ray_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _optuna_draws(space, n=200, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    define = DefineByRun(space)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(define(trial))
        study.tell(trial, 0.0)
    return out


def _ray_draws(space, n=200, seed=0):
    ps = ray_space(space, seed=seed)
    out = []
    for _ in range(n):
        _, resolved = next(generate_variants(ps))
        out.append(resolved)
    return out


@pytest.mark.parametrize("draws", [_optuna_draws, _ray_draws], ids=["optuna", "ray"])
def test_int_bounds_are_inclusive_in_both_engines(draws):
    space = {"k": Int(1, 3), "s": Int(8, 32, step=8), "u": Uniform(0.1, 0.2, q=0.05)}
    values = draws(space)
    assert {v["k"] for v in values} == {1, 2, 3}
    assert {v["s"] for v in values} == {8, 16, 24, 32}
    assert {round(v["u"], 6) for v in values} == {0.1, 0.15, 0.2}


@pytest.mark.parametrize("draws", [_optuna_draws, _ray_draws], ids=["optuna", "ray"])
def test_conditional_parameter_exists_only_in_its_branch(draws):
    space = {
        "optimizer": Choice(("adam", "sgd")),
        "momentum": parse_param({"uniform": [0.5, 0.9], "when": {"optimizer": "sgd"}}),
        "kernels": Choice(([3, 3], [5, 5])),
    }
    values = draws(space, n=60)
    for v in values:
        present = v.get("momentum") is not None  # Ray marks an absent value None; Optuna leaves it out
        assert present == (v["optimizer"] == "sgd")
        if present:
            assert 0.5 <= v["momentum"] <= 0.9
        assert v["kernels"] in ([3, 3], [5, 5])  # list-valued choices come back as lists
    assert {v["optimizer"] for v in values} == {"adam", "sgd"}


def test_grid_enumerates_every_combination():
    space = {"a": Choice((1, 2, 3)), "b": Int(0, 1), "c": parse_param(7)}
    combos = [(r["a"], r["b"], r["c"]) for r in grid_points(space)]
    assert sorted(combos) == sorted((a, b, 7) for a in (1, 2, 3) for b in (0, 1))


def test_grid_multiplies_a_conditional_only_where_it_applies():
    space = {
        "freeze": Choice(("all_but_head", "first_fraction", "head_frozen")),
        "freeze_fraction": parse_param({"choice": [0.7, 0.8, 0.9], "when": {"freeze": "first_fraction"}}),
    }
    points = grid_points(space)
    assert len(points) == 5
    assert {"freeze": "all_but_head"} in points and {"freeze": "first_fraction", "freeze_fraction": 0.9} in points


def test_points_to_evaluate_are_encoded_for_optuna():
    space = {"filters": Choice(([8, 8], [16, 16])), "lr": Uniform(1e-4, 1e-2, log=True), "model": parse_param("cnn")}
    point = encode_point(space, {"filters": [16, 16], "lr": 1e-3, "model": "cnn"})
    study = optuna.create_study()
    study.enqueue_trial(point)
    trial = study.ask()
    assert DefineByRun(space)(trial) == {"filters": [16, 16], "lr": 1e-3, "model": "cnn"}


@pytest.mark.parametrize("raw,message", [
    ({"int": [1, 2.5]}, "integers"),
    ({"uniform": [0, 1], "step": 2}, "only with `int`"),
    ({"int": [0, 8], "log": True}, "log: true needs low >= 1"),
    ({"quniform": [0.1, 0.33, 0.1]}, "multiples of q"),
    ({"choice": "abc"}, "list"),
    ({"choice": [1], "uniform": [0, 1]}, "exactly one"),
])
def test_malformed_distributions(raw, message):
    with pytest.raises(ValueError) as exc:
        parse_param(raw)
    assert message in str(exc.value)


@pytest.mark.parametrize("draws", [_optuna_draws, _ray_draws], ids=["optuna", "ray"])
def test_drawn_priors_follow_their_distribution_in_both_engines(draws):
    """normal, beta and weighted choices (W&B's priors) drawn by either engine: the shape, not just a range."""
    import numpy as np

    space = {"n": parse_param({"normal": [10, 2]}), "b": parse_param({"beta": [2, 8], "q": 0.01}),
             "w": parse_param({"choice": ["a", "b"], "weights": [0.9, 0.1]}),
             "c": parse_param({"lognormal": [0, 1], "q": 1, "when": {"w": "a"}})}
    values = draws(space, n=400)
    n = np.array([v["n"] for v in values])
    assert abs(n.mean() - 10) < 0.4 and abs(n.std() - 2) < 0.4
    b = np.array([v["b"] for v in values])
    assert abs(b.mean() - 0.2) < 0.03 and all(abs(x * 100 - round(x * 100)) < 1e-6 for x in b)
    assert 0.85 < sum(v["w"] == "a" for v in values) / len(values) < 0.95
    assert all(isinstance(v["c"], int) and v["c"] >= 0 for v in values if v["w"] == "a")
    assert all(v.get("c") is None for v in values if v["w"] == "b")


def test_random_draws_of_priors_repeat_with_the_seed():
    space = {"n": parse_param({"normal": [0, 1]})}
    assert _ray_draws(space, n=5, seed=3) == _ray_draws(space, n=5, seed=3) != _ray_draws(space, n=5, seed=4)

