"""Ambiguous faces: per-face ambiguity scores of one prediction.

Per face (probabilities after the model's calibration temperature):

- :func:`normalized_entropy` -- entropy of the distribution divided by ``log K``:
  0 = one certain emotion, 1 = all emotions equally likely.
- :func:`top2_margin` -- probability of the best class minus the second best:
  near 0 = the model hesitates between two readings.
- :func:`labels_above` -- every label with probability >= ``threshold`` (default 0.3,
  the FER+ multi-label vote threshold), most probable first.
- :func:`is_ambiguous` -- ``normalized_entropy >= AMBIGUITY_THRESHOLD``.

Why :data:`AMBIGUITY_THRESHOLD` = 0.65. It is *matched* to the annotators on the
selection split: on FER+ PublicTest (the FER2013 PublicTest rows with a FER+ majority
label, 3,225 faces) 16.4% of the faces are *split* -- the ten annotators gave two or more
emotions at least 30% of the votes each (:func:`annotator_split`) -- and the bundled
``default`` model, with its stored (PublicTest-fitted) temperature, flags the same share
at a normalised entropy of 0.648 (:func:`matched_threshold`; 0.67 for the width-64
``default`` shipped before it). On PrivateTest (3,172 faces, 17.5% split) it then flags
16.5%, of which 24% are split faces (``flagged_split_share``; 1.4x the base rate): the
model's entropy ranks the split faces first only weakly (AUROC 0.63). Read ``ambiguous``
as "the model hesitates", not as "people would disagree"
(``benchmarks/ferplus.md``). :func:`matched_threshold` recomputes the value for any
model. The threshold is only meaningful for calibrated probabilities: an over-confident
(T = 1) model has lower entropies everywhere.

Agreement with the FER+ annotators is measured in :mod:`fervid.evaluation.ambiguity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fervid.errors import UserValueError

AMBIGUITY_THRESHOLD = 0.65
"""Normalised-entropy level from which a face is reported as ambiguous (see module docs)."""

LABEL_THRESHOLD = 0.3
"""Default probability threshold of :func:`labels_above` (the FER+ 30%-of-votes rule)."""

_EPS = 1e-12


# --------------------------------------------------------------------------- per face


def _probs(p: Any) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim == 0:
        raise UserValueError("probabilities must have at least one dimension (the classes)")
    return a


def normalized_entropy(probs: Any) -> float | np.ndarray:
    """Entropy of ``probs`` over its last axis divided by ``log K`` (0 .. 1).

    A 1-D input gives a float, an ``N x K`` input an array of ``N``. Values are clipped
    to [0, 1] first; ``K < 2`` gives 0.
    """
    p = np.clip(_probs(probs), 0.0, 1.0)
    k = p.shape[-1]
    if k < 2:
        out = np.zeros(p.shape[:-1])
    else:
        logp = np.log(np.where(p > 0, p, 1.0))
        out = np.clip(-(p * logp).sum(-1) / math.log(k), 0.0, 1.0)
    return float(out) if p.ndim == 1 else out


def top2_margin(probs: Any) -> float | np.ndarray:
    """Best minus second-best probability over the last axis (1 for ``K < 2``)."""
    p = _probs(probs)
    if p.shape[-1] < 2:
        out = np.ones(p.shape[:-1])
    else:
        part = -np.sort(-p, axis=-1)
        out = part[..., 0] - part[..., 1]
    return float(out) if p.ndim == 1 else out


def labels_above(probs: Any, labels: Sequence[str], threshold: float = LABEL_THRESHOLD) -> tuple[str, ...]:
    """Labels whose probability is at least ``threshold``, most probable first (ties keep
    the label order). ``probs`` is one face's 1-D distribution."""
    p = _probs(probs)
    if p.ndim != 1 or len(p) != len(labels):
        raise UserValueError(f"probs must be 1-D with one value per label ({len(labels)}), got shape {p.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise UserValueError(f"threshold must be in [0, 1], got {threshold}")
    order = np.argsort(-p, kind="stable")
    return tuple(str(labels[i]) for i in order if p[i] >= threshold)


def is_ambiguous(probs: Any, threshold: float = AMBIGUITY_THRESHOLD) -> bool | np.ndarray:
    """``normalized_entropy(probs) >= threshold`` (a bool for one face, an array for ``N x K``)."""
    e = normalized_entropy(probs)
    return bool(e >= threshold) if isinstance(e, float) else e >= threshold


def ambiguity_summary(
    probs: Any,
    labels: Sequence[str],
    *,
    label_threshold: float = LABEL_THRESHOLD,
    entropy_threshold: float = AMBIGUITY_THRESHOLD,
) -> dict[str, Any]:
    """Every ambiguity output for one face as a JSON-ready dict."""
    p = _probs(probs)
    e = float(normalized_entropy(p))
    return {
        "ambiguity": e,
        "top2_margin": float(top2_margin(p)),
        "ambiguous": e >= entropy_threshold,
        "labels_above": list(labels_above(p, labels, label_threshold)),
    }
