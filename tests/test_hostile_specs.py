"""Hostile and mistaken specs: each class of bad input ends in exit 2 and one message naming the file,
the key path and the line (never a traceback, never a silently different spec), quickly."""
from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import ROOT, write
from tests.test_spec import GOOD
from trainables.cli import cli
from trainables.errors import SpecError
from trainables.spec.load import load_spec, parse_spec


def _error(text: str | bytes, tmp_path, *overrides: str) -> SpecError:
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SpecError) as exc:
        load_spec(path, overrides)
    return exc.value


# ---- 1. reading the YAML ------------------------------------------------------------------

def test_duplicate_keys_name_the_key_and_both_lines(tmp_path):
    e = _error(GOOD + "epochs: 5\n", tmp_path)
    assert "duplicate key 'epochs'" in str(e) and "line 3" in str(e) and e.line == 13


def test_duplicate_keys_inside_a_parameter(tmp_path):
    e = _error(GOOD.replace("{uniform: [0.5, 0.9],", "{uniform: [0.5, 0.9], uniform: [0.1, 0.2],"), tmp_path)
    assert "duplicate key 'uniform'" in str(e) and e.line == 10


def test_alias_bomb_is_refused_quickly(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    t0 = time.perf_counter()
    e = _error(bomb, tmp_path)
    assert time.perf_counter() - t0 < 5 and "aliases" in str(e) and "too large" in str(e)


def test_deep_nesting_is_refused(tmp_path):
    e = _error("name: t\nparameters: {x: " + "[" * 5000 + "]" * 5000 + "}\n", tmp_path)
    assert "deep" in str(e)


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path):
    t0 = time.perf_counter()
    e = _error(GOOD + "description: '" + "x" * 3_000_000 + "'\n", tmp_path)
    assert time.perf_counter() - t0 < 5 and "at most" in str(e)


def test_bytes_that_are_not_utf8_are_named_by_line_and_column(tmp_path):
    e = _error(GOOD.encode().replace(b"adam, sgd", b"ad\xe9m, sgd"), tmp_path)
    assert e.line == 9 and e.column == 26 and "line 9, column 26" in str(e) and "0xe9" in str(e)


def test_control_characters_are_named_by_line_and_column(tmp_path):
    e = _error(GOOD.replace("name: t", "name: t\x07"), tmp_path)
    assert e.line == 1 and e.column == 8 and "position" not in str(e)


def test_tabs_are_named_by_line(tmp_path):
    e = _error(GOOD.replace("  model: cnn", "\tmodel: cnn"), tmp_path)
    assert e.line == 5 and "tab" in str(e)


def test_several_documents_are_refused(tmp_path):
    e = _error(GOOD + "---\nname: u\n", tmp_path)
    assert e.line == 13 and "more than one YAML document" in str(e)


def test_exponent_numbers_are_numbers_in_files_and_in_overrides(tmp_path):
    spec = load_spec(write(tmp_path / "s.yaml", GOOD.replace("1.0e-4", "1e-4")),
                     ["parameters.lr={loguniform: [1e-4, 1e-2]}", "parameters.momentum={uniform: [5e-1, 9E-1]}"])
    assert spec.space["lr"].low == 1e-4 and spec.space["lr"].high == 1e-2
    assert spec.space["momentum"].high == 0.9


def test_integers_are_read_as_yaml_1_2_reads_them(tmp_path):
    """PyYAML reads YAML 1.1: `epochs: 010` was 8 epochs (octal), `1:30` 90 (base 60), silently."""
    assert parse_spec(GOOD, overrides=["epochs=010"]).epochs == 10
    assert parse_spec(GOOD.replace("epochs: 3", "epochs: 0o10")).epochs == 8  # YAML 1.2's octal, written as such
    for text in (GOOD.replace("epochs: 3", "epochs: 1:30"), GOOD):
        with pytest.raises(SpecError, match="epochs"):
            parse_spec(text, overrides=["epochs=2:00"] if text is GOOD else [])


