"""Model zoo: torch CNNs registered by name.

Trained entries (``mbv2-fmnist``, ``mcunet-fmnist``) load their committed checkpoints;
architecture-only entries (``mbv2-imagenet``, ``mcunet-320kb``, ``mbv1-vww``) have seeded random
weights and serve analysis that needs no accuracy (3-channel inputs are fed the grey
Fashion-MNIST images in every channel).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .blocks import BlockSpec, ConvBNAct, InvertedResidual, MBNet, fold_batchnorm
from .resolve import ModelRef, ModelSpecError, parse_input_shape, resolve

CHECKPOINT_DIR = os.path.join(os.path.dirname(__file__), "checkpoints")


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


class CheckpointError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    trained: bool
    description: str
    train_cfg: dict = field(default_factory=dict)

    @property
    def checkpoint(self) -> str:
        return os.path.join(CHECKPOINT_DIR, f"{self.name}.pt")

    @property
    def metrics_file(self) -> str:
        return os.path.join(CHECKPOINT_DIR, f"{self.name}.json")


def _mbv2_fmnist() -> nn.Module:
    B = BlockSpec
    return MBNet(1, 8, [
        B(16, 3, 1, 3), B(16, 3, 2, 4), B(24, 3, 1, 4), B(32, 3, 2, 4),
        B(32, 3, 1, 4), B(64, 3, 2, 4), B(64, 3, 1, 4), B(96, 3, 1, 4), B(96, 3, 1, 4),
    ], head=256, num_classes=10, dropout=0.1)


def _mcunet_fmnist() -> nn.Module:
    B = BlockSpec
    return MBNet(1, 8, [
        B(16, 7, 1, 3), B(24, 5, 2, 4), B(24, 7, 1, 3), B(40, 5, 2, 4),
        B(40, 3, 1, 4), B(80, 5, 2, 4), B(80, 3, 1, 4), B(96, 3, 1, 4),
    ], head=192, num_classes=10, dropout=0.1)


def _mbv2_imagenet(width: float = 1.0) -> nn.Module:
    """MobileNetV2 (Sandler et al.) at width 1.0 for 224×224 ImageNet."""
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    blocks = []
    for t, c, n, s in cfg:
        for i in range(n):
            blocks.append(BlockSpec(int(c * width), 3, s if i == 0 else 1, t))
    return MBNet(3, int(32 * width), blocks, head=1280, num_classes=1000)


def _mcunet_320kb() -> nn.Module:
    """An MCUNet-style ImageNet net sized for a 320 KB SRAM MCU (160×160 input, k∈{3,5,7})."""
    B = BlockSpec
    return MBNet(3, 16, [
        B(8, 3, 1, 1), B(16, 7, 2, 3), B(16, 3, 1, 4), B(24, 7, 2, 4), B(24, 5, 1, 3),
        B(40, 5, 2, 4), B(40, 5, 1, 3), B(48, 5, 1, 4), B(96, 5, 2, 4), B(96, 3, 1, 3),
        B(160, 7, 1, 4),
    ], head=0, num_classes=1000)


class MobileNetV1(nn.Module):
    """MobileNetV1 (Howard et al.): stem conv → depthwise-separable blocks (depthwise 3×3 +
    pointwise 1×1, each with BN and ReLU6) → global average pool → linear."""

    def __init__(self, in_ch: int, stem: int, blocks: list[tuple[int, int]], num_classes: int):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(in_ch, stem, 3, 2)]
        cin = stem
        for cout, stride in blocks:
            layers += [ConvBNAct(cin, cin, 3, stride, groups=cin), ConvBNAct(cin, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _mbv1_vww(width: float = 0.25) -> nn.Module:
    """MobileNetV1 at width 0.25 for 96×96×3, 2 classes: the MLPerf Tiny visual-wake-words
    model's shape."""
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
           (1024, 2), (1024, 1)]
    return MobileNetV1(3, int(32 * width), [(int(c * width), s) for c, s in cfg], 2)


REGISTRY: dict[str, ModelInfo] = {m.name: m for m in [
    ModelInfo("mbv2-fmnist", _mbv2_fmnist, (1, 64, 64), 10, True,
              "MobileNetV2-style inverted residuals, Fashion-MNIST upsampled to 64×64",
              {"epochs": 12, "lr": 0.1, "batch": 128, "seed": 0}),
    ModelInfo("mcunet-fmnist", _mcunet_fmnist, (1, 64, 64), 10, True,
              "MCUNet-style net with 7×7 and 5×5 kernels in its early stage, Fashion-MNIST 64×64",
              {"epochs": 12, "lr": 0.1, "batch": 128, "seed": 0}),
    ModelInfo("mbv2-imagenet", _mbv2_imagenet, (3, 224, 224), 1000, False,
              "MobileNetV2 width 1.0, 224×224 (architecture only, random weights)"),
    ModelInfo("mcunet-320kb", _mcunet_320kb, (3, 160, 160), 1000, False,
              "MCUNet-like net for 320 KB SRAM, 160×160 (architecture only, random weights)"),
    ModelInfo("mbv1-vww", _mbv1_vww, (3, 96, 96), 2, False,
              "MobileNetV1 width 0.25, 96×96×3, 2 classes: MLPerf Tiny visual wake words shape "
              "(architecture only, random weights; a latency anchor)"),
]}

DEFAULT_MODEL = "mbv2-fmnist"


def info(name: str) -> ModelInfo:
    if name not in REGISTRY:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def load_checkpoint(model: nn.Module, path: str) -> None:
    if not os.path.exists(path):
        raise CheckpointError(
            f"checkpoint {path} is missing: train it with "
            f"`python -m tvm_quantmcu.models.train --model "
            f"{os.path.basename(path)[:-3]}`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # torch raises many kinds for a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or does not fit the model: "
                              f"{first}") from e


def get(name: str, pretrained: bool = True, folded: bool = False,
        checkpoint: str | None = None) -> nn.Module:
    """The torch module of a registered model, in eval mode.

    pretrained: load the committed checkpoint (trained entries) or the seeded random weights.
    folded: BatchNorm folded into the convolutions.
    checkpoint: load this state-dict file instead of the committed one.
    """
    mi = info(name)
    torch.manual_seed(0)
    model = mi.build()
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    elif pretrained and mi.trained:
        load_checkpoint(model, mi.checkpoint)
    model.eval()
    if folded:
        fold_batchnorm(model)
    return model


def checkpoint_hash(name: str) -> str:
    """Short content hash of a model's weights (identifies it in policies and firmware)."""
    mi = info(name)
    h = hashlib.sha256(name.encode())
    if mi.trained and os.path.exists(mi.checkpoint):
        with open(mi.checkpoint, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def recorded_metrics(name: str) -> dict:
    mi = info(name)
    if not os.path.exists(mi.metrics_file):
        return {}
    with open(mi.metrics_file) as f:
        return json.load(f)


__all__ = ["BlockSpec", "ConvBNAct", "InvertedResidual", "MBNet", "fold_batchnorm",
           "REGISTRY", "DEFAULT_MODEL", "ModelInfo", "info", "get", "checkpoint_hash",
           "UnknownModelError", "CheckpointError", "recorded_metrics", "load_checkpoint",
           "ModelRef", "ModelSpecError", "resolve", "parse_input_shape"]
