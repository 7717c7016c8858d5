"""FER+ votes (``fer2013new.csv``, Barsoum et al. 2016) and the targets derived from them.

The vote file has one row per ``fer2013.csv`` row, in the same order. Votes are kept
in fervid's 8-class order (:data:`fervid.emotions.FERPLUS8`: FER2013 order plus
``contempt``) followed by ``unknown`` and ``NF`` (not a face).

Target rules follow the FER+ paper and its reference code (``src/ferplus.py`` in
microsoft/FERPlus): votes of 1 are treated as annotator noise and removed first; an
image is *excluded* when the rule ends on ``unknown`` or not-a-face, when no emotion
holds enough of the votes (majority: more than half; ties never do), or when the
surviving emotions do not cover more than half of the votes.

Every function that takes a vote matrix expects ``N x (K + 2)``: ``K`` emotion columns
followed by ``unknown`` and ``NF`` (``K`` = 8 for the file as read; 7 if the caller
dropped ``contempt``).
"""

from __future__ import annotations

import csv
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from fervid.data.datasets import BadRecord, FERData, FERDataError
from fervid.emotions import (
    FERPLUS,
    FERPLUS8,
    FERPLUS_EXTRA,
    FERPLUS_TO_FERPLUS8,
    SPLITS,
)
from fervid.errors import UserValueError

#: Training targets of the trainer (``TrainConfig.targets``): FER2013 labels, or one of the
#: four FER+ modes of Barsoum et al. 2016.
TARGETS = ("fer2013", "ferplus-majority", "ferplus-probability", "ferplus-crossentropy", "ferplus-multilabel")

TargetMode = Literal["majority", "probability", "crossentropy", "multilabel"]
TARGET_MODES: tuple[str, ...] = ("majority", "probability", "crossentropy", "multilabel")
N_EMO = len(FERPLUS8)  # 8 emotions; columns 8 and 9 are unknown and NF


@dataclass
class FERPlusVotes:
    """Vote matrix ``N x 10`` (FERPLUS8 order + unknown + NF), usage and not-a-face flags.

    ``not_face`` marks rows with an empty ``Image name`` (FER+ dropped them as not a
    face). In lenient mode a bad row keeps its place (so later rows stay aligned) with
    zero votes and an empty usage, and is listed in ``skipped``.
    """

    votes: np.ndarray
    splits: np.ndarray
    not_face: np.ndarray
    source: str = ""
    skipped: list[BadRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.votes)

    @property
    def columns(self) -> tuple[str, ...]:
        return FERPLUS8 + FERPLUS_EXTRA


def load_ferplus(path: str | os.PathLike, expected_rows: int | None = None, *, strict: bool = True) -> FERPlusVotes:
    """Read ``fer2013new.csv``. ``expected_rows`` (the fer2013.csv row count) is checked.

    Raises :class:`FERDataError` naming the file, line and field for a bad row; with
    ``strict=False`` a bad row is reported in ``skipped`` and gets zero votes (so the
    FER+ rules exclude it) instead. A row count that differs from ``expected_rows``
    always raises: the files would not align.
    """
    path = Path(path)
    if not path.is_file():
        raise FERDataError("no such file", path)
    names = FERPLUS + FERPLUS_EXTRA
    rows: list[list[int]] = []
    usage: list[str] = []
    not_face: list[bool] = []
    skipped: list[BadRecord] = []
    line = 1
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise FERDataError("file is empty (no header row)", path, 1)
            missing = [c for c in ("Usage", "Image name", *names) if c not in header]
            if missing:
                raise FERDataError(f"header lacks FER+ column(s) {missing}; found {header}", path, 1)
            i_use, i_img = header.index("Usage"), header.index("Image name")
            i_votes = [header.index(c) for c in names]
            for row in reader:
                line = reader.line_num
                if not row:
                    continue  # blank line: no data, not a row
                problem = _check_row(row, header, names, i_votes, i_use)
                if problem is not None:
                    fld, reason = problem
                    if strict:
                        raise FERDataError(reason, path, line, fld)
                    skipped.append(BadRecord(str(path), line, fld, reason))
                    rows.append([0] * len(names))
                    usage.append("")
                    not_face.append(False)
                    continue
                rows.append([int(row[i]) for i in i_votes])
                usage.append(row[i_use].strip())
                not_face.append(row[i_img].strip() == "")
    except (UnicodeDecodeError, csv.Error) as e:
        raise FERDataError(f"malformed FER+ CSV ({type(e).__name__}: {e})", path, line + 1) from e
    except (OSError, zlib.error, EOFError) as e:
        raise FERDataError(f"cannot read file ({type(e).__name__}: {e})", path) from e
    if expected_rows is not None and len(rows) != expected_rows:
        raise FERDataError(
            f"has {len(rows)} rows but the FER2013 file has {expected_rows}; FER+ must align row by row", path
        )
    if not rows:
        raise FERDataError("no rows after the header", path)
    raw = np.asarray(rows, dtype=np.int64)
    votes = np.zeros_like(raw)
    votes[:, FERPLUS_TO_FERPLUS8] = raw[:, :N_EMO]
    votes[:, N_EMO:] = raw[:, N_EMO:]
    return FERPlusVotes(
        votes=votes,
        splits=np.asarray(usage),
        not_face=np.asarray(not_face, dtype=bool),
        source=str(path),
        skipped=skipped,
    )


