"""Each model's own preprocessing config, and the one function that applies it.

Training, evaluation, inference and export all call :func:`to_tensor` with the
model's :class:`PreprocessConfig`, so the four paths cannot drift apart; ONNX Runtime
inference, which runs without torch, calls its numpy twin :func:`to_array` (the same
tensor: tests/test_torch_free.py compares the two).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from fervid.emotions import FER2013

if TYPE_CHECKING:
    import torch

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
    import torch
    import torch.nn.functional as F

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


def to_array(images: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """:func:`to_tensor` in numpy, for inference without torch: uint8 ``N x H x W`` grey faces
    -> float32 ``N x C x S x S``. Faces already at the input size (every recognizer crop) take
    the same float32 steps as torch; others are resized by Pillow's antialiased bilinear
    filter, the one torch's ``antialias=True`` reproduces."""
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    unit = x.astype(np.float32) / np.float32(255.0)
    if unit.shape[-1] != cfg.input_size or unit.shape[-2] != cfg.input_size:
        from PIL import Image

        size = (int(cfg.input_size), int(cfg.input_size))
        unit = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BILINEAR)) for f in unit])
        unit = unit.reshape(len(x), *size).astype(np.float32)
    out = (unit[:, None] - np.float32(cfg.mean)) / np.float32(cfg.std)
    if cfg.in_chans != 1:
        out = np.repeat(out, cfg.in_chans, axis=1)
    return np.ascontiguousarray(out, dtype=np.float32)
