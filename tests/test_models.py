"""Models: every registered model builds and forwards; the seed-000 pair differences; params
validation; mnist_mode's seed settings and that it learns; finetune's weights and freezing.

Pure torch, CPU, small inputs. Default-sized models (20-65M weights) are checked on the meta
device (shapes and structure, no memory); real forwards use light hyperparameters.
"""
from __future__ import annotations

import os
from urllib.parse import urlparse

import pydantic
import pytest
import torch
import torchvision
from torch import nn

from trainables.core.data import DatasetConfig
from trainables.core.engine import count_params, run_trial
from trainables.core.models import build_model, get_model, model_names
from trainables.core.models.catalog import SEED_EPOCHS
from trainables.core.models.finetune import FinetuneModel, layer_table, trainable_layers
from trainables.core.trial import Training, build

NUM_CLASSES = 7
PAIRS = ["cnn_basic", "cnn_modified", "mlp_basic", "mlp_modified", "resnet_basic", "resnet_modified"]

# Light hyperparameters for real CPU forwards (defaults are checked on the meta device);
# any other registered model is built with its defaults.
LIGHT: dict[str, list[dict]] = {
    "cnn_basic": [{"width": 4, "dense_units": 16}],
    "cnn_modified": [{"width": 4, "dense_units": 16}],
    "mlp_basic": [{"hidden_scale": 1 / 256}],
    "mlp_modified": [{"hidden_scale": 1 / 256}],
    "resnet_basic": [{"width": 4}],
    "resnet_modified": [{"width": 4}],
    "mnist_mode": [{"mode": m} for m in range(1, 6)],
    "finetune": [{"backbone": "resnet18"}],
}
CASES = [(name, hp) for name in model_names() for hp in LIGHT.get(name, [{}])]


def _modules(model: nn.Module, kind) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def _meta(name: str, *, in_channels: int = 3, image_size: int = 64, **hp) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, num_classes=NUM_CLASSES, in_channels=in_channels, image_size=image_size, **hp)


# ---- every model ----------------------------------------------------------------------------

def test_every_registered_model_has_a_case():
    assert set(PAIRS + ["mnist_mode", "finetune"]) <= set(model_names())
    assert {name for name, _ in CASES} == set(model_names())


@pytest.mark.parametrize("name,hp", CASES, ids=[f"{n}-{hp}" for n, hp in CASES])
def test_builds_and_forwards_at_min_size_and_64px(name, hp):
    entry = get_model(name)
    pre = entry.preprocess(entry.params(**hp))
    channels = [pre.channels] if pre.channels else [1, 3]
    for size in sorted({pre.min_image_size, 64}):
        for c in channels:
            torch.manual_seed(0)
            model = build_model(name, num_classes=NUM_CLASSES, in_channels=c, image_size=size, **hp)
            for train in (True, False):
                model.train(train)
                out = model(torch.randn(2, c, size, size))
                assert out.shape == (2, NUM_CLASSES), (size, c)
                assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", PAIRS + ["finetune"])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_defaults_shapes_on_meta(name, size):
    """The seed-sized defaults survive 32, 64 and 128 px (adaptive pooling: no size-bound layers)."""
    model = _meta(name, image_size=32)
    with torch.device("meta"):
        assert model(torch.empty(2, 3, size, size)).shape == (2, NUM_CLASSES)


@pytest.mark.parametrize("name", model_names())
def test_params_reject_unknown_keys(name):
    with pytest.raises(pydantic.ValidationError):
        get_model(name).params(no_such_key=1)


@pytest.mark.parametrize(
    "name,bad",
    [
        ("cnn_basic", {"dropout": 1.5}),
        ("cnn_modified", {"width": 0}),
        ("cnn_basic", {"blocks": 7}),
        ("mlp_basic", {"dropout": 1.5}),
        ("mlp_modified", {"dropout1": -0.1}),
        ("mlp_modified", {"dropout2": 1.0}),
        ("mlp_basic", {"hidden_scale": 0.0}),
        ("mlp_modified", {"hidden_scale": 2.0}),
        ("resnet_basic", {"blocks": 0}),
        ("resnet_modified", {"width": "wide"}),
        ("mnist_mode", {"mode": 6}),
        ("mnist_mode", {"mode": 0}),
        ("finetune", {"backbone": "vgg11"}),
        ("finetune", {"freeze": "half"}),
        ("finetune", {"freeze_fraction": 1.5}),
        ("finetune", {"k": -1}),
        ("finetune", {"weights": "  "}),
    ],
)
def test_params_reject_bad_values(name, bad):
    with pytest.raises(pydantic.ValidationError):
        get_model(name).params(**bad)


