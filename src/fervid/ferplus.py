"""FER+ votes (``fer2013new.csv``, Barsoum et al. 2016) and the targets derived from them.

The vote file has one row per ``fer2013.csv`` row, in the same order. Votes are kept
in fervid's 8-class order (:data:`fervid.emotions.FERPLUS8`: FER2013 order plus
``contempt``) followed by ``unknown`` and ``NF``.

Target rules follow the FER+ paper and its reference code: single votes are treated
as noise and removed first; an image is *excluded* when the rule ends on ``unknown``
or not-a-face, or when the surviving emotions do not cover enough of the votes.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .data import FERData, FERDataError
from .emotions import FERPLUS, FERPLUS8, FERPLUS_EXTRA, FERPLUS_TO_FERPLUS8, SPLITS

TargetMode = Literal["majority", "probability", "crossentropy", "multilabel"]
TARGET_MODES: tuple[str, ...] = ("majority", "probability", "crossentropy", "multilabel")
N_EMO = len(FERPLUS8)  # 8 emotions; columns 8 and 9 are unknown and NF


@dataclass
class FERPlusVotes:
    """Vote matrix ``N x 10`` (FERPLUS8 order + unknown + NF), usage and not-a-face flags."""

    votes: np.ndarray
    splits: np.ndarray
    not_face: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.votes)

    @property
    def columns(self) -> tuple[str, ...]:
        return FERPLUS8 + FERPLUS_EXTRA


def load_ferplus(path: str | os.PathLike, expected_rows: int | None = None) -> FERPlusVotes:
    """Read ``fer2013new.csv``. ``expected_rows`` (the fer2013.csv row count) is checked."""
    path = Path(path)
    if not path.is_file():
        raise FERDataError("no such file", path)
    names = FERPLUS + FERPLUS_EXTRA
    rows: list[list[int]] = []
    usage: list[str] = []
    not_face: list[bool] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in ("Usage", "Image name", *names) if c not in header]
        if missing:
            raise FERDataError(f"header lacks FER+ column(s) {missing}", path, 1)
        i_use, i_img = header.index("Usage"), header.index("Image name")
        i_votes = [header.index(c) for c in names]
        for n, row in enumerate(reader):
            line = n + 2
            if len(row) != len(header):
                raise FERDataError(f"expected {len(header)} fields, found {len(row)}", path, line)
            try:
                v = [int(float(row[i])) for i in i_votes]
            except ValueError:
                bad = next(names[k] for k, i in enumerate(i_votes) if not _is_number(row[i]))
                raise FERDataError(f"vote count is not a number: {row[header.index(bad)]!r}", path, line, bad) from None
            if min(v) < 0:
                raise FERDataError("negative vote count", path, line)
            if row[i_use] not in SPLITS:
                raise FERDataError(f"unknown Usage {row[i_use]!r}", path, line, "Usage")
            rows.append(v)
            usage.append(row[i_use])
            not_face.append(row[i_img].strip() == "")
    if expected_rows is not None and len(rows) != expected_rows:
        raise FERDataError(
            f"has {len(rows)} rows but the FER2013 file has {expected_rows}; FER+ must align row by row", path)
    raw = np.asarray(rows, dtype=np.int64)
    votes = np.zeros_like(raw)
    votes[:, FERPLUS_TO_FERPLUS8] = raw[:, :N_EMO]
    votes[:, N_EMO:] = raw[:, N_EMO:]
    return FERPlusVotes(votes=votes, splits=np.asarray(usage), not_face=np.asarray(not_face), source=str(path))


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def align(data: FERData, votes: FERPlusVotes) -> np.ndarray:
    """Votes for each image of ``data`` (by its source row index), checking the splits agree."""
    if data.index.max(initial=-1) >= len(votes):
        raise FERDataError(f"FER+ file has {len(votes)} rows but the data references row {data.index.max()}", votes.source)
    v = votes.votes[data.index]
    mismatch = np.flatnonzero(votes.splits[data.index] != data.splits)
    if len(mismatch):
        i = int(mismatch[0])
        raise FERDataError(
            f"{len(mismatch)} rows have a different Usage than the FER2013 data (first: data row {int(data.index[i])}: "
            f"{data.splits[i]} vs FER+ {votes.splits[data.index[i]]}); files are not aligned", votes.source)
    return v


def _denoise(votes: np.ndarray) -> np.ndarray:
    v = votes.astype(np.float64).copy()
    v[v <= 1] = 0.0  # a single vote is annotator noise (FER+ reference rule)
    return v


def targets(votes: np.ndarray, mode: TargetMode = "majority", threshold: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Derive training targets from an ``N x 10`` vote matrix.

    Returns ``(target, keep)``: ``target`` is ``N`` int labels (majority) or an ``N x 8``
    float matrix (probability/crossentropy: a distribution; multilabel: 0/1 per emotion),
    and ``keep`` a boolean mask of images that the FER+ rules do not exclude.
    """
    if mode not in TARGET_MODES:
        raise ValueError(f"unknown FER+ target mode {mode!r}; choose from {TARGET_MODES}")
    v = _denoise(votes)
    total = v.sum(1)
    out = np.zeros((len(v), v.shape[1]))
    if mode == "majority":
        top = v.argmax(1)
        ok = v.max(1) > 0.5 * total
        out[np.arange(len(v)), top] = 1.0
    elif mode in ("probability", "crossentropy"):
        # Take emotions from the most voted down until 75% of the votes are covered,
        # at most 3 of them; ties enter together; stop at unknown/NF.
        ok = np.zeros(len(v), dtype=bool)
        for i in range(len(v)):
            row, acc, count, picked = v[i].copy(), 0.0, 0, np.zeros(v.shape[1])
            valid = True
            while acc < 0.75 * total[i] and count < 3 and valid and row.max() > 0:
                m = row.max()
                for j in np.flatnonzero(row == m):
                    picked[j] = m
                    row[j] = 0
                    acc += m
                    count += 1
                    if j >= N_EMO:
                        valid = False
                        if picked.sum() > m:
                            picked[j] = 0
                            count -= 1
                        break
            ok[i] = picked.sum() > 0.5 * total[i] and count <= 3
            out[i] = picked
    else:  # multilabel
        out = np.where(v >= threshold * total[:, None], v, 0.0)
        ok = out.sum(1) > 0.5 * total
    # Images whose strongest surviving class is unknown/NF, or flagged not-a-face, go.
    ok &= (total > 0) & (out.argmax(1) < N_EMO)
    emo = out[:, :N_EMO]
    s = emo.sum(1, keepdims=True)
    ok &= s[:, 0] > 0
    if mode == "majority":
        return emo.argmax(1).astype(np.int64), ok
    if mode == "multilabel":
        return (emo > 0).astype(np.float32), ok
    return (emo / np.maximum(s, 1e-12)).astype(np.float32), ok


