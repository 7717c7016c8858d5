"""A small ConvNeXt (Liu et al. 2022) for 48x48 faces: depthwise 7x7 convolutions,
LayerNorm, inverted-bottleneck MLPs, layer scale and stochastic depth."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fervid.models import ModelCfg, register_model


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Block(nn.Module):
    def __init__(self, dim: int, drop_path: float, ls_init: float = 1e-6):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.gamma = nn.Parameter(ls_init * torch.ones(dim))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)
        y = (self.mlp(self.norm(y)) * self.gamma).permute(0, 3, 1, 2)
        if self.training and self.drop_path > 0:
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop_path
            y = y * keep / (1 - self.drop_path)
        return x + y


class ConvNeXt48(nn.Module):
    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        dims: tuple[int, ...] = (48, 96, 192, 384),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        drop_path: float = 0.1,
    ):
        super().__init__()
        # 3x3 stride-1 stem (not ImageNet's 4x4 patchify): 48x48 faces cannot afford a 4x downsample.
        self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], 3, 1, 1), LayerNorm2d(dims[0]))
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        stages: list[nn.Module] = []
        k = 0
        for i, (d, n) in enumerate(zip(dims, depths)):
            if i > 0:
                stages.append(nn.Sequential(LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], d, 2, 2)))
            stages += [Block(d, rates[k + j]) for j in range(n)]
            k += n
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1])
        self.fc = nn.Linear(dims[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.forward_features(x).mean((2, 3))))


@register_model(cfg=ModelCfg(first_conv="stem.0", classifier="fc"))
def convnext_fer(
    num_classes: int = 7,
    in_chans: int = 1,
    dims: tuple[int, ...] | list[int] = (48, 96, 192, 384),
    depths: tuple[int, ...] | list[int] = (2, 2, 6, 2),
    drop_path: float = 0.1,
) -> nn.Module:
    """Small ConvNeXt with a 48x48 stem (~4.8 M params)."""
    return ConvNeXt48(num_classes, in_chans, tuple(dims), tuple(depths), drop_path)
