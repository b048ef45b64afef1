"""Seed 002's five progressive MNIST networks (`mnist_mode`, mode 1..5).

1. flatten -> FC 100, sigmoid -> classifier            (SGD, lr 0.1, batch 10, 60 epochs)
2. + conv 5x5 (40 kernels, stride 1) -> 2x2 pool, twice; still sigmoid
3. ReLU instead of sigmoid                             (lr 0.03)
4. + a second FC 100 layer
5. both FC layers 1000 wide, dropout 0.5               (40 epochs)

Why modes 2-5 never converged in the seed: its logs show the first FC layer of the conv
modes taking 40*18*18 = 12960 inputs, i.e. the 2x2 pooling ran with stride 1 (the seed's
"stride = 1" belongs to the convolutions). With the default init (weights ~ U(+-1/sqrt(fan_in)))
a 12960-wide layer of all-positive inputs (sigmoid or ReLU outputs) takes a huge first step at
lr 0.1 / 0.03 with batches of 10: the sigmoid units saturate (loss stuck near 3.5) and the
ReLU units die (loss pinned at ln 10 = 2.303, chance accuracy). The seed also put a
Dropout2d (channel dropout) on flat FC activations.
Fixed here: non-overlapping 2x2 pooling (stride 2: 28 -> 24 -> 12 -> 8 -> 4, a 640-wide FC
input), an init matched to the activation (Glorot for sigmoid, He for ReLU, zero biases),
plain Dropout on FC activations, and raw logits out (the engine's CrossEntropyLoss applies
the softmax; no softmax inside the model). Inputs arrive standardised from the data pipeline.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from trainables.layers import create_act
from trainables.models.registry import ModelParams, Preprocess, register_model

# The seed's epochs per mode; epochs are a sweep setting, not a Training key, so recorded only.
SEED_EPOCHS = {1: 60, 2: 60, 3: 60, 4: 60, 5: 40}
CONV_KERNEL, CONV_FILTERS = 5, 40


class MnistModeParams(ModelParams):
    mode: Literal[1, 2, 3, 4, 5] = 1


def _conv_side(image_size: int) -> int:
    """Side of the feature map after (valid 5x5 conv -> 2x2/2 pool) twice."""
    side = image_size
    for _ in range(2):
        side = (side - CONV_KERNEL + 1) // 2
    return side


# Smallest input whose feature map survives both conv + pool stages (side >= 1).
MIN_CONV_SIZE = next(s for s in range(1, 64) if _conv_side(s) >= 1)


class MnistMode(nn.Module):
    def __init__(self, mode: int, *, num_classes: int, in_channels: int, image_size: int):
        super().__init__()
        self.mode = mode
        act = "sigmoid" if mode <= 2 else "relu"
        if mode == 1:
            self.features = nn.Flatten()
            flat = in_channels * image_size * image_size
        else:
            if image_size < MIN_CONV_SIZE:
                raise ValueError(f"mnist_mode {mode} needs image_size >= {MIN_CONV_SIZE}, got {image_size}")
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, CONV_FILTERS, CONV_KERNEL),
                create_act(act),
                nn.MaxPool2d(2),  # non-overlapping: stride 2 (the seed's stride-1 pooling was the bug)
                nn.Conv2d(CONV_FILTERS, CONV_FILTERS, CONV_KERNEL),
                create_act(act),
                nn.MaxPool2d(2),
                nn.Flatten(),
            )
            flat = CONV_FILTERS * _conv_side(image_size) ** 2
        widths = {1: [100], 2: [100], 3: [100], 4: [100, 100], 5: [1000, 1000]}[mode]
        hidden: list[nn.Module] = []
        for w in widths:
            hidden += [nn.Linear(flat, w), create_act(act)]
            if mode == 5:
                hidden.append(nn.Dropout(0.5))  # element-wise on FC activations, not Dropout2d
            flat = w
        self.hidden = nn.Sequential(*hidden)
        self.classifier = nn.Linear(flat, num_classes)  # logits: CrossEntropyLoss does the softmax
        self._init(act)

    def _init(self, act: str) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if act == "relu" and m is not self.classifier:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                else:  # sigmoid layers and the linear classifier
                    nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(self.features(x)))


def _training_defaults(p: MnistModeParams) -> dict[str, Any]:
    # The seed's plain SGD: no momentum, mini-batches of 10, no regularisation.
    return {"optimizer": "sgd", "momentum": 0.0, "batch_size": 10, "lr": 0.1 if p.mode <= 2 else 0.03, "weight_decay": 0.0}


@register_model(
    "mnist_mode",
    params=MnistModeParams,
    training_defaults=_training_defaults,
    preprocess=lambda p: Preprocess(min_image_size=1 if p.mode == 1 else MIN_CONV_SIZE),
)
def mnist_mode(p: MnistModeParams, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return MnistMode(p.mode, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
