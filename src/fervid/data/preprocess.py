"""Each model's own preprocessing config, and the one function that applies it.

Training, evaluation, inference and export all call :func:`to_tensor` with the
model's :class:`PreprocessConfig`, so the four paths cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fervid.emotions import FER2013

# FER2013 Training-split pixel statistics (computed by `fervid data info`, rounded).
FER_MEAN = 0.5077
FER_STD = 0.2550


@dataclass(frozen=True)
class PreprocessConfig:
    """How a 48x48 grey face becomes the model's input tensor."""

    input_size: int = 48  # side of the square input, pixels
    in_chans: int = 1  # grey; a 3-channel model gets the grey image repeated
    mean: float = FER_MEAN  # normalisation on [0, 1] pixel values
    std: float = FER_STD
    crop_pct: float = 0.9  # crop size / input size for multi-crop TTA
    face_margin: float = 0.2  # extra border around a detected face box, per side, as box share
    labels: tuple[str, ...] = FER2013

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        d = dict(d)
        if "labels" in d:
            d["labels"] = tuple(d["labels"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def to_unit(
    images: np.ndarray | torch.Tensor, cfg: PreprocessConfig, device: torch.device | str | None = None
) -> torch.Tensor:
    """Step 1 of :func:`to_tensor`: uint8 ``N x H x W`` grey faces -> float ``N x 1 x S x S`` in
    [0, 1] at the model's input size (antialiased bilinear resize). Training augments here,
    between the two steps."""
    x = torch.as_tensor(images)
    if device is not None:
        x = x.to(device, non_blocking=True)
    if x.ndim == 2:
        x = x[None]
    x = x[:, None].float().div_(255.0)
    if x.shape[-1] != cfg.input_size or x.shape[-2] != cfg.input_size:
        x = F.interpolate(
            x, size=(cfg.input_size, cfg.input_size), mode="bilinear", align_corners=False, antialias=True
        )
    return x


def normalize(x: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Step 2 of :func:`to_tensor`: standardise [0, 1] pixels with the model's mean and std and
    repeat the grey channel for a multi-channel stem."""
    x = (x - cfg.mean) / cfg.std
    if cfg.in_chans != 1:
        x = x.expand(-1, cfg.in_chans, -1, -1)
    return x


def to_tensor(
    images: np.ndarray | torch.Tensor, cfg: PreprocessConfig, device: torch.device | str | None = None
) -> torch.Tensor:
    """uint8 ``N x H x W`` grey faces -> normalised float ``N x C x S x S`` for the model."""
    return normalize(to_unit(images, cfg, device), cfg).contiguous()
