"""Every seed experiment runs for real: one epoch, two trials, on substitute data given with -o."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray.tune import ExperimentAnalysis

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

COMMON = ["epochs=1", "resources.cpu=1", "resources.gpu=0", "tracking.enabled=false", "final.retrain_best=false",
          "final.report=false", "search.max_concurrent=2"]
DIGITS = ["dataset.name=digits", "dataset.root=null", "dataset.limit=200"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """train/ and val/ with 3 classes of small coloured images (a stand-in for iNaturalist-12K)."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("inat")
    rng = np.random.default_rng(0)
    for split, n in (("train", 15), ("val", 4)):
        for c, colour in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
            d = root / split / f"class_{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(colour, 40, (48, 40, 3)), 0, 255).astype("uint8")
                Image.fromarray(img).save(d / f"{i}.jpg")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """state_dicts saved from torchvision backbones: `weights: PATH` instead of the ImageNet download."""
    import torch
    import torchvision

    out = {}
    for name in ("resnet18", "resnet50"):
        path = tmp_path_factory.mktemp("weights") / f"{name}.pth"
        torch.save(torchvision.models.get_model(name).state_dict(), path)
        out[name] = path
    return out


def cases(folder: Path, w: dict[str, Path]) -> dict[str, list[str]]:
    inat = [f"dataset.root={folder}", "dataset.image_size=64"]
    return {
        # the seed's widths are for GPUs: narrower here, same architectures
        "seed000_cnn_pair.yaml": DIGITS + ["search.num_samples=1", "parameters.width=8", "parameters.dense_units=64"],
        "seed000_mlp_pair.yaml": DIGITS + ["search.num_samples=1", "parameters.hidden_scale=0.05"],
        "seed000_resnet_pair.yaml": DIGITS + ["search.num_samples=1", "parameters.width=8"],
        "seed001_inat_cnn.yaml": inat + ["search.num_samples=2"],
        "seed001_resnet50_finetune.yaml": inat + [
            f"parameters.weights={w['resnet50']}", "parameters.freeze={choice: [all_but_head, first_fraction]}",
            "parameters.freeze_fraction={choice: [0.8], when: {freeze: first_fraction}}"],
        "seed002_mnist_modes.yaml": DIGITS + ["parameters.mode={grid: [1, 5]}"],
        "seed003_resnet18_abc.yaml": inat + [
            f"parameters.weights={{choice: [none, '{w['resnet18']}']}}",
            f"parameters.freeze={{choice: [last_k_trainable], when: {{weights: '{w['resnet18']}'}}}}"],
        "seed004_inat_cnn.yaml": inat + ["search.num_samples=2"],
        "seed004_resnet50_freeze.yaml": inat + [f"parameters.weights={w['resnet50']}",
                                                 "parameters.freeze_fraction={grid: [0.3, 0.8]}"],
    }


SEEDS = sorted(p.name for p in (ROOT / "search_spaces").glob("seed*.yaml"))


def test_every_seed_has_a_case(image_folder, weights):
    assert sorted(cases(image_folder, weights)) == SEEDS


@pytest.mark.parametrize("seed", SEEDS)
def test_seed_runs_on_substitute_data(seed, tune_in_process, tmp_path, image_folder, weights):
    # seed 004's ResNet-50 sweep retrains its best and reports its test accuracy (README promises it)
    retrain = ["final.retrain_best=true"] if seed == "seed004_resnet50_freeze.yaml" else []
    overrides = cases(image_folder, weights)[seed] + COMMON + retrain
    args = [a for o in overrides for a in ("-o", o)]
    tune_in_process("validate", ROOT / "search_spaces" / seed, *args, cwd=tmp_path)
    out = tune_in_process("run", ROOT / "search_spaces" / seed, *args, cwd=tmp_path)
    exp = next((tmp_path / "results").iterdir())
    trials = ExperimentAnalysis(str(exp)).trials
    assert len(trials) == 2, out
    for t in trials:
        assert t.status == "TERMINATED", (t.config, out)
        assert t.last_result["training_iteration"] == 1
        assert 0.0 <= t.last_result["val_acc"] <= 1.0
        assert 0 < t.last_result["trainable_params"] <= t.last_result["total_params"]
        assert t.last_result["trainable_layers"]  # seed 003's question: which layers train
        assert t.last_result["precision"] == "fp32"  # a CPU
    if retrain:
        assert "final: retrained best: test_acc=" in out
        record = json.loads((exp / "retrain.json").read_text())
        assert 0.0 <= record["test_acc"] <= 1.0 and record["node"]


def test_every_mnist_mode_learns_on_digits(tune_in_process, tmp_path):
    """Seed 002's modes 2-5 never converged; here each mode reaches val_acc >= 0.90."""
    overrides = ["dataset.name=digits", "dataset.root=null", "epochs=10", "resources.cpu=1", "tracking.enabled=false",
                 "final.report=false"]
    tune_in_process("run", ROOT / "search_spaces/seed002_mnist_modes.yaml", *[a for o in overrides for a in ("-o", o)],
                    cwd=tmp_path)
    trials = ExperimentAnalysis(str(tmp_path / "results/seed002-mnist-modes")).trials
    best = {t.config["mode"]: max(t.metric_analysis["val_acc"]["max"], 0) for t in trials}
    assert sorted(best) == [1, 2, 3, 4, 5]
    assert all(v >= 0.90 for v in best.values()), best