def distribution(votes: np.ndarray) -> np.ndarray:
    """Raw vote share over the 8 emotions (no noise removal): the annotators' distribution."""
    emo = votes[:, :N_EMO].astype(np.float64)
    s = emo.sum(1, keepdims=True)
    return (emo / np.maximum(s, 1)).astype(np.float32)


def agreement_stats(votes: np.ndarray, not_face: np.ndarray | None = None) -> dict[str, float]:
    """How much the 10 annotators agree: top-vote share, unanimity, majority rate, entropy."""
    emo = votes[:, :N_EMO].astype(np.float64)
    total = votes.sum(1).astype(np.float64)
    valid = total > 0
    if not_face is not None:
        valid &= ~not_face
    emo, total = emo[valid], total[valid]
    top_share = emo.max(1) / total
    p = emo / np.maximum(emo.sum(1, keepdims=True), 1)
    ent = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(1) / np.log(N_EMO)
    _, keep = targets(votes[valid], "majority")
    n_labels_30 = (emo >= 0.3 * total[:, None]).sum(1)
    return {
        "images": int(valid.sum()),
        "not_face": int((~valid).sum()),
        "mean_top_vote_share": float(top_share.mean()),
        "unanimous_share": float((top_share >= 0.999).mean()),
        "majority_share": float(keep.mean()),
        "multi_label_share": float((n_labels_30 >= 2).mean()),
        "mean_normalised_entropy": float(ent.mean()),
    }
