"""`tune bench` and the performance options: every code path at its smallest size.

Nothing here asserts a timing: the figures' numbers are the benchmark's business. What is
checked is that each figure is measured the way it says, and that the JSON lines and
reports/bench/ files come out."""
from __future__ import annotations

import inspect
import io
import json
import math
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT, run_cli
from trainables.bench import output, search
from trainables.bench.output import Figure, Recorder
from trainables.core.data import DatasetConfig, TensorSplit, load_splits
from trainables.core.engine import resolve_performance, run_trial
from trainables.core.trial import HostSplit
from trainables.errors import SpecError
from trainables.spec.load import parse_spec

TINY_DIGITS = DatasetConfig(name="digits", limit=100)
SMALL = {"model": "cnn", "filters": [4, 4, 8, 8, 8], "dense_units": 16, "lr": 3e-3, "batch_norm": True}


# ---- the performance options ---------------------------------------------------------------

def test_auto_means_on_with_a_gpu_and_off_on_a_cpu():
    cpu = resolve_performance("cpu")
    assert cpu.amp is None and not cpu.channels_last and not cpu.compile and not cpu.data_on_device
    assert cpu.precision == "fp32"
    gpu = resolve_performance("cuda")
    assert gpu.channels_last and gpu.data_on_device and gpu.cudnn_benchmark
    if not torch.cuda.is_available():
        assert gpu.amp is None and gpu.precision == "fp32"
    forced = resolve_performance("cpu", precision="bf16", channels_last=True, data_on_device=True, compile=True)
    assert forced.amp == torch.bfloat16 and forced.channels_last and forced.data_on_device and forced.compile
    assert resolve_performance("cuda", precision="fp32", channels_last=False).amp is None
    assert resolve_performance("cpu", precision="fp16").amp == torch.float16
    with pytest.raises(ValueError, match="precision"):
        resolve_performance("cpu", precision="fp8")


@pytest.mark.parametrize("capability,chosen", [((7, 5), "fp16"), ((7, 0), "fp16"), ((6, 1), "fp16"), ((8, 0), "bf16"),
                                               ((8, 6), "bf16"), ((9, 0), "bf16"), ((10, 0), "bf16")])
def test_auto_precision_uses_bf16_only_where_the_gpu_computes_it(capability, chosen):
    """A T4 (7.5) reports bf16 as supported but emulates it, slower than fp32: fp16 with loss scaling there."""
    from trainables.core.engine import choose_precision

    assert choose_precision("auto", "cuda", capability) == chosen
    assert choose_precision("auto", "cpu", None) == "fp32"
    assert choose_precision("bf16", "cuda", capability) == "bf16"  # an explicit choice is kept


