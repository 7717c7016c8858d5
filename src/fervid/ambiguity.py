"""Ambiguous faces: per-face ambiguity scores and FER+ (crowd vote) evaluation metrics.

Per face (probabilities after the model's calibration temperature):

- :func:`normalized_entropy` -- entropy of the distribution divided by ``log K``:
  0 = one certain emotion, 1 = all emotions equally likely.
- :func:`top2_margin` -- probability of the best class minus the second best:
  near 0 = the model hesitates between two readings.
- :func:`labels_above` -- every label with probability >= ``threshold`` (default 0.3,
  the FER+ multi-label vote threshold), most probable first.
- :func:`is_ambiguous` -- ``normalized_entropy >= AMBIGUITY_THRESHOLD``.

Why :data:`AMBIGUITY_THRESHOLD` = 0.67. It is *matched* to the annotators on the
selection split: on FER+ PublicTest (the FER2013 PublicTest rows with a FER+ majority
label, 3,225 faces) 16.4% of the faces are *split* -- the ten annotators gave two or more
emotions at least 30% of the votes each (:func:`annotator_split`) -- and the bundled
``default`` model, with its stored (PublicTest-fitted) temperature, flags the same share
at a normalised entropy of 0.67 (:func:`matched_threshold`). On PrivateTest (3,172 faces,
17.5% split) it then flags 15.5%, of which 24% are split faces (1.4x the base rate):
the model's entropy ranks the split faces first only weakly (AUROC 0.62; top-2 margin
0.64). Read ``ambiguous`` as "the model hesitates", not as "people would disagree"
(``benchmarks/ferplus.md``). :func:`matched_threshold` recomputes the value for any
model. The threshold is only meaningful for calibrated probabilities: an over-confident
(T = 1) model has lower entropies everywhere.

FER+ metrics (:func:`ferplus_metrics`) score a model against the ten crowd votes per
image of ``fer2013new.csv``: majority-vote accuracy (FER+ test protocol: images whose
votes give no majority, or end on ``unknown`` / not-a-face, are left out), mean KL
divergence from the vote distribution to the model's probabilities, and accuracy
against "any emotion with at least 30% of the votes". The model's columns are matched
to the votes by label name, so 7-class (FER2013) and 8-class (FER+, with
``contempt``) models both work; for a 7-class model the ``contempt`` votes are
dropped before any rule is applied (as :func:`fervid.train.train` does for
``ferplus_classes=7``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

AMBIGUITY_THRESHOLD = 0.67
"""Normalised-entropy level from which a face is reported as ambiguous (see module docs)."""

LABEL_THRESHOLD = 0.3
"""Default probability threshold of :func:`labels_above` (the FER+ 30%-of-votes rule)."""

SPLIT_VOTE_SHARE = 0.3
"""A face is *split* when at least two emotions each hold this share of its votes."""

_EPS = 1e-12


# --------------------------------------------------------------------------- per face

def _probs(p: Any) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim == 0:
        raise ValueError("probabilities must have at least one dimension (the classes)")
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
        raise ValueError(f"probs must be 1-D with one value per label ({len(labels)}), got shape {p.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    order = np.argsort(-p, kind="stable")
    return tuple(str(labels[i]) for i in order if p[i] >= threshold)


def is_ambiguous(probs: Any, threshold: float = AMBIGUITY_THRESHOLD) -> bool | np.ndarray:
    """``normalized_entropy(probs) >= threshold`` (a bool for one face, an array for ``N x K``)."""
    e = normalized_entropy(probs)
    return bool(e >= threshold) if isinstance(e, float) else e >= threshold


def ambiguity_summary(probs: Any, labels: Sequence[str], *, label_threshold: float = LABEL_THRESHOLD,
                      entropy_threshold: float = AMBIGUITY_THRESHOLD) -> dict[str, Any]:
    """Every ambiguity output for one face as a JSON-ready dict."""
    p = _probs(probs)
    e = float(normalized_entropy(p))
    return {"ambiguity": e, "top2_margin": float(top2_margin(p)), "ambiguous": e >= entropy_threshold,
            "labels_above": list(labels_above(p, labels, label_threshold))}


# --------------------------------------------------------------------------- FER+ votes

def _vote_columns(labels: Sequence[str]) -> list[int]:
    """For each model label, its column in the FER+ vote matrix (FERPLUS8 order)."""
    from .emotions import FERPLUS8, try_canonical

    cols = []
    for lab in labels:
        c = try_canonical(str(lab)) or str(lab)
        if c not in FERPLUS8:
            raise ValueError(f"model label {lab!r} is not a FER+ emotion {list(FERPLUS8)}; cannot score against the votes")
        cols.append(FERPLUS8.index(c))
    if len(set(cols)) != len(cols):
        raise ValueError(f"model labels {list(labels)} name the same emotion twice")
    return cols


def model_votes(votes: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """FER+ votes ``N x 10`` (FERPLUS8 order + unknown + NF) reordered to the model's
    labels: ``N x (K + 2)``, emotions the model lacks (``contempt`` for FER2013) dropped."""
    v = np.asarray(votes)
    if v.ndim != 2 or v.shape[1] != 10:
        raise ValueError(f"votes must be N x 10 (8 FER+ emotions, unknown, NF), got shape {v.shape}")
    return np.concatenate([v[:, _vote_columns(labels)], v[:, 8:]], axis=1)


def annotator_split(votes: np.ndarray, share: float = SPLIT_VOTE_SHARE) -> np.ndarray:
    """Faces whose annotators split: at least two emotions with ``share`` of all votes each.
    ``votes`` is ``N x (K + 2)`` (emotions, unknown, NF)."""
    v = np.asarray(votes, dtype=np.float64)
    total = v.sum(1, keepdims=True)
    return ((v[:, :-2] >= share * np.maximum(total, _EPS)) & (v[:, :-2] > 0)).sum(1) >= 2


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    q = np.clip(q, _EPS, 1.0)
    q = q / q.sum(1, keepdims=True)
    safe = np.where(p > 0, p, 1.0)
    return (p * (np.log(safe) - np.log(q))).sum(1)


def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    if positive.all() or not positive.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, score))


def ferplus_metrics(probs: np.ndarray, votes: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """FER+ metrics of model probabilities ``N x K`` (columns = ``labels``) against aligned
    FER+ votes ``N x 10`` (:func:`fervid.ferplus.align`).

    Scored images: the FER+ test protocol keeps images with a majority emotion (after the
    FER+ noise rule; see :func:`fervid.ferplus.targets`); the others are counted in
    ``excluded``. Returned (numbers are over the scored images unless named otherwise):

    - ``majority_accuracy``: argmax == FER+ majority label (``majority_macro_f1`` too).
    - ``kl_divergence``: mean KL(vote distribution || model probabilities), in nats;
      the vote distribution is the raw share of the emotion votes.
    - ``plausible_accuracy``: the predicted emotion holds >= 30% of all the image's votes.
    - ``split_share``: share of images the annotators split (>= 2 emotions with >= 30%);
      ``ambiguous_share``: share the model flags (entropy >= :data:`AMBIGUITY_THRESHOLD`);
      ``ambiguity_auroc``: how well the model's entropy ranks split images first;
      ``matched_threshold``: the entropy that flags as many images as are split.
    """
    from sklearn.metrics import f1_score

    from .ferplus import distribution, targets

    p = np.asarray(probs, dtype=np.float64)
    labels = tuple(str(lab) for lab in labels)
    if p.ndim != 2 or p.shape[1] != len(labels):
        raise ValueError(f"probs must be N x {len(labels)} (one column per label), got shape {p.shape}")
    v = model_votes(votes, labels)
    if len(v) != len(p):
        raise ValueError(f"{len(p)} probability rows but {len(v)} vote rows")
    k = len(labels)
    maj, keep = targets(v, "majority")
    n = int(keep.sum())
    from .emotions import FERPLUS8

    missing = [i for i in range(8) if i not in _vote_columns(labels)]
    dropped = int(np.asarray(votes)[:, missing].sum()) if missing else 0
    out: dict[str, Any] = {"images": n, "excluded": int(len(p) - n), "classes": k,
                           "dropped_vote_columns": [FERPLUS8[i] for i in missing], "dropped_votes": dropped}
    if n == 0:
        raise ValueError("no image with a FER+ majority label among the scored rows")
    p, v, maj = p[keep], v[keep], maj[keep]
    pred = p.argmax(1)
    dist = distribution(v).astype(np.float64)
    total = v.sum(1).astype(np.float64)
    share_pred = v[np.arange(n), pred] / np.maximum(total, 1.0)
    split = annotator_split(v)
    ent = np.asarray(normalized_entropy(p))
    out.update({
        "majority_accuracy": float((pred == maj).mean()),
        "majority_macro_f1": float(f1_score(maj, pred, labels=sorted(set(maj.tolist())), average="macro", zero_division=0)),
        "kl_divergence": float(_kl(dist, p).mean()),
        "plausible_accuracy": float((share_pred >= SPLIT_VOTE_SHARE).mean()),
        "split_share": float(split.mean()),
        "ambiguous_share": float((ent >= AMBIGUITY_THRESHOLD).mean()),
        "ambiguity_auroc": _auroc(ent, split),
        "matched_threshold": float(np.quantile(ent, 1.0 - split.mean())) if 0 < split.mean() < 1 else float("nan"),
    })
    return out


def matched_threshold(probs: np.ndarray, votes: np.ndarray, labels: Sequence[str]) -> float:
    """The normalised-entropy threshold that flags as many FER+-scored faces as the
    annotators split (see the module docstring): the ``1 - split_share`` quantile."""
    return float(ferplus_metrics(probs, votes, labels)["matched_threshold"])


__all__ = ["AMBIGUITY_THRESHOLD", "LABEL_THRESHOLD", "SPLIT_VOTE_SHARE", "normalized_entropy", "top2_margin",
           "labels_above", "is_ambiguous", "ambiguity_summary", "model_votes", "annotator_split",
           "ferplus_metrics", "matched_threshold"]
