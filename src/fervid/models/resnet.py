"""ResNet-18 adapted to 48x48 faces: 3x3 stride-1 stem and no stem max-pool, so the last
stage still sees 6x6 instead of the 2x2 an ImageNet stem would leave."""

from __future__ import annotations

import torch
import torch.nn as nn

from fervid.models import ModelCfg, register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.short(x))


class ResNet48(nn.Module):
    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        width: int = 64,
        depths: tuple[int, ...] = (2, 2, 2, 2),
        drop: float = 0.2,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        blocks: list[nn.Module] = []
        cin = width
        for i, d in enumerate(depths):
            cout = width * 2**i
            for j in range(d):
                blocks.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop), nn.Linear(cin, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@register_model(cfg=ModelCfg(first_conv="stem.0", classifier="head.3", head="head"))
def resnet18_fer(num_classes: int = 7, in_chans: int = 1, width: int = 64, drop: float = 0.2) -> nn.Module:
    """ResNet-18 with a 48x48 stem (width 64: ~11 M params)."""
    return ResNet48(num_classes, in_chans, width, (2, 2, 2, 2), drop)
