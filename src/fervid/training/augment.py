"""Batched augmentation on tensors: one affine warp per batch (rotation, scale, shift,
flip), brightness/contrast jitter, random erasing and mixup/cutmix. Everything runs on
whole batches on the training device: no per-sample Python in the hot path."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    hflip: float = 0.5  # probability of a horizontal flip
    rotate: float = 10.0  # max rotation, degrees
    scale: tuple[float, float] = (0.85, 1.15)  # zoom range (>1 zooms in: a random resized crop)
    translate: float = 0.1  # max shift, share of the side
    brightness: float = 0.2  # +- additive, in normalised units of the [0,1] range
    contrast: float = 0.2  # +- multiplicative
    erase: float = 0.25  # probability of erasing one rectangle
    erase_area: tuple[float, float] = (0.02, 0.15)
    mixup: float = 0.0  # probability that a batch is mixed (mixup or cutmix, half each)
    mixup_alpha: float = 0.4


def augment(
    x: torch.Tensor,
    cfg: AugmentConfig,
    g: torch.Generator,
    strength: torch.Tensor | None = None,
    *,
    rows: torch.Tensor | None = None,
    total: int | None = None,
) -> torch.Tensor:
    """Augment a float batch ``N x C x H x W`` (values in [0, 1], before normalisation).

    ``strength`` (``N``, default 1) scales the geometric and erasing ranges per sample,
    which is how minority classes get stronger augmentation.

    ``rows``/``total``: ``x`` holds rows ``rows`` of a batch of ``total`` samples (one data-
    parallel rank's share). The random parameters are drawn for the whole batch and these
    rows' are used, so the shares of all ranks together get exactly what one process
    augmenting the whole batch would, and ``g`` advances the same on every rank.
    """
    n, _, h, w = x.shape
    dev = x.device
    n_all = n if rows is None else int(total)  # type: ignore[arg-type]

    def draw(*shape: int) -> torch.Tensor:
        r = torch.rand(n_all, *shape, device=dev, generator=g)
        return r if rows is None else r[rows.to(dev)]

    def u(lo: float, hi: float) -> torch.Tensor:
        return draw() * (hi - lo) + lo

    s = torch.ones(n, device=dev) if strength is None else strength.to(dev, torch.float32)
    ang = u(-1, 1) * math.radians(cfg.rotate) * s
    lo, hi = cfg.scale
    zoom = 1 + (u(lo, hi) - 1) * s
    flip = torch.where(draw() < cfg.hflip, -1.0, 1.0)
    tx, ty = u(-1, 1) * cfg.translate * 2 * s, u(-1, 1) * cfg.translate * 2 * s
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if cfg.brightness or cfg.contrast:
        mean = x.mean((1, 2, 3), keepdim=True)
        c = 1 + u(-cfg.contrast, cfg.contrast).view(n, 1, 1, 1)
        b = u(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1)
        x = ((x - mean) * c + mean + b).clamp_(0, 1)
    if cfg.erase > 0:
        p = (cfg.erase * s).clamp(max=1.0)
        area = u(*cfg.erase_area) * h * w
        ratio = torch.exp(u(math.log(0.3), math.log(3.3)))
        eh = (area * ratio).sqrt().clamp(max=h - 1)
        ew = (area / ratio).sqrt().clamp(max=w - 1)
        y0 = u(0, 1) * (h - eh)
        x0 = u(0, 1) * (w - ew)
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        box = (
            (ys >= y0.view(n, 1, 1))
            & (ys < (y0 + eh).view(n, 1, 1))
            & (xs >= x0.view(n, 1, 1))
            & (xs < (x0 + ew).view(n, 1, 1))
        )
        on = (draw() < p).view(n, 1, 1)
        noise = draw(1, h, w)
        x = torch.where((box & on)[:, None], noise, x)
    return x


def mix(x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix on a batch with one-hot/soft targets ``y`` (``N x K``); every random
    draw, the mixing weight included, comes from ``g``. Under data-parallel training each rank
    mixes within its own share of the batch (the partners come from the same rank)."""
    if cfg.mixup <= 0 or torch.rand(1, generator=g, device=g.device).item() >= cfg.mixup:
        return x, y
    # torch.distributions samples from the global RNG and takes no generator: draw the Beta
    # weight from a numpy generator seeded by ``g`` so that ``g`` alone decides the batch.
    seed = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device))
    lam = float(np.random.default_rng(seed).beta(cfg.mixup_alpha, cfg.mixup_alpha))
    perm = torch.randperm(x.shape[0], device=x.device, generator=g)
    if torch.rand(1, generator=g, device=g.device).item() < 0.5:
        x = lam * x + (1 - lam) * x[perm]
    else:
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = (
            int(torch.randint(h, (1,), generator=g, device=g.device)),
            int(torch.randint(w, (1,), generator=g, device=g.device)),
        )
        y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, lam * y + (1 - lam) * y[perm]
