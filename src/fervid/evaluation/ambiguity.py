"""Ambiguous faces against the crowd: FER+ vote metrics and the matched ambiguity threshold.

FER+ metrics (:func:`ferplus_metrics`) score a model against the ten crowd votes per
image of ``fer2013new.csv``: majority-vote accuracy (FER+ test protocol: images whose
votes give no majority, or end on ``unknown`` / not-a-face, are left out), mean KL
divergence from the vote distribution to the model's probabilities, and accuracy
against "any emotion with at least 30% of the votes". The model's columns are matched
to the votes by label name, so 7-class (FER2013) and 8-class (FER+, with
``contempt``) models both work; for a 7-class model the ``contempt`` votes are
dropped before any rule is applied (as :func:`fervid.training.loop.train` does for
``ferplus_classes=7``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fervid.data.ferplus import distribution, targets
from fervid.emotions import FERPLUS8, try_canonical
from fervid.errors import UserValueError
from fervid.inference.ambiguity import AMBIGUITY_THRESHOLD, normalized_entropy

SPLIT_VOTE_SHARE = 0.3

_EPS = 1e-12
"""A face is *split* when at least two emotions each hold this share of its votes."""


# --------------------------------------------------------------------------- FER+ votes


def _vote_columns(labels: Sequence[str]) -> list[int]:
    """For each model label, its column in the FER+ vote matrix (FERPLUS8 order)."""
    cols = []
    for lab in labels:
        c = try_canonical(str(lab)) or str(lab)
        if c not in FERPLUS8:
            raise UserValueError(
                f"model label {lab!r} is not a FER+ emotion {list(FERPLUS8)}; cannot score against the votes"
            )
        cols.append(FERPLUS8.index(c))
    if len(set(cols)) != len(cols):
        raise UserValueError(f"model labels {list(labels)} name the same emotion twice")
    return cols


def model_votes(votes: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """FER+ votes ``N x 10`` (FERPLUS8 order + unknown + NF) reordered to the model's
    labels: ``N x (K + 2)``, emotions the model lacks (``contempt`` for FER2013) dropped."""
    v = np.asarray(votes)
    if v.ndim != 2 or v.shape[1] != 10:
        raise UserValueError(f"votes must be N x 10 (8 FER+ emotions, unknown, NF), got shape {v.shape}")
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
    FER+ votes ``N x 10`` (:func:`fervid.data.ferplus.align`).

    Scored images: the FER+ test protocol keeps images with a majority emotion (after the
    FER+ noise rule; see :func:`fervid.data.ferplus.targets`); the others are counted in
    ``excluded``. Returned (numbers are over the scored images unless named otherwise):

    - ``majority_accuracy``: argmax == FER+ majority label (``majority_macro_f1`` too).
    - ``kl_divergence``: mean KL(vote distribution || model probabilities), in nats;
      the vote distribution is the raw share of the emotion votes.
    - ``plausible_accuracy``: the predicted emotion holds >= 30% of all the image's votes.
    - ``split_share``: share of images the annotators split (>= 2 emotions with >= 30%);
      ``ambiguous_share``: share the model flags (entropy >= :data:`AMBIGUITY_THRESHOLD`);
      ``flagged_split_share``: share of the flagged images that the annotators split (the
      flag's precision; NaN when none is flagged; compare with ``split_share``);
      ``ambiguity_auroc``: how well the model's entropy ranks split images first;
      ``matched_threshold``: the entropy that flags as many images as are split.
    """
    from sklearn.metrics import f1_score

    p = np.asarray(probs, dtype=np.float64)
    labels = tuple(str(lab) for lab in labels)
    if p.ndim != 2 or p.shape[1] != len(labels):
        raise UserValueError(f"probs must be N x {len(labels)} (one column per label), got shape {p.shape}")
    v = model_votes(votes, labels)
    if len(v) != len(p):
        raise UserValueError(f"{len(p)} probability rows but {len(v)} vote rows")
    k = len(labels)
    maj, keep = targets(v, "majority")
    n = int(keep.sum())
    missing = [i for i in range(8) if i not in _vote_columns(labels)]
    dropped = int(np.asarray(votes)[:, missing].sum()) if missing else 0
    out: dict[str, Any] = {
        "images": n,
        "excluded": int(len(p) - n),
        "classes": k,
        "dropped_vote_columns": [FERPLUS8[i] for i in missing],
        "dropped_votes": dropped,
    }
    if n == 0:
        raise UserValueError("no image with a FER+ majority label among the scored rows")
    p, v, maj = p[keep], v[keep], maj[keep]
    pred = p.argmax(1)
    dist = distribution(v).astype(np.float64)
    total = v.sum(1).astype(np.float64)
    share_pred = v[np.arange(n), pred] / np.maximum(total, 1.0)
    split = annotator_split(v)
    ent = np.asarray(normalized_entropy(p))
    flagged = ent >= AMBIGUITY_THRESHOLD
    out.update(
        {
            "majority_accuracy": float((pred == maj).mean()),
            "majority_macro_f1": float(
                f1_score(maj, pred, labels=sorted(set(maj.tolist())), average="macro", zero_division=0)
            ),
            "kl_divergence": float(_kl(dist, p).mean()),
            "plausible_accuracy": float((share_pred >= SPLIT_VOTE_SHARE).mean()),
            "split_share": float(split.mean()),
            "ambiguous_share": float(flagged.mean()),
            "flagged_split_share": float(split[flagged].mean()) if flagged.any() else float("nan"),
            "ambiguity_auroc": _auroc(ent, split),
            "matched_threshold": float(np.quantile(ent, 1.0 - split.mean())) if 0 < split.mean() < 1 else float("nan"),
        }
    )
    return out


def matched_threshold(probs: np.ndarray, votes: np.ndarray, labels: Sequence[str]) -> float:
    """The normalised-entropy threshold that flags as many FER+-scored faces as the
    annotators split (see the module docstring): the ``1 - split_share`` quantile."""
    return float(ferplus_metrics(probs, votes, labels)["matched_threshold"])


__all__ = ["SPLIT_VOTE_SHARE", "model_votes", "annotator_split", "ferplus_metrics", "matched_threshold"]
