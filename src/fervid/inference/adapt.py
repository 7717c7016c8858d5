"""Unsupervised domain adaptation at test time: AdaBN (Li et al. 2016, "Revisiting batch
normalization for practical domain adaptation").

A network's BatchNorm layers normalise with the mean and variance of the *training*
images. Photos from another camera, blurrier, darker or noisier than FER2013, shift those
statistics, and every later layer sees inputs it was never trained on. AdaBN re-estimates
the BatchNorm statistics on unlabelled images of the target domain (one forward pass, no
labels, no gradient) and leaves every learned weight as it is. It needs a batch of target
images (dozens at least; hundreds is better) that share the shift, and a model with
BatchNorm (every fervid architecture except the LayerNorm ConvNeXt, for which it is a
no-op). ``benchmarks/transfer.md`` measures it on degraded FER2013 test images.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn

from fervid.errors import UserValueError

MIN_IMAGES = 16
"""Fewer target images than this give statistics too noisy to replace the trained ones."""


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model``."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adabn(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 256,
    *,
    device: str | torch.device | None = None,
    inplace: bool = False,
    progress: bool = False,
) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated on ``images``
    (uint8 grey faces ``N x H x W``, unlabelled, preprocessed with ``model.preprocess``).

    The statistics are the average over all ``images`` (cumulative average over
    near-equal batches, ``momentum=None``): exact for the first BatchNorm layer; deeper
    layers see activations normalised per batch, as in training, so ``batch_size`` moves
    them very slightly (well under 1% at 32 vs 48). Dropout stays off. Returns the adapted model in eval mode (the
    original is untouched unless ``inplace``). Raises ``ValueError`` for fewer than
    :data:`MIN_IMAGES` images or a model without BatchNorm.
    """
    from tqdm.auto import tqdm

    from fervid.data.preprocess import to_tensor
    from fervid.inference.logits import model_preprocess

    n = len(images)
    if n < MIN_IMAGES:
        raise UserValueError(f"AdaBN needs at least {MIN_IMAGES} target images to estimate statistics, got {n}")
    pre = model_preprocess(model, batch_size)
    m = model if inplace else copy.deepcopy(model)
    bns = batchnorm_layers(m)
    if not bns:
        raise UserValueError(f"{type(model).__name__} has no BatchNorm layers; AdaBN does not apply")
    params = list(m.parameters())
    dev = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    m.to(dev).eval()
    saved = []
    for bn in bns:
        saved.append(bn.momentum)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over every batch
        bn.train()
    cl = bool(params) and params[0].ndim == 4 and params[0].is_contiguous(memory_format=torch.channels_last)
    # Near-equal chunks: the cumulative average weights every batch equally, so equal
    # sizes make it the average over images.
    n_chunks = -(-n // batch_size)
    bounds = np.linspace(0, n, n_chunks + 1).round().astype(int)
    for a, b in tqdm(list(zip(bounds[:-1], bounds[1:])), desc="adabn", disable=not progress, leave=False):
        x = to_tensor(images[a:b], pre, dev)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        m(x)
    for bn, mom in zip(bns, saved):
        bn.momentum = mom
    return m.eval()


__all__ = ["adabn", "batchnorm_layers", "MIN_IMAGES"]
