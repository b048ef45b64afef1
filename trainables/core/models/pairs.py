"""Seed 000's three architecture pairs: a basic model and a modified one, to ask whether their
best hyperparameters differ (sweep `model: {grid: [cnn_basic, cnn_modified]}`).

- cnn_basic / cnn_modified: 3x3 kernels, max pooling, no BN  vs  5x5 kernels, average pooling, BN.
- mlp_basic / mlp_modified: 4096-4096 ReLU, dropout 0.5  vs  2048-4096-2048 LeakyReLU, dropouts
  0.4/0.6 and 3 BN layers; then the classifier (the seed's last width, 1000, is the class count).
- resnet_basic / resnet_modified: basic blocks (3x3, BN, ReLU), 64-channel stem  vs  dilated 5x5
  blocks (GroupNorm, Tanh), 128-channel stem; both with skip connections.

Each ends in a global (adaptive) pooling or pools to a fixed side, so any input at least
`min_image_size` works and the classifier's size does not depend on the image size.
"""
from __future__ import annotations

import torch
from torch import nn

from trainables.core.layers import create_act, create_norm1d, create_norm2d
from trainables.core.models.catalog import (
    CNNPairParams,
    MLPBasicParams,
    MLPModifiedParams,
    MLPPairParams,
    ResNetBasicParams,
    ResNetModifiedParams,
)


class PairCNN(nn.Module):
    """Blocks of conv -> [BN] -> ReLU -> pool(2), global pooling, two dense layers, classifier."""

    def __init__(self, p: CNNPairParams, *, kernel: int, pool: str, batch_norm: bool, num_classes: int,
                 in_channels: int):
        super().__init__()
        pool2d, global_pool = {
            "max": (nn.MaxPool2d, nn.AdaptiveMaxPool2d),
            "avg": (nn.AvgPool2d, nn.AdaptiveAvgPool2d),
        }[pool]
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(p.blocks):
            f = min(p.width * 2**i, 8 * p.width)
            layers += [
                nn.Conv2d(c, f, kernel, padding=kernel // 2, bias=not batch_norm),  # BN has its own shift
                create_norm2d("batch" if batch_norm else "none", f),
                create_act("relu"),
                pool2d(2),
            ]
            c = f
        self.features = nn.Sequential(*layers)
        # Global pooling of the same kind as the blocks: any input size gives c features.
        self.pool = nn.Sequential(global_pool(1), nn.Flatten())
        d = p.dense_units
        self.dense = nn.Sequential(
            nn.Linear(c, d), create_act("relu"), nn.Dropout(p.dropout),
            nn.Linear(d, d), create_act("relu"), nn.Dropout(p.dropout),
        )
        self.classifier = nn.Linear(d, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dense(self.pool(self.features(x))))


def cnn_basic(p: CNNPairParams, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return PairCNN(p, kernel=3, pool="max", batch_norm=False, num_classes=num_classes, in_channels=in_channels)


def cnn_modified(p: CNNPairParams, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return PairCNN(p, kernel=5, pool="avg", batch_norm=True, num_classes=num_classes, in_channels=in_channels)


# ---- MLP pair -----------------------------------------------------------------------------

def _scaled(widths: list[int], scale: float) -> list[int]:
    return [max(1, round(w * scale)) for w in widths]


class PairMLP(nn.Module):
    """flatten -> per hidden width: Linear -> [BN] -> activation -> dropout; then the classifier."""

    def __init__(self, widths: list[int], dropouts: list[float], *, act: str, norm: str, side: int, num_classes: int,
                 in_channels: int):
        super().__init__()
        self.input = nn.Sequential(nn.AdaptiveAvgPool2d(side), nn.Flatten())
        layers: list[nn.Module] = []
        f = in_channels * side * side
        for w, drop in zip(widths, dropouts, strict=True):
            layers += [nn.Linear(f, w, bias=norm == "none"), create_norm1d(norm, w), create_act(act), nn.Dropout(drop)]
            f = w
        self.hidden = nn.Sequential(*layers)
        self.classifier = nn.Linear(f, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(self.input(x)))


def _side(p: MLPPairParams, image_size: int) -> int:
    return min(p.input_side, image_size)


def mlp_basic(p: MLPBasicParams, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return PairMLP(
        _scaled([4096, 4096], p.hidden_scale), [p.dropout] * 2,
        act="relu", norm="none", side=_side(p, image_size), num_classes=num_classes, in_channels=in_channels,
    )


def mlp_modified(p: MLPModifiedParams, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return PairMLP(
        _scaled([2048, 4096, 2048], p.hidden_scale), [p.dropout1, p.dropout2, p.dropout1],
        act="leaky_relu", norm="batch", side=_side(p, image_size), num_classes=num_classes, in_channels=in_channels,
    )


# ---- ResNet pair --------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """conv -> norm -> act -> conv -> norm, plus the (projected) input, then act."""

    def __init__(self, cin: int, cout: int, *, kernel: int, stride: int, dilation: int, norm: str, act: str):
        super().__init__()
        pad = dilation * (kernel // 2)  # "same" padding for a dilated kernel
        self.conv1 = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation, bias=False)
        self.norm1 = create_norm2d(norm, cout, groups=32)
        self.act1 = create_act(act)
        self.conv2 = nn.Conv2d(cout, cout, kernel, padding=pad, dilation=dilation, bias=False)
        self.norm2 = create_norm2d(norm, cout, groups=32)
        self.skip = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), create_norm2d(norm, cout, groups=32)
            )
        self.act2 = create_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        return self.act2(out + self.skip(x))


class PairResNet(nn.Module):
    """A 3x3 stem (stride 1: small images keep their resolution), residual stages, global pool."""

    def __init__(self, *, stem: int, stages: list[tuple[int, int, int]], blocks: int, kernel: int, norm: str, act: str,
                 num_classes: int, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), create_norm2d(norm, stem, groups=32),
            create_act(act),
        )
        layers: list[nn.Module] = []
        c = stem
        for cout, stride, dilation in stages:  # (channels, stride of the first block, dilation)
            for b in range(blocks):
                layers.append(ResidualBlock(c, cout, kernel=kernel, stride=stride if b == 0 else 1, dilation=dilation,
                                            norm=norm, act=act))
                c = cout
        self.stages = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, num_classes)
        gain = nn.init.calculate_gain("tanh") if act == "tanh" else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if gain is None:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:  # Glorot for tanh: He init would push tanh into saturation
                    nn.init.xavier_uniform_(m.weight, gain=gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))))


def resnet_basic(p: ResNetBasicParams, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    w = p.width
    stages = [(w, 1, 1), (2 * w, 2, 1), (4 * w, 2, 1), (8 * w, 2, 1)]  # three halvings: min size 8
    return PairResNet(stem=w, stages=stages, blocks=p.blocks, kernel=3, norm="batch", act="relu",
                      num_classes=num_classes, in_channels=in_channels)


def resnet_modified(p: ResNetModifiedParams, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    w = p.width
    # Dilation instead of striding keeps the resolution (one halving only, as in the seed).
    stages = [(2 * w, 1, 2), (4 * w, 2, 2), (4 * w, 1, 4), (8 * w, 1, 4)]
    return PairResNet(stem=w, stages=stages, blocks=p.blocks, kernel=5, norm="group", act="tanh",
                      num_classes=num_classes, in_channels=in_channels)
