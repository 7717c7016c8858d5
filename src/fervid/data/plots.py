"""Figures for datasets (``fervid data show``).

Matplotlib is imported inside the functions and drawn with the Agg canvas directly, so
importing :mod:`fervid.data.plots` neither loads matplotlib nor changes its global backend.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fervid.data.ferplus import FERPlusVotes, align, load_ferplus, targets
from fervid.data.imagefile import verify_image
from fervid.emotions import FERPLUS8, FERPLUS_EXTRA
from fervid.errors import UserValueError
from fervid.safety import atomic_path

if TYPE_CHECKING:
    from fervid.data.datasets import FERData

#: One colour per emotion (FERPLUS8 order), then unknown and not-a-face.
EMOTION_COLORS: dict[str, str] = {
    "angry": "#d62728",
    "disgust": "#8c564b",
    "fear": "#9467bd",
    "happy": "#ffbf00",
    "sad": "#1f77b4",
    "surprise": "#ff7f0e",
    "neutral": "#7f7f7f",
    "contempt": "#2ca02c",
    "unknown": "#c7c7c7",
    "NF": "#000000",
}


def subplots(*args: Any, figsize: tuple[float, float] | None = None, **kwargs: Any) -> tuple[Any, Any]:
    """``pyplot.subplots`` without pyplot: a :class:`matplotlib.figure.Figure` that is drawn off
    screen and never registered with pyplot, so fervid neither changes the user's backend (inline
    plots in notebooks keep working) nor leaks figures. ``fig.savefig`` writes it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


MAX_PER_CLASS = 64
"""The most faces per class a sample grid shows (larger requests are capped, with a warning)."""


