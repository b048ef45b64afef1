"""W&B sweep configs read as trainables specs: every distribution against W&B's own sampling formulas
(wandb/sweeps params.py), every key, the refusals named, `tune convert`."""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from tests.helpers import run_cli, write
from trainables.errors import SpecError
from trainables.search.optuna import DefineByRun
from trainables.spec.load import load_spec, parse_spec
from trainables.spec.params import Choice, Drawn, Fixed, Int, Uniform

U = np.linspace(0.001, 0.999, 999)  # probabilities at which both sides' quantiles are compared


def _wandb(params: dict, **top) -> str:
    import yaml

    return yaml.safe_dump({"program": "train.py", "method": "random", "metric": {"name": "loss"},
                           "parameters": params, **top})


def _param(spec: dict, method: str = "random"):
    return parse_spec(_wandb({"x": spec}, method=method), checks=False).space["x"]


def _quantiles(p, u=U) -> np.ndarray:
    """Our parameter's values at probabilities u (what a random draw gives for u)."""
    if isinstance(p, Drawn):
        return np.array([p.ppf(x) for x in u], dtype=float)
    if isinstance(p, Int):
        return np.array([p.low + math.floor(x * (p.high - p.low + 1)) for x in u], dtype=float)
    if isinstance(p, Uniform) and p.log:
        return np.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
    assert isinstance(p, Uniform) and p.q is None
    return p.low + u * (p.high - p.low)


def _q(x, q):
    return np.round(x / q) * q


# W&B's HyperParameter.ppf, written out from wandb/sweeps src/sweeps/params.py
WANDB = {
    "int_uniform": (dict(min=-2, max=5), lambda u: -2 + np.floor(u * 8)),  # randint(min, max + 1)
    "uniform": (dict(min=-1.5, max=2.5), lambda u: -1.5 + u * 4),
    "q_uniform": (dict(min=0.0, max=1.0, q=0.25), lambda u: _q(u, 0.25)),
    "log_uniform": (dict(min=-9.0, max=-2.0), lambda u: np.exp(-9 + u * 7)),
    "log_uniform_values": (dict(min=1e-4, max=1e-1), lambda u: np.exp(np.log(1e-4) + u * np.log(1e3))),
    "inv_log_uniform": (dict(min=2.0, max=6.0), lambda u: np.exp(-(2 + u * 4))),
    "inv_log_uniform_values": (dict(min=1e-3, max=1.0), lambda u: np.exp(np.log(1e-3) + u * np.log(1e3))),
    "q_log_uniform": (dict(min=0.0, max=5.0, q=2), lambda u: _q(np.exp(u * 5), 2)),
    "q_log_uniform_values": (dict(min=1.0, max=1000.0, q=10), lambda u: _q(np.exp(u * np.log(1000)), 10)),
    "normal": (dict(mu=1.0, sigma=2.0), lambda u: stats.norm.ppf(u, 1.0, 2.0)),
    "q_normal": (dict(mu=0.0, sigma=5.0, q=0.5), lambda u: _q(stats.norm.ppf(u, 0, 5.0), 0.5)),
    "log_normal": (dict(mu=0.0, sigma=0.5), lambda u: np.exp(stats.norm.ppf(u, 0, 0.5))),
    "q_log_normal": (dict(mu=2.0, sigma=1.0, q=1), lambda u: _q(np.exp(stats.norm.ppf(u, 2, 1)), 1)),
    "beta": (dict(a=2.0, b=5.0), lambda u: stats.beta.ppf(u, 2, 5)),
    "q_beta": (dict(a=0.5, b=0.5, q=0.1), lambda u: _q(stats.beta.ppf(u, 0.5, 0.5), 0.1)),
}


@pytest.mark.parametrize("kind", sorted(WANDB))
def test_each_distribution_draws_what_wandb_draws(kind):
    """The same quantile function (so the same distribution), both ends included as W&B includes them."""
    keys, ppf = WANDB[kind]
    p = _param({"distribution": kind, **keys})
    ours, theirs = np.sort(_quantiles(p)), np.sort(ppf(U))  # sorted: an inverse one draws 1 - u
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_distributions_without_a_name_are_inferred_as_wandb_infers_them():
    assert _param({"min": 1, "max": 4}) == Int(1, 4)
    assert _param({"min": 0.0, "max": 4.0}) == Uniform(0.0, 4.0)
    assert _param({"values": [1, "a"]}) == Choice((1, "a"))
    assert _param({"value": 3}) == Fixed(3)
    assert _param({"value": {"a": 1}}) == Choice(({"a": 1},))  # a fixed mapping, not a distribution
    assert _param({"values": ["a", "b"], "probabilities": [0.2, 0.8]}) == Drawn("weighted", ("a", "b"),
                                                                                  weights=(0.2, 0.8))


