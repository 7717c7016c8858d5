"""Fast CNN for real-time use: plain 3x3 convolutions (fast per FLOP on CPUs), ~25 M MACs."""

from __future__ import annotations

import torch
import torch.nn as nn

from fervid.models import ModelCfg, conv_bn_act, register_model


class FastCNN(nn.Module):
    def __init__(
        self, num_classes: int = 7, in_chans: int = 1, widths: tuple[int, ...] = (32, 64, 128, 256), drop: float = 0.3
    ):
        super().__init__()
        w1, w2, w3, w4 = widths
        # A stride-2 stem halves the work of every later layer; 48x48 faces keep enough
        # detail at 24x24 for expression (mini-Xception and MobileNet-style FER nets do the same).
        self.features = nn.Sequential(
            conv_bn_act(in_chans, w1, stride=2),
            conv_bn_act(w1, w1),
            nn.MaxPool2d(2),  # 12x12
            conv_bn_act(w1, w2),
            conv_bn_act(w2, w2),
            nn.MaxPool2d(2),  # 6x6
            conv_bn_act(w2, w3),
            conv_bn_act(w3, w3),
            nn.MaxPool2d(2),  # 3x3
            conv_bn_act(w3, w4),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop), nn.Linear(w4, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model(cfg=ModelCfg(first_conv="features.0.0", classifier="head.3", head="head"))
def fast_cnn(
    num_classes: int = 7, in_chans: int = 1, widths: tuple[int, ...] | list[int] = (32, 64, 128, 256), drop: float = 0.3
) -> nn.Module:
    """Real-time CNN (~0.6 M params, ~25 M MACs at 48x48) for video and edge devices."""
    return FastCNN(num_classes, in_chans, tuple(widths), drop)