def test_an_override_key_path_deeper_than_a_spec_may_nest_is_bad_input():
    """A W&B config's nested parameters were translated down the whole path: RecursionError at 1,500 levels."""
    wandb = ("program: train.py\nmethod: random\nmetric: {name: val_acc, goal: maximize}\n"
             "parameters:\n  lr: {value: 1}\n")
    for text in (GOOD, wandb):
        with pytest.raises(SpecError, match="nests at most 64 deep"):
            parse_spec(text, overrides=["parameters." + "a.parameters." * 1500 + "b.value=1"], checks=False)


def test_the_readme_override_of_lr_is_accepted():
    spec = parse_spec(GOOD, overrides=["parameters.lr={loguniform: [1e-4, 1e-2]}"])
    assert spec.space["lr"].log


def test_messages_quote_only_a_prefix_of_a_long_value():
    with pytest.raises(SpecError) as exc:
        parse_spec(GOOD, overrides=["epochs=" + "x" * 100_000])
    assert len(str(exc.value)) < 300


def test_an_override_of_an_aliased_mapping_changes_only_its_key(tmp_path):
    text = GOOD.replace("  dense_units: {int: [16, 64], step: 16}", "  dense_units: &units {choice: [16, 32]}\n"
                        "  batch_size: *units")
    spec = load_spec(write(tmp_path / "a.yaml", text), ["parameters.dense_units.choice=[64]"])
    assert spec.space["dense_units"].values == (64,) and spec.space["batch_size"].values == (16, 32)


def test_merge_keys_are_yaml_not_duplicates(tmp_path):
    text = GOOD.replace("search: {num_samples: 4}", "search: {<<: {num_samples: 4, seed: 1}, seed: 2}")
    spec = load_spec(write(tmp_path / "m.yaml", text))
    assert spec.search.num_samples == 4 and spec.search.seed == 2  # merged; the explicit key wins


@pytest.mark.parametrize("override", ["epochs=" + "9" * 5000, "parameters.lr={when: {optimizer: []}, uniform: [0, 1]}",
                                      "parameters.lr={quniform: [0, 0.5, 1.0e-320]}", "trainable=.x:fn"])
def test_values_python_cannot_hold_are_bad_input(override):
    with pytest.raises(SpecError):
        parse_spec(GOOD, overrides=[override])


@pytest.mark.parametrize("override,path", [
    ("epochs=true", "epochs"), ("resources.cpu=true", "resources.cpu"),
    ("search.num_samples=true", "search.num_samples"),
    ("dataset={name: digits, limit: true}", "dataset.limit"), ("parameters.dense_units=true", "parameters.dense_units"),
    ("parameters.batch_size={choice: [32, true]}", "parameters.batch_size"),
    ("parameters.kernel_sizes=[3, true, 3, 3, 3]", "parameters.kernel_sizes"),
])
def test_true_or_false_is_not_a_number(override, path):
    """pydantic reads true as 1: `epochs: true` would run one epoch, `cpu: true` ask for one CPU."""
    with pytest.raises(SpecError) as exc:
        parse_spec(GOOD, file="bad.yaml", overrides=[override])
    assert f" {path}" in str(exc.value) and "expected a number, not true or false" in str(exc.value)
    parse_spec(GOOD, overrides=["parameters.batch_norm=true", "tracking.enabled=false"])  # where a bool belongs


# ---- 2. the spec as a whole ----------------------------------------------------------------

@pytest.mark.parametrize("override,path,words", [
    ("parameters.momentum={uniform: [0.5, 0.9], when: {optim: sgd}}", "parameters.momentum.when", "not a parameter"),
    ("parameters.momentum={uniform: [0.5, 0.9], when: {optimizer: sdg}}", "parameters.momentum.when", "never hold"),
    ("parameters.momentum={uniform: [0.5, 0.9], when: {dense_units: 20}}", "parameters.momentum.when", "never hold"),
    ("parameters.momentum={uniform: [0.5, 0.9], when: {momentum: 0.6}}", "parameters.momentum.when", "cycle"),
])
def test_every_when_is_checked_and_blames_its_parameter(override, path, words):
    with pytest.raises(SpecError) as exc:
        parse_spec(GOOD, file="bad.yaml", overrides=[override])
    assert f" {path}:" in str(exc.value) and words in str(exc.value)