def _check_row(
    row: list[str], header: list[str], names: tuple[str, ...], i_votes: list[int], i_use: int
) -> tuple[str | None, str] | None:
    """``(field, reason)`` for the first problem in a FER+ row, or ``None``."""
    if len(row) != len(header):
        return None, f"expected {len(header)} fields, found {len(row)}"
    for name, i in zip(names, i_votes):
        s = row[i].strip()
        if not s.isdigit():
            what = (
                "negative vote count"
                if s.startswith("-") and s[1:].isdigit()
                else "vote count is not a non-negative integer"
            )
            return name, f"{what}: {row[i][:20]!r}"
    if row[i_use].strip() not in SPLITS:
        return "Usage", f"unknown Usage {row[i_use][:30]!r}; expected one of {list(SPLITS)}"
    return None


def align(data: FERData, votes: FERPlusVotes) -> np.ndarray:
    """Votes for each image of ``data`` (by its source row index), checking the splits agree.

    Only data read from ``fer2013.csv`` (or a pack of it) carries the row numbers that
    FER+ is aligned to; image folders do not, and are refused.
    """
    if data.files is not None:
        raise FERDataError(
            "FER+ votes align with fer2013.csv rows; image-folder data "
            f"({data.source}) carries no row numbers; load the CSV instead",
            votes.source,
        )
    if data.source_rows is not None and data.source_rows != len(votes):
        raise FERDataError(
            f"has {len(votes)} rows but {data.source or 'the FER2013 file'} has "
            f"{data.source_rows}; FER+ must align row by row",
            votes.source,
        )
    if len(data) and int(data.index.max()) >= len(votes):
        raise FERDataError(
            f"FER+ file has {len(votes)} rows but the data references row {int(data.index.max())}", votes.source
        )
    v = votes.votes[data.index]
    fp_splits = votes.splits[data.index]
    mismatch = np.flatnonzero((fp_splits != data.splits) & (fp_splits != ""))
    if len(mismatch):
        i = int(mismatch[0])
        raise FERDataError(
            f"{len(mismatch)} rows have a different Usage than the FER2013 data (first: data row {int(data.index[i])}: "
            f"{data.splits[i]} vs FER+ {fp_splits[i]}); files are not aligned",
            votes.source,
            int(data.index[i]) + 2,
            "Usage",
        )
    return v


def _check_votes(votes: np.ndarray) -> int:
    """Number of emotion columns ``K`` of an ``N x (K + 2)`` vote matrix."""
    if votes.ndim != 2 or votes.shape[1] < 3:
        raise UserValueError(f"votes must be N x (K+2) (emotions + unknown + NF), got shape {votes.shape}")
    return votes.shape[1] - 2


def _denoise(votes: np.ndarray) -> np.ndarray:
    v = votes.astype(np.float64).copy()
    v[v <= 1] = 0.0  # a single vote is annotator noise (FER+ reference rule)
    return v


def _probability_rows(v: np.ndarray, total: np.ndarray, n_emo: int) -> tuple[np.ndarray, np.ndarray]:
    """The FER+ reference loop: take emotions from the most voted down until 75% of the
    votes are covered, at most 3 of them; ties enter together; stop at unknown/NF."""
    out = np.zeros_like(v)
    ok = np.zeros(len(v), dtype=bool)
    for i in range(len(v)):
        row, acc, count, picked = v[i].copy(), 0.0, 0, out[i]
        valid = True
        while acc < 0.75 * total[i] and count < 3 and valid and row.max() > 0:
            m = row.max()
            for j in np.flatnonzero(row == m):
                picked[j] = m
                row[j] = 0
                acc += m
                count += 1
                if j >= n_emo:  # unknown / not-a-face reached
                    valid = False
                    if picked.sum() > m:  # emotions came first: drop the unknown/NF share
                        picked[j] = 0
                        count -= 1
                    break
        ok[i] = picked.sum() > 0.5 * total[i] and count <= 3
    return out, ok


