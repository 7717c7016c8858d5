"""Class-imbalance strategies: loss weights, focal loss, samplers and dynamic weights.

FER2013's disgust class is 1.5% of training images and happy 25%; each strategy here is
one config value (``TrainConfig.imbalance``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fervid.errors import UserValueError

if TYPE_CHECKING:  # torch is imported where a loss is computed, so the CLI can list STRATEGIES cheaply
    import torch

STRATEGIES: tuple[str, ...] = ("none", "inverse", "effective", "focal", "oversample", "dynamic", "minority-aug")


def class_weights(counts: np.ndarray, kind: str, beta: float = 0.9999) -> np.ndarray:
    """Per-class loss weights normalised to mean 1 over classes.

    ``inverse``: 1/n_c. ``effective``: the class-balanced weight of Cui et al. 2019,
    (1-beta)/(1-beta^n_c), i.e. the inverse *effective* number of samples.
    """
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if kind == "effective" and not 0.0 <= beta < 1.0:
        # beta = 1 makes every weight 0/0 (NaN): the run would train on NaN
        raise UserValueError(f"cb_beta must be in [0, 1) for imbalance 'effective', got {beta}")
    if kind == "inverse":
        w = 1.0 / n
    elif kind == "effective":
        w = (1.0 - beta) / (1.0 - np.power(beta, n))
    else:
        raise UserValueError(f"no static weights for {kind!r}")
    return (w / w.mean()).astype(np.float32)


def sample_weights(labels: np.ndarray, counts: np.ndarray, power: float = 1.0) -> np.ndarray:
    """Per-sample drawing weights ``n_c^-power``: 1.0 balances classes fully, 0.5 halfway.
    Relative to the smallest class present (its samples weigh 1), in log space: a large power
    (``n^-1000`` is 0.0 in floating point) still gives a drawable distribution."""
    logn = np.log(np.maximum(np.asarray(counts, dtype=np.float64), 1.0))
    present = np.asarray(counts) > 0
    smallest = logn[present].min() if present.any() else 0.0
    w = np.exp(-power * (logn - smallest))
    return w[labels]


@dataclass
class ImbalancePlan:
    """How a strategy acts on training: loss ``weights`` (``K``), a per-sample drawing
    distribution ``draw`` (``N``, unnormalised; ``None`` = plain shuffling) and a per-sample
    augmentation ``strength`` (``N``, 1 = the recipe's ranges)."""

    weights: np.ndarray
    draw: np.ndarray | None
    strength: np.ndarray


def plan(
    strategy: str,
    labels: np.ndarray,
    n_classes: int,
    *,
    cb_beta: float = 0.9999,
    oversample_power: float = 1.0,
    minority_boost: float = 1.6,
) -> ImbalancePlan:
    """The static part of ``strategy`` for training labels ``labels`` (ints ``0..K-1``).

    ``focal`` acts in the loss and ``dynamic`` re-weights after each epoch
    (:func:`dynamic_weights`), so both start from uniform weights here.
    """
    if strategy not in STRATEGIES:
        raise UserValueError(f"imbalance must be one of {STRATEGIES}, got {strategy!r}")
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=n_classes)
    weights = np.ones(n_classes, dtype=np.float32)
    draw: np.ndarray | None = None
    strength = np.ones(len(labels), dtype=np.float32)
    if strategy in ("inverse", "effective"):
        weights = class_weights(counts, strategy, cb_beta)
    elif strategy == "oversample":
        draw = sample_weights(labels, counts, oversample_power)
    elif strategy == "minority-aug":
        # Halfway oversampling (n^-0.5) plus stronger geometry/erasing for the classes below
        # the median share, so that repeated minority images are not seen identically.
        draw = sample_weights(labels, counts, 0.5)
        share = counts / max(1, counts.sum())
        strength = np.where(share[labels] < np.median(share), minority_boost, 1.0).astype(np.float32)
    return ImbalancePlan(weights, draw, strength)


def dynamic_weights(
    recall: np.ndarray, previous: np.ndarray | None, momentum: float = 0.5, power: float = 1.0, floor: float = 0.05
) -> np.ndarray:
    """Re-estimate class weights from per-class validation recall: classes the model
    misses get more weight (w_c ~ (1 - recall_c + floor)^power), smoothed with momentum."""
    w = (1.0 - np.asarray(recall, dtype=np.float64) + floor) ** power
    w = w / w.mean()
    if previous is not None:
        w = momentum * np.asarray(previous, dtype=np.float64) + (1 - momentum) * w
        w = w / w.mean()
    return w.astype(np.float32)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) for int or soft targets: (1-p_t)^gamma scaled cross-entropy."""
    import torch.nn.functional as F

    logp = F.log_softmax(logits.float(), 1)
    k = logits.shape[1]
    if target.ndim == 1:
        target = F.one_hot(target, k).float()
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / k
    p = logp.exp()
    loss = -(target * (1 - p).pow(gamma) * logp)
    if weight is not None:
        loss = loss * weight.view(1, -1)
    return loss.sum(1).mean()


def soft_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy against a target distribution (``N x K``), optional class weights."""
    import torch.nn.functional as F

    k = logits.shape[1]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / k
    logp = F.log_softmax(logits.float(), 1)
    loss = -(target * logp)
    if weight is not None:
        loss = loss * weight.view(1, -1)
    return loss.sum(1).mean()
