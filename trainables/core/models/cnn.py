"""The configurable 5-block CNN of seeds 001 and 004 (its hyperparameters: catalog.CNNParams)."""
from __future__ import annotations

import torch
from torch import nn

from trainables.core.layers import create_act
from trainables.core.models.catalog import NUM_BLOCKS, CNNParams


class CNN(nn.Module):
    """Per block: conv -> [batch norm] -> activation -> max-pool -> [dropout]; then dense + classifier."""

    def __init__(self, p: CNNParams, *, num_classes: int, in_channels: int, image_size: int):
        super().__init__()
        if image_size < 2**NUM_BLOCKS:
            raise ValueError(
                f"cnn needs image_size >= {2**NUM_BLOCKS} to survive {NUM_BLOCKS} poolings, got {image_size}"
            )
        blocks, c = [], in_channels
        for k, f in zip(p.kernel_sizes, p.filters, strict=True):
            blocks += [
                nn.Conv2d(c, f, k, padding=k // 2, bias=not p.batch_norm),
                nn.BatchNorm2d(f) if p.batch_norm else nn.Identity(),
                create_act(p.activation),
                nn.MaxPool2d(2),
                nn.Dropout(p.dropout) if p.dropout else nn.Identity(),
            ]
            c = f
        self.features = nn.Sequential(*blocks)
        side = image_size  # through each block: conv (padding k // 2: an even kernel adds a pixel), then pool 2
        for k in p.kernel_sizes:
            side = (side + 2 * (k // 2) - k + 1) // 2
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * side * side, p.dense_units, bias=not p.batch_norm),
            nn.BatchNorm1d(p.dense_units) if p.batch_norm else nn.Identity(),
            create_act(p.activation),
            nn.Dropout(p.dropout) if p.dropout else nn.Identity(),
        )
        self.classifier = nn.Linear(p.dense_units, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dense(self.features(x)))


def cnn(p: CNNParams, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return CNN(p, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