def test_auto_precision_on_a_gpu_of_each_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, dtype in (((7, 5), torch.float16), ((8, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        perf = resolve_performance("cuda")
        assert perf.amp == dtype and perf.precision == {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def test_fp16_trains_with_loss_scaling_and_checkpoints_the_scaler():
    rows = []
    run_trial(SMALL, dataset=TINY_DIGITS, epochs=2, report=lambda m, s: rows.append((m, s())), precision="fp16")
    assert [m["precision"] for m, _ in rows] == ["fp16", "fp16"]
    assert all(math.isfinite(m["train_loss"]) for m, _ in rows)
    assert "scaler" in rows[-1][1]


def test_spec_performance_section_reaches_run_trial():
    spec = parse_spec("name: x\nperformance: {precision: bf16, channels_last: false, compile: true, "
                      "reuse_actors: false}\n")
    opts = spec.performance.trial_options()
    assert opts == {"precision": "bf16", "channels_last": False, "compile": True, "cudnn_benchmark": True,
                    "data_on_device": "auto"}
    assert set(opts) <= set(inspect.signature(run_trial).parameters)  # every option is a keyword of run_trial
    assert spec.performance.reuse_actors is False
    assert parse_spec("name: x\n").performance.precision == "auto"
    with pytest.raises(SpecError, match=r"performance\.channels_last: expected auto, true or false"):
        parse_spec("name: x\nperformance: {channels_last: sometimes}\n")
    with pytest.raises(SpecError, match="did you mean 'precision'"):
        parse_spec("name: x\nperformance: {precison: bf16}\n")


def test_bf16_and_channels_last_train_on_a_cpu():
    rows = []
    run_trial(SMALL, dataset=TINY_DIGITS, epochs=2, report=lambda m, s: rows.append((m, s())),
              precision="bf16", channels_last=True)
    metrics, state = rows[-1]
    assert [m["epoch"] for m, _ in rows] == [1, 2]
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])
    conv = state["model"]["features.0.weight"]
    assert conv.dtype == torch.float32  # autocast: the weights stay fp32
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_compile_wraps_the_training_module_only(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or m)
    rows = []
    run_trial(SMALL, dataset=TINY_DIGITS, epochs=1, report=lambda m, s: rows.append(s()), compile=True)
    assert len(compiled) == 1 and not any(k.startswith("_orig_mod.") for k in rows[0]["model"])


def test_host_split_hands_out_the_same_batches():
    split = load_splits(TINY_DIGITS).train
    assert isinstance(split, TensorSplit)
    host = HostSplit(split, torch.device("cpu"))
    assert len(host) == len(split) and host.to("cpu") is host
    a = list(split.batches(32, shuffle=True, generator=torch.Generator().manual_seed(1)))
    b = list(host.batches(32, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert len(a) == len(b) and all(
        torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b, strict=True)
    )


# ---- figures -----------------------------------------------------------------------------

def test_figure_1_compares_fit_with_the_bare_loop():
    from trainables.bench import core

    fig = core.measure(epochs=1, repeats=1, dataset={"name": "digits", "image_size": 32, "limit": 100})
    assert fig.id == "1" and fig.target == ">= 0.95" and fig.device == "cpu"
    d = fig.details
    assert fig.value == pytest.approx(d["fit_images_per_s"] / d["bare_images_per_s"])
    assert d["train_images"] == 100 and d["fit_images_per_s"] > 0 and d["bare_images_per_s"] > 0
    assert fig.met == (fig.value >= 0.95)
    assert json.loads(fig.line())["id"] == "1"


def test_figure_3_counts_trial_epochs_in_arrival_order():
    random_fifo = [("a", 1, 0.5), ("b", 1, 0.6), ("a", 2, 0.8), ("b", 2, 0.7)]  # best 0.8, 4 trial-epochs
    assert search.epochs_to_reach(random_fifo, 0.8) == 3
    row = search.compare(random_fifo, [("c", 1, 0.4), ("d", 1, 0.81), ("c", 2, 0.9)])
    assert row["tpe_epochs_to_bar"] == 2 and row["ratio"] == 0.5 and row["random_trial_epochs"] == 4
    never = search.compare(random_fifo, [("c", 1, 0.4)])
    assert never["tpe_epochs_to_bar"] is None and never["ratio"] == math.inf


def test_gpu_figures_skip_with_a_clear_line_without_cuda(capsys):
    from trainables.bench import gpu

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the figures would be measured")
    seen = []
    figs = gpu.measure(quick=True, on_figure=seen.append)
    assert [f.id for f in figs] == ["5a", "5b", "5c", "5d", "5e"] and seen == figs
    assert all(f.skipped == gpu.NO_GPU and f.met is None and f.value is None for f in figs)


def test_gpu_code_paths_run_on_a_cpu():
    """The GPU figures' functions, on the CPU at toy sizes: the code paths, not the speeds."""
    from trainables.bench import gpu

    cpu = torch.device("cpu")
    d = gpu.resident_vs_loader(cpu, n=128, batch=64, epochs=1, workers=0)
    assert d["resident_epoch_s"] > 0 and d["loader_workers"] == 0 and d["speedup"] > 0
    ips = gpu.images_per_second(gpu.small_cnn, cpu, batch=4, size=32, amp=True, channels_last=True, steps=1, warmup=1,
                                 classes=10)
    assert ips > 0
    shared = gpu.shared_gpu(cpu, trials=2, seconds=0.3, batch=16, n=64)
    assert len(shared["shared_images_per_s"]) == 2 and shared["aggregate_images_per_s"] > 0
    check = gpu.self_check(cpu, epochs=1, samples=100)
    assert check["ok"] and [t["precision"] for t in check["trials"]] == ["fp32", "fp32"]
    assert check["retrain_precision"] == "fp32" and len(check["lines"]) == 3


def test_figure_6_reads_the_same_folder_cached_and_decoding(tmp_path, monkeypatch):
    from trainables.bench import data

    monkeypatch.setenv("TRAINABLES_CACHE_DIR", str(tmp_path / "cache"))
    root = data.make_folder(tmp_path / "images", images=40, size=(40, 32))
    assert len(list(root.rglob("*.jpg"))) == 40 and {p.name for p in root.iterdir()} == {"train", "val"}
    d = data.data_path(root, size=16, min_seconds=0)
    assert d["train_images"] == 32 and len(list((tmp_path / "cache").glob("*.u8"))) == 1
    assert all(d[f"{a}{w}_images_per_s"] > 0 for a in ("", "augmented_") for w in ("cached", "decoded"))


def test_reports_merge_measured_figures_and_keep_gpu_ones(tmp_path):
    out = tmp_path / "bench"
    first = Recorder(out, quick=True, stream=io.StringIO())
    first.add(Figure("5b", "bf16 vs fp32", 2.4, "x", ">= 2x", True, device="NVIDIA H100"))
    first.add(Figure("1", "core", 0.97, "ratio", ">= 0.95", True, device="cpu",
                     details={"fit_images_per_s": 97.0, "bare_images_per_s": 100.0}))
    first.write(merge=True)
    printed = io.StringIO()
    second = Recorder(out, quick=True, stream=printed)
    second.add(output.skipped("5b", "bf16 vs fp32", "x", ">= 2x", "no CUDA device"))
    second.add(Figure("1", "core", 0.93, "ratio", ">= 0.95", False, device="cpu",
                      details={"fit_images_per_s": 93.0, "bare_images_per_s": 100.0}))
    path = second.write(merge=True)
    data = json.loads(path.read_text())
    by_id = {f["id"]: f for f in data["figures"]}
    assert by_id["5b"]["value"] == 2.4 and by_id["5b"]["device"] == "NVIDIA H100"  # not replaced by a skip
    assert by_id["1"]["value"] == 0.93  # replaced by the new measurement
    assert len(data["runs"]) == 2 and by_id["5b"]["run"] != by_id["1"]["run"]
    table = (out / "results.md").read_text()
    assert "| 1 | core [cpu] | 0.93 | >= 0.95 | **no** |" in table and "NVIDIA H100" in table
    assert (out / "figures" / "1_core.png").is_file()
    lines = [json.loads(x) for x in printed.getvalue().splitlines() if x.startswith("{")]
    assert [x["id"] for x in lines] == ["5b", "1"]


def test_tune_bench_prints_json_lines_and_writes_the_report(tmp_path):
    proc = run_cli("bench", "--tiny", "--only", "1,5", "--out", tmp_path / "bench", cwd=tmp_path, check=0, timeout=300)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert [x["id"] for x in lines] == ["1", "5a", "5b", "5c", "5d", "5e"]
    assert all({"value", "unit", "target", "met", "device", "details"} <= set(x) for x in lines)
    data = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert {f["id"] for f in data["figures"]} == {"1", "5a", "5b", "5c", "5d", "5e"}
    assert data["runs"][0]["machine"]["cpus"] >= 1 and "load_average" in data["runs"][0]["machine"]
    assert "| 1 | training core vs bare PyTorch loop" in (tmp_path / "bench" / "results.md").read_text()
    assert (tmp_path / "bench" / "figures" / "1_core.png").is_file()
    bad = run_cli("bench", "--only", "9", cwd=tmp_path)
    assert bad.returncode == 2 and "--only" in bad.stderr


def test_the_gpu_bench_needs_neither_ray_nor_mlflow(tmp_path):
    code = ("import sys; from trainables.bench.__main__ import main; rc = main(['--gpu', '--out', sys.argv[1]]); "
            "heavy = [m for m in ('ray', 'mlflow', 'optuna', 'pydantic', 'sklearn') if m in sys.modules]; "
            "assert not heavy, heavy; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "gpu")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len([x for x in proc.stdout.splitlines() if x.startswith("{")]) == 5


# ---- with Ray ------------------------------------------------------------------------------

@pytest.mark.slow
def test_figure_2_runs_tune_run_and_the_bare_script_on_the_same_trials(ray_address, tmp_path):
    from trainables.bench import sweeps

    runs = sweeps.run_pair(tmp_path, name="pair", trials=2, epochs=1, report=False)
    for who in ("ours", "bare"):
        r = runs[who]
        assert r["trials"] == 2 and r["epochs_per_trial"] == [1]
        assert r["training_seconds"] > 0 and r["fit_seconds"] > 0 and r["command_seconds"] >= r["fit_seconds"]
    bare = sweeps.trial_results(tmp_path / "bare" / "pair")
    ours = sweeps.trial_results(tmp_path / "results" / "pair")
    lrs = lambda rows: sorted(json.loads(json.dumps(r[0]["config"]))["lr"] for r in rows.values())  # noqa: E731
    assert lrs(bare) == lrs(ours)  # the same trials on both sides
    assert (tmp_path / "results" / "pair" / "mlflow_run.json").is_file()  # MLflow logging was on


def test_figure_3b_warm_start_runs_its_three_sweeps(ray_address, tmp_path):
    import ray

    from trainables.bench import search

    try:
        fig = search.measure_warm(tmp_path, seeds=1, samples=2, epochs=1, limit=100)
    finally:
        ray.shutdown()  # this process joined the session's head: later in-process drivers join it again
    assert fig.id == "3b" and fig.target == "<= 0.5 (median)"
    (row,) = fig.details["seeds"]
    assert row["cold_epochs_to_best"] and row["source_best_val_acc"] > 0
    assert (tmp_path / "bench-search-optuna-asha-warm-0" / "optuna.db").is_file()
    higher = int(row["warm_best_val_acc"] >= row["cold_best_val_acc"])
    assert fig.details["summary"].endswith(f"warm best >= cold best in {higher} of 1"), fig.details["summary"]


def test_figure_3c_measures_both_searches_hypervolume(ray_address, tmp_path):
    import ray

    from trainables.bench import objectives

    try:
        fig = objectives.measure(tmp_path, seeds=1, samples=2, epochs=1, limit=100)
    finally:
        ray.shutdown()
    assert fig.id == "3c" and fig.target == ">= 1.0 (median)"
    (row,) = fig.details["seeds"]
    assert row["tpe_hypervolume"] > 0 and row["random_hypervolume"] > 0 and row["reference_params"] > 0
    assert (tmp_path / "bench-search-optuna-fifo-mo-0" / "optuna.db").is_file()


@pytest.mark.parametrize("args,option", [(["--only", ",,"], "--only"), (["--out", "{file}"], "--out"),
                                         (["--work", "{file}/sub"], "--work")])
def test_bench_options_it_cannot_honour_are_refused_before_measuring(tmp_path, args, option):
    """An --out that cannot be made was a traceback after the figures were measured; --only ,, measured nothing."""
    from click.testing import CliRunner

    from trainables.cli import cli

    (tmp_path / "a-file").write_text("")
    args = [a.format(file=tmp_path / "a-file") for a in args]
    result = CliRunner().invoke(cli, ["bench", "--only", "1", *args])
    assert result.exit_code == 2 and f"{option}:" in result.output and "Traceback" not in result.output, result.output