def test_a_cycle_blames_a_parameter_in_it_not_the_first_conditional():
    with pytest.raises(SpecError) as exc:
        parse_spec(GOOD, overrides=["parameters.weight_decay={choice: [0.0, 0.1], when: {label_smoothing: 0.1}}",
                                    "parameters.label_smoothing={choice: [0.0, 0.1], when: {weight_decay: 0.1}}"])
    assert "parameters.momentum" not in str(exc.value) and "cycle" in str(exc.value)


@pytest.mark.parametrize("overrides,path,words", [
    (["scheduler.name=pbt", "search.algorithm=grid", "parameters.lr={choice: [0.001, 0.01]}"], "scheduler.name",
     "random"),
    (["scheduler.name=pbt", "search.algorithm=random"], "parameters.momentum", "conditional"),
    (["search.points_to_evaluate=[{lr: fast}]"], "search.points_to_evaluate[0].lr", "cannot be"),
    (["search.points_to_evaluate=[{dense_units: 20}]"], "search.points_to_evaluate[0].dense_units", "cannot be"),
    (["search.points_to_evaluate=[{momentum: 0.6, optimizer: adam}]"], "search.points_to_evaluate[0].momentum",
     "only when"),
    (["search.algorithm=grid", "parameters.lr={choice: [0.001]}", "parameters.momentum=0.9",
      "search.points_to_evaluate=[{optimizer: adam}]"],
     "search.points_to_evaluate[0]", "missing"),
    (["search.algorithm=random", "parameters.dense_units={grid: [16, 32], when: {optimizer: sgd}}"],
     "parameters.dense_units.when", "grid"),
    (["resources.cpu=.inf"], "resources.cpu", "finite"),
    (["resources.gpu=.nan"], "resources.gpu", "finite"),
    (["search.seed=-1"], "search.seed", "greater than or equal to 0"),
    (["search.seed=99999999999999"], "search.seed", "less than or equal"),
    (["parameters.lr={uniform: [0, .inf]}"], "parameters.lr.uniform", "finite"),
    (["search.algorithm=grid", "parameters.lr={choice: [0.1]}", "parameters.momentum=0.9",
      "parameters.seed={int: [0, 100000000]}"],
     "parameters", "combinations"),
    (["search.num_samples=1000000000"], "search.num_samples", "less than or equal"),
])
def test_combinations_and_sizes_are_refused_up_front(overrides, path, words):
    with pytest.raises(SpecError) as exc:
        t0 = time.perf_counter()
        parse_spec(GOOD, file="bad.yaml", overrides=overrides)
    assert time.perf_counter() - t0 < 5
    assert f" {path}:" in str(exc.value) and words in str(exc.value), str(exc.value)


# ---- 8. mutated specs: exit 0 or 2, never a traceback, bounded time -------------------------