# ---- seed 000 pairs -------------------------------------------------------------------------

def test_cnn_pair_differences():
    basic, modified = _meta("cnn_basic"), _meta("cnn_modified")
    assert {m.kernel_size for m in _modules(basic, nn.Conv2d)} == {(3, 3)}
    assert {m.kernel_size for m in _modules(modified, nn.Conv2d)} == {(5, 5)}
    assert _modules(basic, nn.MaxPool2d) and not _modules(basic, (nn.AvgPool2d, nn.AdaptiveAvgPool2d))
    assert not _modules(basic, nn.modules.batchnorm._BatchNorm)
    assert _modules(modified, nn.AvgPool2d) and not _modules(modified, (nn.MaxPool2d, nn.AdaptiveMaxPool2d))
    assert len(_modules(modified, nn.BatchNorm2d)) == len(_modules(modified, nn.Conv2d)) == 5
    # Same widths otherwise: 64-128-256-512-512, then 4096-4096 and the classifier.
    for model in (basic, modified):
        assert [m.out_channels for m in _modules(model, nn.Conv2d)] == [64, 128, 256, 512, 512]
        assert [m.out_features for m in _modules(model, nn.Linear)] == [4096, 4096, NUM_CLASSES]
    assert get_model("cnn_basic").preprocess(get_model("cnn_basic").params()).min_image_size == 32
    assert get_model("cnn_basic").preprocess(get_model("cnn_basic").params(blocks=3)).min_image_size == 8


def test_mlp_pair_differences():
    basic, modified = _meta("mlp_basic", image_size=32), _meta("mlp_modified", image_size=32)
    assert [m.out_features for m in _modules(basic, nn.Linear)] == [4096, 4096, NUM_CLASSES]
    assert [m.out_features for m in _modules(modified, nn.Linear)] == [2048, 4096, 2048, NUM_CLASSES]
    assert _modules(basic, nn.Linear)[0].in_features == 3 * 32 * 32
    assert _modules(basic, nn.ReLU) and not _modules(basic, nn.LeakyReLU)
    assert _modules(modified, nn.LeakyReLU) and not _modules(modified, nn.ReLU)
    assert {m.p for m in _modules(basic, nn.Dropout)} == {0.5}
    assert [m.p for m in _modules(modified, nn.Dropout)] == [0.4, 0.6, 0.4]
    assert not _modules(basic, nn.modules.batchnorm._BatchNorm)
    assert len(_modules(modified, nn.BatchNorm1d)) == 3
    # Knobs: hidden_scale shrinks widths; input_side caps the flattened input.
    small = _meta("mlp_modified", image_size=128, hidden_scale=0.25, input_side=16)
    assert [m.out_features for m in _modules(small, nn.Linear)] == [512, 1024, 512, NUM_CLASSES]
    assert _modules(small, nn.Linear)[0].in_features == 3 * 16 * 16
    assert _modules(_meta("mlp_basic", image_size=28), nn.Linear)[0].in_features == 3 * 28 * 28


def test_resnet_pair_differences():
    basic, modified = _meta("resnet_basic"), _meta("resnet_modified")
    assert basic.stem[0].out_channels == 64 and modified.stem[0].out_channels == 128
    # Basic blocks: 3x3 (1x1 projections on the skip), BN, ReLU, no dilation.
    assert {m.kernel_size for m in _modules(basic.stages, nn.Conv2d)} == {(3, 3), (1, 1)}
    assert {m.dilation for m in _modules(basic, nn.Conv2d)} == {(1, 1)}
    assert _modules(basic, nn.BatchNorm2d) and _modules(basic, nn.ReLU)
    assert not _modules(basic, (nn.GroupNorm, nn.Tanh))
    # Dilated 5x5 blocks, GroupNorm, Tanh; no BatchNorm or ReLU anywhere.
    block_convs = [m for m in _modules(modified.stages, nn.Conv2d) if m.kernel_size != (1, 1)]
    assert {m.kernel_size for m in block_convs} == {(5, 5)}
    assert all(m.dilation[0] > 1 for m in block_convs)
    assert _modules(modified, nn.GroupNorm) and _modules(modified, nn.Tanh)
    assert not _modules(modified, (nn.modules.batchnorm._BatchNorm, nn.ReLU))
    # Both have skip connections: a residual block's output is act(body(x) + skip(x)).
    for model in (basic, modified):
        assert len(model.stages) == 4 and all(hasattr(b, "skip") for b in model.stages)
    assert len(_meta("resnet_basic", blocks=2).stages) == 8
    assert [b.conv2.out_channels for b in _meta("resnet_basic", width=16).stages] == [16, 32, 64, 128]


