"""Building blocks shared by every net of the zoo: conv+BN+act and inverted residuals."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) → BatchNorm2d → optional ReLU6. Folding replaces bn by Identity."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                 act: bool = True):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=False) if act else nn.Identity(),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [expand 1×1] → depthwise k×k → linear project 1×1 (+ residual)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(cin, hidden, 1))
        layers += [ConvBNAct(hidden, hidden, k, stride, groups=hidden),
                   ConvBNAct(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res else y


@dataclass(frozen=True)
class BlockSpec:
    cout: int
    k: int
    stride: int
    expand: int


class MBNet(nn.Module):
    """Stem conv → inverted residual blocks → 1×1 head → global average pool → linear."""

    def __init__(self, in_ch: int, stem: int, blocks: list[BlockSpec], head: int,
                 num_classes: int, stem_stride: int = 2, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(in_ch, stem, 3, stem_stride)]
        cin = stem
        for b in blocks:
            layers.append(InvertedResidual(cin, b.cout, b.k, b.stride, b.expand))
            cin = b.cout
        if head:
            layers.append(ConvBNAct(cin, head, 1))
            cin = head
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every Conv2d→BatchNorm2d pair of a ConvBNAct (or plain Sequential) in place.

    The BN is replaced by Identity and the conv gains a bias, so exported graphs hold no BN.
    """
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules.keys())
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                _fold_pair(conv, bn)
                module._modules[b] = nn.Identity()
    return model


@torch.no_grad()
def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    new_bias = (bias - bn.running_mean) * scale + bn.bias
    conv.bias = nn.Parameter(new_bias)