def _pick(labels: np.ndarray, label: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.flatnonzero(labels == label)
    if len(idx) > per_class:
        idx = np.sort(rng.choice(idx, per_class, replace=False))
    return idx


def sample_grid(
    data: FERData,
    out: str | os.PathLike,
    *,
    split: str | None = None,
    per_class: int = 8,
    ferplus: str | os.PathLike | FERPlusVotes | None = None,
    seed: int = 0,
    dpi: int = 110,
) -> Path:
    """Write a PNG grid of random sample faces: one row per class, ``per_class`` columns.

    Each row is labelled with the class name and its image count (in ``split``, or in
    all splits when ``split`` is ``None``). With ``ferplus`` (a ``fer2013new.csv`` path
    or loaded votes) each face gets a bar chart of its ten FER+ votes (eight emotions,
    unknown, not-a-face) and a caption with the FER+ majority label: green when it agrees
    with the row's FER2013 label, red when it does not, grey when FER+ excludes the image.
    Sampling is reproducible for a given ``seed``. Returns the output path.
    """
    if per_class < 1:
        raise UserValueError(f"per_class must be at least 1, got {per_class}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserValueError(f"seed must be an integer 0 or more, got {seed!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    title_split = split or "all splits"
    if split is not None:
        data = data.split(split)
    if len(data) == 0:
        raise UserValueError(f"no images in {data.source} ({title_split})")
    fp = None
    if ferplus is not None:
        fp = _GridVotes.of(data, ferplus)
    per_class = _capped(data, per_class)
    rows = _grid_rows(data, per_class, seed)

    has_fp = fp is not None
    cell_w, face_h, bar_h, cap_h = 1.05, 1.05, (0.38 if has_fp else 0.0), (0.22 if has_fp else 0.08)
    label_w = 1.35
    fig_w = label_w + per_class * cell_w
    legend_cols = 10 if fig_w >= 8.5 else 5
    top = 0.5 + (0.2 * (1 + 10 // legend_cols) + 0.1 if has_fp else 0.0)
    fig_h = top + len(rows) * (face_h + bar_h + cap_h) + 0.1
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    outer = fig.add_gridspec(
        len(rows),
        1,
        left=label_w / fig_w,
        right=0.99,
        top=1 - top / fig_h,
        bottom=0.1 / fig_h,
        hspace=cap_h / (face_h + bar_h),
    )
    for r, (name, n, idx) in enumerate(rows):
        if has_fp:
            inner = outer[r].subgridspec(2, per_class, height_ratios=[face_h, bar_h], hspace=0.04, wspace=0.08)
        else:
            inner = outer[r].subgridspec(1, per_class, wspace=0.08)
        for c in range(per_class):
            _grid_cell(fig, inner, c, data, name, n, idx, fp)
    title = f"{Path(data.source).name or 'data'} — {title_split}: {len(data):,} images, up to {per_class} random per class (seed {seed})"
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / fig_h, va="top")
    if has_fp:
        _votes_legend(fig, legend_cols, fig_h)
    out = Path(out)
    with atomic_path(out, verify=verify_image) as tmp:  # never a half-written PNG: read back first
        fig.savefig(tmp, format="png")
    return out


# The grid's parts: which faces each row shows, one cell (a face, and with FER+ its caption
# and vote bars), and the legend of the vote colours.

_VOTE_COLUMNS = FERPLUS8 + FERPLUS_EXTRA  # the ten FER+ vote columns, in the bars' order


@dataclass
class _GridVotes:
    """Each face's FER+ votes (data rows aligned) and its majority label where FER+ keeps it."""

    votes: np.ndarray
    majority: np.ndarray
    keep: np.ndarray

    @classmethod
    def of(cls, data: FERData, ferplus: str | os.PathLike | FERPlusVotes) -> _GridVotes:
        fp = ferplus if isinstance(ferplus, FERPlusVotes) else load_ferplus(ferplus)
        votes = align(data, fp)
        maj, keep = targets(votes, "majority", not_face=fp.not_face[data.index])
        return cls(votes, maj, keep)


def _capped(data: FERData, per_class: int) -> int:
    """``per_class`` capped, with a warning: one column per face, more columns than the
    largest class has faces draws nothing new, and past MAX_PER_CLASS the figure takes
    minutes and gigabytes while no one can read it."""
    largest = max(
        [int((data.labels == k).sum()) for k in range(len(data.label_names))] + [int((data.labels < 0).sum())]
    )
    cap = max(1, min(per_class, largest, MAX_PER_CLASS))
    if cap < per_class:
        warnings.warn(
            f"per_class {per_class} capped at {cap} (the largest class has {largest} faces; "
            f"the grid shows at most {MAX_PER_CLASS} per class)",
            stacklevel=3,  # the caller of sample_grid
        )
    return cap


def _grid_rows(data: FERData, per_class: int, seed: int) -> list[tuple[str, int, np.ndarray]]:
    """One row per class (and one for unlabelled faces, if any): its name, its image count and
    the rows of its faces drawn (reproducibly for ``seed``)."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, int, np.ndarray]] = []
    for k, name in enumerate(data.label_names):
        n = int((data.labels == k).sum())
        rows.append((name, n, _pick(data.labels, k, per_class, rng)))
    n_unlabelled = int((data.labels < 0).sum())
    if n_unlabelled:
        rows.append(("(no label)", n_unlabelled, _pick(data.labels, -1, per_class, rng)))
    return rows


def _grid_cell(
    fig: Any, inner: Any, c: int, data: FERData, name: str, n: int, idx: np.ndarray, fp: _GridVotes | None
) -> None:
    """Column ``c`` of a class row: the face (the row's label on the first), and with FER+
    votes its caption and vote bars."""
    ax = fig.add_subplot(inner[0, c])
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if c == 0:
        color = "#b8860b" if name == "happy" else EMOTION_COLORS.get(name, "black")
        ax.set_ylabel(
            f"{name}\n{n:,} images", rotation=0, ha="right", va="center", fontsize=10, labelpad=8, color=color
        )
    if c >= len(idx):
        if c == 0:
            ax.text(0.5, 0.5, "no images", ha="center", va="center", fontsize=8, color="grey", transform=ax.transAxes)
        return
    i = int(idx[c])
    ax.imshow(data.images[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if fp is None:
        return
    if fp.keep[i]:
        fp_name = FERPLUS8[int(fp.majority[i])]
        agree = data.labels[i] >= 0 and fp_name == data.label_names[int(data.labels[i])]
        ax.set_title(f"FER+: {fp_name}", fontsize=7, pad=2, color="#1a7f1a" if agree else "#c0392b")
    else:
        ax.set_title("FER+: excluded", fontsize=7, pad=2, color="grey")
    bx = fig.add_subplot(inner[1, c])
    bx.bar(np.arange(len(_VOTE_COLUMNS)), fp.votes[i], color=[EMOTION_COLORS[v] for v in _VOTE_COLUMNS], width=0.85)
    bx.set_ylim(0, max(10, int(fp.votes[i].sum())))
    bx.set_xlim(-0.6, len(_VOTE_COLUMNS) - 0.4)
    bx.set_xticks([])
    bx.set_yticks([])
    for side in ("top", "right", "left"):
        bx.spines[side].set_visible(False)
    bx.spines["bottom"].set_color("#999999")


def _votes_legend(fig: Any, legend_cols: int, fig_h: float) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=EMOTION_COLORS[c], label="not a face" if c == "NF" else c) for c in _VOTE_COLUMNS]
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=legend_cols,
        fontsize=7,
        frameon=False,
        bbox_to_anchor=(0.5, 1 - 0.32 / fig_h),
        handlelength=1.0,
        columnspacing=0.8,
        title="FER+ votes (10 annotators) under each face; caption: FER+ majority label",
        title_fontsize=7,
    )