def test_residual_skip_is_used():
    """Zeroing a block's body leaves act(skip(x)): the skip path carries the signal."""
    model = build_model("resnet_basic", num_classes=NUM_CLASSES, in_channels=3, image_size=16, width=4).eval()
    block = model.stages[0]
    nn.init.zeros_(block.norm2.weight)
    nn.init.zeros_(block.norm2.bias)
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(block(x), torch.relu(x))


# ---- mnist_mode (seed 002) ------------------------------------------------------------------

@pytest.mark.parametrize("mode", [1, 2, 3, 4, 5])
def test_mnist_mode_seed_training_defaults(mode):
    entry = get_model("mnist_mode")
    defaults = entry.training_defaults(entry.params(mode=mode))
    t = Training(**defaults)  # only Training keys
    assert (t.optimizer, t.momentum, t.batch_size, t.weight_decay) == ("sgd", 0.0, 10, 0.0)
    assert t.lr == (0.1 if mode <= 2 else 0.03)
    assert SEED_EPOCHS[mode] == (40 if mode == 5 else 60)


def test_mnist_mode_architectures():
    def arch(mode):
        m = build_model("mnist_mode", num_classes=10, in_channels=1, image_size=28, mode=mode)
        return (
            len(_modules(m, nn.Conv2d)),
            [lin.out_features for lin in _modules(m, nn.Linear)],
            {type(a) for a in _modules(m, (nn.Sigmoid, nn.ReLU))},
            [d.p for d in _modules(m, nn.Dropout)],
            m,
        )

    assert arch(1)[:4] == (0, [100, 10], {nn.Sigmoid}, [])
    assert arch(2)[:4] == (2, [100, 10], {nn.Sigmoid}, [])
    assert arch(3)[:4] == (2, [100, 10], {nn.ReLU}, [])
    assert arch(4)[:4] == (2, [100, 100, 10], {nn.ReLU}, [])
    assert arch(5)[:4] == (2, [1000, 1000, 10], {nn.ReLU}, [0.5, 0.5])
    model = arch(2)[4]
    convs = _modules(model, nn.Conv2d)
    assert all(c.out_channels == 40 and c.kernel_size == (5, 5) and c.stride == (1, 1) for c in convs)
    assert all(p.kernel_size == 2 and p.stride == 2 for p in _modules(model, nn.MaxPool2d))
    # 28 -> 24 -> 12 -> 8 -> 4: the FC sees 40*4*4, not the seed's 40*18*18 (stride-1 pooling).
    assert _modules(model, nn.Linear)[0].in_features == 640
    assert get_model("mnist_mode").preprocess(get_model("mnist_mode").params(mode=2)).min_image_size == 16


def test_mnist_mode_defaults_flow_through_engine_build():
    _, splits, t = build({"model": "mnist_mode", "mode": 3, "batch_size": 32},
                         DatasetConfig(name="digits", image_size=28), torch.device("cpu"))
    assert (t.lr, t.optimizer, t.momentum, t.batch_size) == (0.03, "sgd", 0.0, 32)  # the sweep overrides batch_size
    assert splits.image_size == 28


@pytest.mark.parametrize("mode", [1, 3])
def test_mnist_mode_learns_digits(mode):
    """With the seed's own settings (SGD, batch 10, lr 0.1 / 0.03) a few epochs reach 90%."""
    hist: list[dict] = []
    run_trial({"model": "mnist_mode", "mode": mode}, dataset=DatasetConfig(name="digits", image_size=28), epochs=3,
              report=lambda m, state: hist.append(m))
    assert max(m["val_acc"] for m in hist) >= 0.9, [m["val_acc"] for m in hist]


# ---- finetune -------------------------------------------------------------------------------

def _finetune(**hp) -> FinetuneModel:
    return build_model("finetune", num_classes=NUM_CLASSES, in_channels=3, image_size=32, **hp)


def _tv_layers(name: str = "resnet18") -> list[tuple[str, int]]:
    """(name, parameter count) of torchvision's own param-owning modules, head resized."""
    net = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES)
    return [(n, sum(p.numel() for p in m.parameters(recurse=False)))
            for n, m in net.named_modules() if list(m.parameters(recurse=False))]


RESNET18_TOTAL = 11_689_512 - 513_000 + 512 * NUM_CLASSES + NUM_CLASSES  # torchvision's 1000-class count, head resized
FC = 512 * NUM_CLASSES + NUM_CLASSES