def targets(
    votes: np.ndarray, mode: TargetMode = "majority", threshold: float = 0.3, *, not_face: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Derive training targets from an ``N x (K+2)`` vote matrix (``K`` emotions, unknown, NF).

    Returns ``(target, keep)``: ``target`` is ``N`` int labels (majority), an ``N x K``
    float distribution (probability/crossentropy) or ``N x K`` 0/1 floats (multilabel:
    emotions with at least ``threshold`` of the votes), and ``keep`` a boolean mask of
    images that the FER+ rules do not exclude. Rows flagged in ``not_face`` are excluded
    too. Targets of excluded rows are meaningless.
    """
    if mode not in TARGET_MODES:
        raise UserValueError(f"unknown FER+ target mode {mode!r}; choose from {TARGET_MODES}")
    if not 0.0 < threshold <= 1.0:
        raise UserValueError(f"multilabel threshold must be in (0, 1], got {threshold}")
    n_emo = _check_votes(votes)
    v = _denoise(votes)
    total = v.sum(1)
    if mode == "majority":
        out = np.zeros_like(v)
        top = v.argmax(1)
        ok = v.max(1) > 0.5 * total  # strictly more than half: ties are never a majority
        out[np.arange(len(v)), top] = 1.0
    elif mode in ("probability", "crossentropy"):
        out, ok = _probability_rows(v, total, n_emo)
    else:  # multilabel
        out = np.where(v >= threshold * total[:, None], v, 0.0)
        ok = out.sum(1) > 0.5 * total
    # Images whose strongest surviving class is unknown/NF go.
    ok &= (total > 0) & (out.argmax(1) < n_emo)
    emo = out[:, :n_emo]
    s = emo.sum(1, keepdims=True)
    ok &= s[:, 0] > 0
    if not_face is not None:
        ok &= ~np.asarray(not_face, dtype=bool)
    if mode == "majority":
        return emo.argmax(1).astype(np.int64), ok
    if mode == "multilabel":
        return (emo > 0).astype(np.float32), ok
    return (emo / np.maximum(s, 1e-12)).astype(np.float32), ok


def distribution(votes: np.ndarray) -> np.ndarray:
    """Raw vote share over the ``K`` emotions of an ``N x (K+2)`` matrix (no noise
    removal, unknown/NF left out): the annotators' distribution, a soft label. Rows
    without emotion votes are all zero."""
    n_emo = _check_votes(votes)
    emo = votes[:, :n_emo].astype(np.float64)
    s = emo.sum(1, keepdims=True)
    return (emo / np.maximum(s, 1)).astype(np.float32)


def agreement_stats(votes: np.ndarray, not_face: np.ndarray | None = None) -> dict[str, float]:
    """How much the annotators agree: top-vote share, unanimity, majority rate, entropy.

    Rows without votes or flagged ``not_face`` are counted as ``not_face`` and left out
    of the other figures (which are ``nan`` when no row is left).
    """
    n_emo = _check_votes(votes)
    emo = votes[:, :n_emo].astype(np.float64)
    total = votes.sum(1).astype(np.float64)
    valid = total > 0
    if not_face is not None:
        valid &= ~np.asarray(not_face, dtype=bool)
    emo, total = emo[valid], total[valid]
    n = int(valid.sum())
    out: dict[str, float] = {"images": n, "not_face": int((~valid).sum())}
    if n == 0:
        return out | {
            k: float("nan")
            for k in (
                "mean_top_vote_share",
                "unanimous_share",
                "majority_share",
                "multi_label_share",
                "mean_normalised_entropy",
            )
        }
    top_share = emo.max(1) / total
    p = emo / np.maximum(emo.sum(1, keepdims=True), 1)
    ent = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(1) / np.log(n_emo)
    _, keep = targets(votes[valid], "majority")
    n_labels_30 = (emo >= 0.3 * total[:, None]).sum(1)
    return out | {
        "mean_top_vote_share": float(top_share.mean()),
        "unanimous_share": float((top_share >= 0.999).mean()),
        "majority_share": float(keep.mean()),
        "multi_label_share": float((n_labels_30 >= 2).mean()),
        "mean_normalised_entropy": float(ent.mean()),
    }
