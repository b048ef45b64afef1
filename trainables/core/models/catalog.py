"""Every model's name, hyperparameters, input needs and training defaults; no torch.

The spec is validated against these (on the driver, which never builds a model); each entry
names its builder, in the model's own module with its nn.Modules.
"""
from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from trainables.core.layers import Activation
from trainables.core.models.registry import ModelParams, Preprocess, register_model

Width = Annotated[int, Field(ge=1, le=4096)]
DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]

# ---- cnn: the configurable 5-block CNN of seeds 001 and 004 (cnn.py) ------------------------

NUM_BLOCKS = 5
Kernel = Annotated[int, Field(ge=1, le=15)]


class CNNParams(ModelParams):
    kernel_sizes: list[Kernel] = [3, 3, 3, 3, 3]
    filters: list[Width] = [32, 32, 32, 32, 32]
    activation: Activation = "relu"
    dropout: DropoutRate = 0.0
    batch_norm: bool = False
    dense_units: Width = 128

    @field_validator("kernel_sizes", "filters")
    @classmethod
    def _five(cls, v: list[int]) -> list[int]:
        if len(v) != NUM_BLOCKS:
            raise ValueError(f"expected {NUM_BLOCKS} values, one per block, got {len(v)}")
        return v


register_model("cnn", builder="trainables.core.models.cnn:cnn", params=CNNParams,
               preprocess=lambda p: Preprocess(min_image_size=2**NUM_BLOCKS))

# ---- finetune: a torchvision backbone, new head, freezing strategy (finetune.py) ------------

Backbone = Literal[
    "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"
]
Freeze = Literal["none", "all_but_head", "first_fraction", "first_k", "last_k_trainable", "head_frozen"]
MIN_IMAGE_SIZE = 32  # five stride-2 stages down to 1x1
# What the DEFAULT ImageNet weights of every backbone expect (their transforms' crop size and normalisation;
# tests/test_models.py checks it against torchvision): the driver validates specs without importing torch.
IMAGENET_CROP, IMAGENET_MEAN, IMAGENET_STD = 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FinetuneParams(ModelParams):
    backbone: Backbone = "resnet18"
    weights: str = "none"  # imagenet | none | PATH to a state_dict
    freeze: Freeze = "none"
    # first_fraction: freeze this fraction of the backbone's layers, counted from the input
    # (the new head is not counted and trains: 1.0 is all_but_head).
    freeze_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    # first_k: freeze the first k layers (head excluded, as above); last_k_trainable: train
    # only the last k layers, the head included (seed 003 trains the last two).
    k: Annotated[int, Field(ge=0, le=10_000)] = 2

    @model_validator(mode="after")
    def _something_trains(self) -> "FinetuneParams":
        if self.freeze == "last_k_trainable" and self.k == 0:
            raise ValueError("freeze last_k_trainable with k 0 leaves nothing to train: k >= 1")
        return self

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("weights must be 'imagenet', 'none' or a path to a state_dict file")
        return v.lower() if v.lower() in ("imagenet", "none") else os.path.expanduser(v)


def _finetune_preprocess(p: FinetuneParams) -> Preprocess:
    if p.weights == "imagenet":
        return Preprocess(channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=IMAGENET_CROP,
                          min_image_size=MIN_IMAGE_SIZE)
    # Random or file weights: the dataset's own normalisation; grayscale is repeated to 3 channels.
    return Preprocess(channels=3, min_image_size=MIN_IMAGE_SIZE)


register_model("finetune", builder="trainables.core.models.finetune:finetune", params=FinetuneParams,
               preprocess=_finetune_preprocess)

# ---- mnist_mode: seed 002's five progressive MNIST networks (mnist_modes.py) ----------------

# The seed's epochs per mode; epochs are a sweep setting, not a Training key, so recorded only.
SEED_EPOCHS = {1: 60, 2: 60, 3: 60, 4: 60, 5: 40}
CONV_KERNEL, CONV_FILTERS = 5, 40


class MnistModeParams(ModelParams):
    mode: Literal[1, 2, 3, 4, 5] = 1


def conv_side(image_size: int) -> int:
    """Side of the feature map after (valid 5x5 conv -> 2x2/2 pool) twice."""
    side = image_size
    for _ in range(2):
        side = (side - CONV_KERNEL + 1) // 2
    return side


# Smallest input whose feature map survives both conv + pool stages (side >= 1).
MIN_CONV_SIZE = next(s for s in range(1, 64) if conv_side(s) >= 1)


def _mnist_training_defaults(p: MnistModeParams) -> dict[str, Any]:
    # The seed's plain SGD: no momentum, mini-batches of 10, no regularisation.
    return {"optimizer": "sgd", "momentum": 0.0, "batch_size": 10, "lr": 0.1 if p.mode <= 2 else 0.03,
            "weight_decay": 0.0}


register_model("mnist_mode", builder="trainables.core.models.mnist_modes:mnist_mode", params=MnistModeParams,
               training_defaults=_mnist_training_defaults,
               preprocess=lambda p: Preprocess(min_image_size=1 if p.mode == 1 else MIN_CONV_SIZE))

# ---- seed 000's pairs: a basic and a modified model each (pairs.py) -------------------------

Scale = Annotated[float, Field(gt=0.0, le=1.0)]


class CNNPairParams(ModelParams):
    width: Width = 64  # first block's filters, doubled per block up to 8x (64-128-256-512-512)
    blocks: Annotated[int, Field(ge=1, le=6)] = 5
    dense_units: Width = 4096  # two dense layers of this width before the classifier
    dropout: DropoutRate = 0.5  # after each dense layer


def _cnn_pair_preprocess(p: CNNPairParams) -> Preprocess:
    return Preprocess(min_image_size=2**p.blocks)  # every pooling still has 2 pixels to halve


class MLPPairParams(ModelParams):
    hidden_scale: Scale = 1.0  # multiplies every hidden width (shrink for small machines)
    # Images are average-pooled to at most this side before flattening: the seed flattened
    # 224x224x3 (a 616M-weight first layer); 32 keeps 28-32 px datasets exact.
    input_side: Annotated[int, Field(ge=1, le=512)] = 32


class MLPBasicParams(MLPPairParams):
    dropout: DropoutRate = 0.5  # the seed's one dropout rate, after each hidden layer


class MLPModifiedParams(MLPPairParams):
    dropout1: DropoutRate = 0.4  # after the first and third hidden layers
    dropout2: DropoutRate = 0.6  # after the second (widest) hidden layer


class ResNetBasicParams(ModelParams):
    width: Width = 64  # stem channels; the four stages have 1x, 2x, 4x, 8x this
    blocks: Annotated[int, Field(ge=1, le=8)] = 1  # blocks per stage (the seed: 1; resnet18: 2)


class ResNetModifiedParams(ModelParams):
    width: Width = 128  # stem channels; the four stages have 2x, 4x, 4x, 8x this
    blocks: Annotated[int, Field(ge=1, le=8)] = 1


for _name, _params, _pre in (
    ("cnn_basic", CNNPairParams, _cnn_pair_preprocess),
    ("cnn_modified", CNNPairParams, _cnn_pair_preprocess),
    ("mlp_basic", MLPBasicParams, None),
    ("mlp_modified", MLPModifiedParams, None),
    ("resnet_basic", ResNetBasicParams, lambda p: Preprocess(min_image_size=8)),  # three halvings
    ("resnet_modified", ResNetModifiedParams, lambda p: Preprocess(min_image_size=2)),  # one halving
):
    register_model(_name, builder=f"trainables.core.models.pairs:{_name}", params=_params, preprocess=_pre)