def _trainable(model) -> int:
    return count_params(model)["trainable_params"]


def test_finetune_layers_and_names():
    model = _finetune()
    table = layer_table(model)
    assert len(table) == 41 and table[0][0] == "backbone.conv1" and table[-1][0] == "backbone.fc"
    assert [(n.removeprefix("backbone."), c) for n, c, _ in table] == _tv_layers()
    assert count_params(model)["total_params"] == RESNET18_TOTAL
    assert trainable_layers(model) == [n for n, _, _ in table]


@pytest.mark.parametrize(
    "hp,expected",
    [
        ({"freeze": "none"}, RESNET18_TOTAL),
        ({"freeze": "all_but_head"}, FC),
        ({"freeze": "head_frozen"}, RESNET18_TOTAL - FC),
        ({"freeze": "first_k", "k": 0}, RESNET18_TOTAL),
        ({"freeze": "first_k", "k": 2}, RESNET18_TOTAL - 64 * 3 * 7 * 7 - 2 * 64),  # conv1, bn1
        ({"freeze": "first_k", "k": 10_000}, FC),  # never the head
        ({"freeze": "last_k_trainable", "k": 1}, FC),
        ({"freeze": "last_k_trainable", "k": 2}, FC + 2 * 512),  # + layer4.1.bn2
        ({"freeze": "last_k_trainable", "k": 3}, FC + 2 * 512 + 512 * 512 * 9),  # + layer4.1.conv2
        ({"freeze": "last_k_trainable", "k": 41}, RESNET18_TOTAL),
        ({"freeze": "first_fraction", "freeze_fraction": 0.0}, RESNET18_TOTAL),
        ({"freeze": "first_fraction", "freeze_fraction": 1.0}, FC),
    ],
)
def test_finetune_trainable_counts_exact(hp, expected):
    assert _trainable(_finetune(**hp)) == expected


@pytest.mark.parametrize("k", [0, 1, 7, 20, 39, 40])
def test_finetune_first_k_and_fraction_by_layer_list(k):
    layers = _tv_layers()  # 40 body layers + fc
    expected = RESNET18_TOTAL - sum(c for _, c in layers[:k])
    assert _trainable(_finetune(freeze="first_k", k=k)) == expected
    assert _trainable(_finetune(freeze="first_fraction", freeze_fraction=k / 40)) == expected
    frozen = {n for n, _, trains in layer_table(_finetune(freeze="first_k", k=k)) if not trains}
    assert frozen == {f"backbone.{n}" for n, _ in layers[:k]}


def test_finetune_last_k_lists_trainable_layers():
    model = _finetune(freeze="last_k_trainable", k=2)
    assert trainable_layers(model) == ["backbone.layer4.1.bn2", "backbone.fc"]
    assert count_params(model)["trainable_layers"] == ["backbone.fc", "backbone.layer4.1.bn2"]


def test_finetune_last_k_zero_trains_nothing_is_an_error():
    with pytest.raises(ValueError, match="nothing to train"):
        _finetune(freeze="last_k_trainable", k=0)


@pytest.mark.parametrize("backbone,head,width", [("mobilenet_v3_small", "classifier.3", 1024),
                                                 ("efficientnet_b0", "classifier.1", 1280)])
def test_finetune_other_backbones(backbone, head, width):
    model = _finetune(backbone=backbone, freeze="all_but_head")
    assert model.head_name == head and trainable_layers(model) == [f"backbone.{head}"]
    assert _trainable(model) == width * NUM_CLASSES + NUM_CLASSES
    model.train()
    assert all(not m.training for m in _modules(model, nn.BatchNorm2d))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, NUM_CLASSES)


def test_finetune_frozen_layers_and_bn_stats_unchanged_after_training():
    torch.manual_seed(0)
    model = _finetune(freeze="first_fraction", freeze_fraction=0.5)
    frozen = {n for n, _, trains in layer_table(model) if not trains}
    assert len(frozen) == 20
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen_bn = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and n in frozen]
    live_bn = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and n not in frozen]
    assert frozen_bn and live_bn

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    model.eval()
    model.train()  # the engine calls train() every epoch: frozen BNs must stay in eval mode
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.training == (name not in frozen_bn), name
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, NUM_CLASSES, (4,), generator=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    after = model.state_dict()
    for name, p in model.named_parameters():
        layer = name.rsplit(".", 1)[0]
        if layer in frozen:
            assert not p.requires_grad and torch.equal(after[name], before[name]), name
        else:
            assert p.requires_grad and not torch.equal(after[name], before[name]), name
    for name in frozen_bn:
        for buf in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(after[f"{name}.{buf}"], before[f"{name}.{buf}"]), (name, buf)
    for name in live_bn:
        assert not torch.equal(after[f"{name}.running_mean"], before[f"{name}.running_mean"]), name


