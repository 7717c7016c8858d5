"""Batched inference with test-time augmentation (TTA), using each model's own preprocessing.

``tta_logits`` is the one function that turns uint8 faces into logits for evaluation,
calibration and ensembling. TTA modes:

- ``"none"``: the image as preprocessed (:func:`fervid.data.preprocess.to_tensor`).
- ``"flip"``: the mean of the logits for the image and its horizontal mirror.
- ``"crops"``: ten-crop: the four corner crops and the centre crop, each of side
  ``round(crop_pct * input_size)`` (``crop_pct`` from the model's
  :class:`~fervid.data.preprocess.PreprocessConfig`), resized back to ``input_size``, plus
  the mirror of each; the mean of the ten views' logits.

Averaging logits gives the same class distribution as averaging log-probabilities
(a geometric mean of the views' probabilities), so a temperature fitted on TTA logits
stays meaningful.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from fervid.errors import UserValueError
from fervid.inference.options import TTA_MODES
from fervid.models import model_preprocess as _model_preprocess

if TYPE_CHECKING:
    from fervid.data.preprocess import PreprocessConfig


def ten_crop_views(x: torch.Tensor, crop_pct: float) -> list[torch.Tensor]:
    """Ten views of a preprocessed batch ``N x C x S x S``: corners + centre at ``crop_pct``
    of the side, each resized back to ``S`` (bilinear, antialiased), then their mirrors."""
    if not 0.0 < crop_pct <= 1.0:
        raise UserValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    s = x.shape[-1]
    c = max(1, int(round(crop_pct * s)))
    o = s - c
    mid = o // 2
    boxes = [(0, 0), (0, o), (o, 0), (o, o), (mid, mid)]  # (top, left)
    views = []
    for top, left in boxes:
        v = x[..., top : top + c, left : left + c]
        if c != s:
            v = F.interpolate(v, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        views.append(v)
    return views + [torch.flip(v, dims=[3]) for v in views]


def tta_views(x: torch.Tensor, tta: str, crop_pct: float = 0.9) -> list[torch.Tensor]:
    """The views of a preprocessed batch for one TTA mode (see the module docstring)."""
    if tta == "none":
        return [x]
    if tta == "flip":
        return [x, torch.flip(x, dims=[3])]
    if tta == "crops":
        return ten_crop_views(x, crop_pct)
    raise UserValueError(f"unknown TTA mode {tta!r}; choose from {TTA_MODES}")


def model_preprocess(model: torch.nn.Module, batch_size: int = 1) -> PreprocessConfig:
    """The model's own preprocessing config (checked, with the caller's ``batch_size``)."""
    if batch_size < 1:
        raise UserValueError("batch_size must be >= 1")
    return _model_preprocess(model)


@torch.no_grad()
def tta_logits(
    model: torch.nn.Module,
    images_uint8: np.ndarray | torch.Tensor,
    tta: str = "none",
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    amp: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Logits (float32, on CPU, ``N x K``) for uint8 grey faces ``N x H x W``.

    Uses ``model.preprocess`` (input size, normalisation, ``crop_pct``), averages the
    logits of the TTA views (``"none"``, ``"flip"`` or ``"crops"``), and puts the model in
    eval mode on ``device`` (moving it there if needed). ``amp`` enables bf16 autocast
    where supported (off by default so that numbers are reproducible across machines).
    ``progress``: a bar over the faces (:func:`fervid.runtime.progress_bar`; a terminal shows it
    only when scoring takes more than a second).
    """
    from fervid.data.preprocess import to_tensor
    from fervid.runtime import autocast, progress_bar

    if tta not in TTA_MODES:
        raise UserValueError(f"unknown TTA mode {tta!r}; choose from {TTA_MODES}")
    pre = model_preprocess(model, batch_size)
    device = torch.device(device)
    params = list(model.parameters())
    if params and params[0].device != device:
        model.to(device)
    model.eval()
    channels_last = bool(params) and params[0].ndim == 4 and params[0].is_contiguous(memory_format=torch.channels_last)
    n = len(images_uint8)
    if n == 0:
        return torch.zeros(0, len(pre.labels))
    out = []
    bar = progress_bar(total=n, desc=f"scoring (tta {tta})", unit="face", enabled=progress)
    for i in range(0, n, batch_size):
        x = to_tensor(images_uint8[i : i + batch_size], pre, device)
        acc = None
        views = tta_views(x, tta, pre.crop_pct)
        for v in views:
            if channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                y = model(v).float()
            acc = y if acc is None else acc + y
        assert acc is not None
        out.append((acc / len(views)).cpu())
        bar.update(len(out[-1]))
    bar.close()
    return torch.cat(out)


def align_columns(model_labels: Sequence[str], target_labels: Sequence[str]) -> list[int]:
    """For each target class, the column of the same emotion in the model's output.

    Raises ``ValueError`` if the model cannot score a target class. Model classes
    outside the target vocabulary (e.g. FER+ ``contempt`` on FER2013) are dropped; the
    softmax over the remaining logits renormalises the probabilities.
    """
    from fervid.emotions import try_canonical

    canon = [try_canonical(m) or m for m in model_labels]
    cols = []
    for t in target_labels:
        ct = try_canonical(t) or t
        if ct not in canon:
            raise UserValueError(f"the model's classes {list(model_labels)} lack {t!r}, which the data uses")
        cols.append(canon.index(ct))
    return cols