def test_probabilities_weigh_the_draws():
    p = _param({"distribution": "categorical_w_probabilities", "values": ["a", "b", "c"],
                "probabilities": [0.1, 0.6, 0.3]})
    draws = [p.ppf(u) for u in U]
    assert [round(draws.count(v) / len(U), 2) for v in "abc"] == [0.1, 0.6, 0.3]


def test_q_is_a_float_unless_written_whole():
    """W&B's default q is the float 1.0: values like 8.0; q: 1 gives ints."""
    assert isinstance(_param({"distribution": "q_uniform", "min": 0, "max": 10}).ppf(0.5), float)
    assert _param({"distribution": "q_uniform", "min": 0, "max": 10, "q": 1}).ppf(0.5) == 5
    assert isinstance(_param({"distribution": "q_uniform", "min": 0, "max": 10, "q": 1}).ppf(0.5), int)


def test_grid_takes_what_wandb_grid_takes():
    """q_uniform on a grid: np.arange(min, max, q), max left out, as W&B lists it."""
    assert _param({"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}, "grid") == Choice((0, 0.25, 0.5, 0.75))
    assert _param({"min": 1, "max": 3}, "grid") == Int(1, 3)
    with pytest.raises(SpecError, match="grid search takes .* not uniform"):
        _param({"min": 0.0, "max": 1.0}, "grid")


def test_nested_parameters_are_flattened_with_dots():
    spec = parse_spec(_wandb({"opt": {"parameters": {"lr": {"value": 0.1}, "beta": {"parameters": {
        "b1": {"values": [0.9, 0.95]}}}}}}), checks=False)
    assert dict(spec.space) == {"opt.lr": Fixed(0.1), "opt.beta.b1": Choice((0.9, 0.95))}


def test_top_level_keys():
    text = _wandb({"x": {"values": [1, 2]}}, method="bayes", metric={"name": "acc", "goal": "maximize"},
                  run_cap=7, name="My sweep!", description="d", project="proj", entity="me",
                  command=["${env}", "python3", "${program}", "${args_json}"],
                  early_terminate={"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3})
    spec = parse_spec(text, checks=False)
    assert (spec.name, spec.description, spec.metric, spec.mode) == ("My-sweep", "d", "acc", "max")
    assert (spec.search.algorithm, spec.search.num_samples, spec.experiment) == ("optuna", 7, "proj")
    assert spec.trainable == "program" and spec.program.file == "train.py"
    assert spec.program.command == ["${env}", "python3", "${program}", "${args_json}"]
    assert (spec.scheduler.name, spec.scheduler.milestones, spec.scheduler.reduction_factor) == ("asha", [3, 9], 3)
    assert any("entity" in n for n in spec.notes) and any("My sweep!" in n for n in spec.notes)
    assert spec.max_failures == 0


@pytest.mark.parametrize("et, bands", [
    ({"min_iter": 3}, [3, 9, 27, 81]),  # W&B: min_iter x eta^k, on without end (shown: the first four)
    ({"min_iter": 2, "eta": 2}, [2, 4, 8, 16]),
    ({"max_iter": 100, "s": 3}, [3, 11, 33]),  # W&B: 100/3 = 33, /3 = 11, /3 = 3, truncated
    ({"max_iter": 27, "s": 2, "min_iter": 1}, [3, 9]),  # max_iter wins
])
def test_hyperband_becomes_asha_on_the_same_bands(et, bands):
    spec = parse_spec(_wandb({"x": {"values": [1]}}, early_terminate={"type": "hyperband", **et}), checks=False)
    assert spec.scheduler.milestones[: len(bands)] == bands


def test_goal_defaults_to_minimize_and_run_cap_to_a_said_count():
    spec = parse_spec(_wandb({"x": {"values": [1, 2]}}), checks=False)
    assert spec.mode == "min" and spec.search.num_samples == 10
    assert any("goal" in n for n in spec.notes) and any("run_cap" in n for n in spec.notes)


def test_what_cannot_be_honoured_is_named_in_one_message():
    text = _wandb({"a": {"min": 1, "max": 2.5}, "b": {"distribution": "gaussian"}, "c": {"values": []},
                   "d": {"distribution": "normal", "sigma": -1}, "e": {"distribution": "beta", "q": 0.1},
                   "f": {"values": [1], "probabilities": [0.5]}, "g": {"min": 1, "max": 2, "mu": 0}},
                  method="custom", metric={"name": "loss", "target": 0.1},
                  early_terminate={"type": "hyperband", "min_iter": 3, "strict": False}, colour="red")
    with pytest.raises(SpecError) as e:
        parse_spec(text)
    message = str(e.value)
    for part in ("parameters.a", "ambiguous", "parameters.b", "gaussian", "parameters.c", "parameters.d", "sigma",
                 "parameters.e", "q_beta", "parameters.f", "sum to 1", "parameters.g", "mu", "method", "custom",
                 "metric.target", "early_terminate.strict", "colour"):
        assert part in message, (part, message)


def test_unknown_macros_are_refused():
    with pytest.raises(SpecError, match=r"unknown macro \$\{args_yaml\}"):
        parse_spec(_wandb({"x": {"value": 1}}, command=["${env}", "${interpreter}", "${program}", "${args_yaml}"]))


def test_optuna_searches_the_probability_of_a_drawn_value():
    """bayes over a normal: the study holds u in [0, 1]; the trial sees ppf(u)."""
    import optuna

    spec = parse_spec(_wandb({"x": {"distribution": "normal", "mu": 5, "sigma": 0.1}}, method="bayes"), checks=False)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    x = DefineByRun(spec.space)(trial)["x"]
    u = trial.params["x"]
    assert 0 <= u <= 1 and x == pytest.approx(NormalDist(5, 0.1).inv_cdf(u))


def test_convert_prints_a_spec_that_runs_the_same(tmp_path):
    (tmp_path / "train.py").write_text("")
    sweep = write(tmp_path / "sweep.yaml", _wandb({"lr": {"distribution": "log_uniform_values", "min": 1e-4,
                                                           "max": 1e-1}, "opt": {"parameters": {"b": {"value": 2}}}},
                                                   run_cap=3))
    out = run_cli("convert", sweep, cwd=tmp_path, check=0).stdout
    assert out.startswith("# translated by `tune convert")
    converted = write(tmp_path / "it.yaml", out)
    a, b = load_spec(sweep), load_spec(converted)
    assert a.model_dump() == b.model_dump()
    assert run_cli("convert", converted, cwd=tmp_path, check=2).stderr.startswith("error:")


@pytest.mark.parametrize("bad, where", [
    ({"method": ["grid"]}, "method"),
    ({"metric": {"name": "loss", 7: 1}}, "metric"),
    ({"method": "grid", "parameters": {"x": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 1e-320}}},
     "parameters.x"),
    ({"early_terminate": {"type": "hyperband", "max_iter": 27}}, "early_terminate"),  # no s: W&B refuses it
    ({"early_terminate": {"type": "hyperband", "max_iter": 2, "s": 2}}, "early_terminate"),
    ({"parameters": {"opt.lr": {"value": 1}, "opt": {"parameters": {"lr": {"value": 2}}}}}, "parameters.opt"),
    ({"parameters": {"x": {"distribution": "constant"}}}, "parameters.x"),
    ({"method": "grid", "run_cap": 2, "parameters": {"x": {"values": [1, 2, 3]}}}, "run_cap"),
    # the message says what went wrong (it said "loguniform needs low > 0, got 0.0", and "cannot convert float
    # infinity to integer")
    ({"parameters": {"x": {"distribution": "log_uniform", "min": -800, "max": 1}}}, "log_uniform_values takes"),
    ({"parameters": {"x": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 1e-320}}}, "q=1e-320 is too small"),
])
def test_mistakes_are_one_clear_error(bad, where):
    data = {"program": "train.py", "method": "random", "metric": {"name": "loss"},
            "parameters": {"x": {"values": [1]}}, **bad}
    import yaml

    with pytest.raises(SpecError) as e:
        parse_spec(yaml.safe_dump(data))
    assert where in str(e.value), str(e.value)


def test_a_grid_runs_each_combination_once_within_run_cap():
    spec = parse_spec(_wandb({"x": {"values": [1, 2, 3]}}, method="grid", run_cap=5), checks=False)
    assert spec.num_samples == 3


def test_what_wandb_accepts_is_accepted():
    nested_mixed = parse_spec(_wandb({"o": {"parameters": {"x": {"min": 1, "max": 2.5}}}}), checks=False)
    assert nested_mixed.space["o.x"] == Uniform(1.0, 2.5)  # W&B's SDK checks mixed bounds at the top level only
    close = _param({"values": ["a", "b"], "probabilities": [0.33333, 0.66666]})  # np.isclose(sum, 1)
    assert close.kind == "weighted"
    assert _param({"distribution": "q_uniform", "min": 0, "max": 0.3, "q": 0.1}, "grid") == Choice((0, 0.1, 0.2))


def test_a_trainables_spec_with_a_stray_wandb_key_says_just_that():
    with pytest.raises(SpecError) as e:
        parse_spec("name: x\nmethod: random\nsearch: {num_samples: 2}\n")
    assert "unknown key 'method'" in str(e.value) and "W&B" not in str(e.value)


def test_overrides_reach_wandb_keys_and_ours():
    text = _wandb({"x": {"values": [1, 2]}}, run_cap=3)
    spec = parse_spec(text, overrides=["run_cap=5", "tracking.enabled=false", "parameters.x={values: [7]}"],
                      checks=False)
    assert spec.search.num_samples == 5 and not spec.tracking.enabled and spec.space["x"] == Choice((7,))


def test_nested_parameters_keep_their_place_and_dotted_names_theirs():
    spec = parse_spec(_wandb({"a.b": {"value": 1}, "opt": {"parameters": {"lr": {"value": 2}}}}), checks=False)
    assert spec.program.nested == {"opt.lr": ["opt", "lr"]}  # a.b reaches the script as "a.b"