SEEDS = [GOOD] + [p.read_text() for p in sorted((ROOT / "search_spaces").glob("*.yaml"))]
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from([".inf", "-.nan", "1e309", "[]", "{}", "*x", "&x", "!!python/none", "~",
                                          "{choice: []}", "{int: [1]}", "{when: {}}", "x" * 5000, "\x00", "\t"]),
    st.lists(st.integers(), max_size=4), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _mutate(text: str, data) -> str:
    lines = text.splitlines()
    op = data.draw(st.sampled_from(["drop", "duplicate", "retype", "stretch", "corrupt", "indent"]))
    i = data.draw(st.integers(0, max(len(lines) - 1, 0)))
    if not lines:
        return text
    line = lines[i]
    if op == "drop":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, line)
    elif op == "retype" and ":" in line:
        key = line.split(":", 1)[0]
        lines[i] = f"{key}: {data.draw(HOSTILE)!s}"
    elif op == "stretch":
        lines[i] = line + data.draw(st.sampled_from(["0" * 40, "9" * 400, ", " * 50, "e999"]))
    elif op == "corrupt":
        j = data.draw(st.integers(0, len(line)))
        lines[i] = line[:j] + data.draw(st.text(min_size=1, max_size=3)) + line[j:]
    else:
        lines[i] = data.draw(st.sampled_from([" ", "  ", "\t", "    "])) + line
    return "\n".join(lines) + "\n"


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 300)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_specs_end_in_a_valid_plan_or_exit_2(tmp_path, data):
    text = data.draw(st.sampled_from(SEEDS))
    for _ in range(data.draw(st.integers(1, 3))):
        text = _mutate(text, data)
    path = tmp_path / "mutant.yaml"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    t0 = time.perf_counter()
    result = CliRunner().invoke(cli, ["validate", str(path), "--offline"])
    assert time.perf_counter() - t0 < 10
    assert result.exit_code in (0, 2), f"exit {result.exit_code}\n{text}\n{result.output}\n{result.exception!r}"
    if result.exit_code == 2:
        assert "Traceback" not in result.output and "error:" in result.output


# ---- 2. every combination works or is refused up front --------------------------------------

COMBO = """\
name: c
dataset: {name: digits}
epochs: 4
parameters:
  model: cnn
  lr: {choice: [0.001, 0.01]}
  optimizer: {choice: [adam, sgd]}
  dense_units: {int: [16, 64], step: 16}
search: {num_samples: 3, max_concurrent: 2}
"""
VARIANTS = {
    "plain": [],
    "grid": ["parameters.dropout={grid: [0.0, 0.2]}"],
    "when": ["parameters.momentum={choice: [0.5, 0.9], when: {optimizer: sgd}}"],
    "points": ["search.points_to_evaluate=[{lr: 0.01, optimizer: adam, dense_units: 32}]"],
    "when+points": ["parameters.momentum={choice: [0.5, 0.9], when: {optimizer: sgd}}",
                    "search.points_to_evaluate=[{lr: 0.01, optimizer: sgd, momentum: 0.9, dense_units: 16}]"],
    "grid+when": ["parameters.dropout={grid: [0.0, 0.2], when: {optimizer: sgd}}"],
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scheduler", ["asha", "hyperband", "median", "fifo", "pbt"])
@pytest.mark.parametrize("algorithm", ["optuna", "random", "grid"])
def test_every_combination_works_or_is_refused_up_front(algorithm, scheduler, variant):
    """Refused with a SpecError, or the searcher and scheduler build and every drawn trial's config has a
    value the space can give for each parameter that applies (and none for those that do not)."""
    from ray.tune.search.variant_generator import generate_variants

    from trainables.core.training import clean_config
    from trainables.spec.space import can_be
    from trainables.tune.tuner import _scheduler, _search_alg

    overrides = [f"search.algorithm={algorithm}", f"scheduler.name={scheduler}", *VARIANTS[variant]]
    # nothing wrong with these: refusing them would be a bug, not a check
    must_build = variant in ("plain", "points", "when") and (scheduler != "pbt" or algorithm == "random") and not (
        scheduler == "pbt" and variant == "when")
    try:
        spec = parse_spec(COMBO, file="c.yaml", overrides=overrides)
    except SpecError as e:
        assert not must_build, str(e)
        assert str(e).startswith("c.yaml") and "Traceback" not in str(e)
        return
    alg, param_space = _search_alg(spec)
    _scheduler(spec, param_space)
    if algorithm == "random":
        configs = [resolved for _, resolved in (next(generate_variants(param_space)) for _ in range(6))]
    else:
        alg.set_search_properties(spec.metric, spec.mode, {})
        configs = [alg.suggest(f"t{i}") for i in range(min(spec.num_samples, 6))]
        configs = [c for c in configs if isinstance(c, dict)]
    assert configs
    for config in map(clean_config, configs):
        for name, p in spec.space.items():
            if p.applies(config):
                assert name in config and can_be(p, config[name]), (name, config)
            else:
                assert name not in config, (name, config)