def test_finetune_loads_a_torchvision_state_dict(tmp_path):
    torch.manual_seed(1)
    tv = torchvision.models.resnet18().eval()
    path = tmp_path / "resnet18_tv.pt"
    torch.save(tv.state_dict(), path)
    x = torch.randn(2, 3, 32, 32)
    # Same class count: everything loads, the outputs are those of the saved model.
    torch.manual_seed(2)
    same = build_model("finetune", num_classes=1000, in_channels=3, image_size=32, weights=str(path)).eval()
    assert torch.equal(same(x), tv(x))
    # 7 classes: the body loads, the 1000-class head is replaced by a new one.
    torch.manual_seed(2)
    ours = _finetune(weights=str(path)).eval()
    sd = ours.state_dict()
    for k, v in tv.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(sd[f"backbone.{k}"], v), k
    assert sd["backbone.fc.weight"].shape == (NUM_CLASSES, 512)
    ours.backbone.fc, tv.fc = nn.Identity(), nn.Identity()
    assert torch.equal(ours(x), tv(x))


def test_finetune_loads_its_own_state_dict(tmp_path):
    torch.manual_seed(3)
    src = _finetune(freeze="all_but_head").eval()
    with torch.no_grad():  # make the head and a BN's statistics differ from any fresh init
        src.backbone.fc.weight.normal_()
        src.backbone.bn1.running_mean.uniform_()
    path = tmp_path / "ours.pt"
    torch.save(src.state_dict(), path)
    torch.manual_seed(4)
    loaded = _finetune(weights=str(path), freeze="head_frozen").eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), src(x))
    # A trial checkpoint ({"model": state_dict, ...}) works too.
    torch.save({"model": src.state_dict(), "epoch": 3}, path)
    assert torch.equal(_finetune(weights=str(path)).eval()(x), src(x))


def test_finetune_bad_weights_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        _finetune(weights=str(tmp_path / "missing.pt"))
    path = tmp_path / "r34.pt"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(ValueError, match="do not fit"):
        _finetune(weights=str(path))


def test_finetune_needs_three_channels():
    with pytest.raises(ValueError, match="3-channel"):
        build_model("finetune", num_classes=NUM_CLASSES, in_channels=1, image_size=32)


def test_finetune_preprocess():
    """ImageNet weights ask for what torchvision's DEFAULT weights' transforms do, every backbone (the
    catalog keeps it without torchvision: the driver validates specs without torch)."""
    import typing

    from trainables.core.models.catalog import Backbone

    entry = get_model("finetune")
    for backbone in typing.get_args(Backbone):
        pre = entry.preprocess(entry.params(weights="imagenet", backbone=backbone))
        t = torchvision.models.get_model_weights(backbone).DEFAULT.transforms()
        assert (pre.channels, pre.image_size) == (3, t.crop_size[0]), backbone
        assert pre.mean == pytest.approx(tuple(t.mean)) and pre.std == pytest.approx(tuple(t.std)), backbone
    plain = entry.preprocess(entry.params())
    assert (plain.channels, plain.mean, plain.image_size, plain.min_image_size) == (3, None, None, 32)


def test_finetune_imagenet_without_network_says_where_to_put_the_file():
    w = torchvision.models.get_model_weights("resnet18").DEFAULT
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(w.url).path))
    if os.path.exists(cached):
        pytest.skip(f"ImageNet weights are cached at {cached}")
    with pytest.raises(RuntimeError) as err:
        _finetune(weights="imagenet")
    assert cached in str(err.value) and torch.hub.get_dir() in str(err.value)


@pytest.mark.parametrize("kernels,size", [([2] * 5, 48), ([3, 3, 3, 3, 2], 48), ([4, 3, 3, 3, 3], 63),
                                          ([7, 2, 6, 4, 3], 37), ([3] * 5, 45)])
def test_the_cnn_takes_even_kernels_at_any_image_size(kernels, size):
    """An even kernel (padding k // 2) adds a pixel per block: the dense layer was sized for image_size // 32,
    and every trial of such a configuration failed at its first batch (mat1 and mat2 shapes cannot be
    multiplied)."""
    net = build_model("cnn", num_classes=10, in_channels=1, image_size=size, kernel_sizes=kernels,
                      filters=[4] * 5)
    assert net(torch.zeros(2, 1, size, size)).shape == (2, 10)
