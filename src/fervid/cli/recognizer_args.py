"""The recognizer's arguments, one set shared by ``fervid predict``, ``video``, ``batch`` and
``serve``: the same names and help everywhere, each named after its
:class:`~fervid.inference.config.RecognizerConfig` field (``--photo-max-side`` is
``photo_max_side``), defaults read from the config (an argument left out is the config's
default, never a second copy of it).

Not a verb: ``fervid.cli.VERBS`` lists the verb modules.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from fervid.cli.argtypes import closed_unit_interval, positive_int, unit_interval
from fervid.errors import UserValueError
from fervid.inference.config import DEFAULTS, RecognizerConfig
from fervid.inference.options import BACKENDS

GROUP_TITLE = "recognizer (the same on predict, video, batch and serve; fields of fervid.RecognizerConfig)"


def add_recognizer_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add the recognizer's arguments to ``p``, in their own help section. Every default is
    ``None`` (= the config's), so :func:`config_from_args` passes only what was given."""
    g = p.add_argument_group(GROUP_TITLE)
    g.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help=f"bundled model name (default, fast, ...), checkpoint or .onnx file, or an ensemble A+B "
        f"(default+fast: the mean of their probabilities) (default: {DEFAULTS.model})",
    )
    g.add_argument(
        "--detector",
        default=None,
        metavar="NAME",
        help=f"face detector (default: {DEFAULTS.detector}): yunet (landmarks, aligned crops), haar, haar-profile, "
        "dlib, skip (the images already are face crops)",
    )
    g.add_argument(
        "--photo-max-side",
        dest="photo_max_side",
        type=positive_int,
        default=None,
        metavar="PX",
        help="shrink photos to this longer side for detection (default: the detector's, yunet 640, haar/dlib "
        "1024); larger finds smaller faces in big photos, slower",
    )
    g.add_argument(
        "--video-max-side",
        dest="video_max_side",
        type=positive_int,
        default=None,
        metavar="PX",
        help="the same for video frames (default: the detector's video size, yunet 320; others as photos)",
    )
    g.add_argument(
        "--detector-size",
        dest="detector_size",
        type=positive_int,
        default=None,
        metavar="PX",
        help="both --photo-max-side and --video-max-side at once (the earlier spelling; either one given wins)",
    )
    g.add_argument(
        "--score-threshold",
        dest="score_threshold",
        type=closed_unit_interval,
        default=None,
        metavar="P",
        help="the detector keeps faces scoring at least this (default: the detector's, yunet 0.7 photos, 0.6 video)",
    )
    g.add_argument(
        "--detector-option",
        dest="detector_options",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="any other detector option, VALUE read as JSON or else as text (e.g. min_neighbors=8 for haar, "
        "coarse_side=null for yunet in one pass); repeat for several",
    )
    g.add_argument(
        "--backend",
        default=None,
        choices=BACKENDS,
        help=f"inference backend (default: {DEFAULTS.backend}, onnxruntime on the CPU when installed, else torch)",
    )
    g.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help=f"auto, cpu, cuda, cuda:N or mps (default: {DEFAULTS.device}: CUDA, then MPS, then the CPU)",
    )
    g.add_argument(
        "--threshold",
        type=unit_interval,
        default=None,
        metavar="P",
        help=f"probability at or above which a label is in a face's labels_above (default: {DEFAULTS.threshold})",
    )
    return g


def parse_detector_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["min_neighbors=8", "coarse_side=null"]`` -> ``{"min_neighbors": 8, "coarse_side": None}``;
    a value that is not JSON is kept as text (``backend=opencv``)."""
    out: dict[str, Any] = {}
    for kv in pairs:
        key, sep, text = kv.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserValueError(f"--detector-option expects KEY=VALUE, got {kv!r}")
        if key in out:
            raise UserValueError(f"--detector-option: {key!r} is given twice")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def config_from_args(args: argparse.Namespace) -> RecognizerConfig:
    """The :class:`RecognizerConfig` of parsed arguments: every config field the parser has
    (by its name; e.g. ``serve``'s ``--max-pixels`` too) and that was given; the rest keep the
    config's defaults. Checked once, here (a wrong value is a one-line error naming the field)."""
    kw: dict[str, Any] = {}
    for f in fields(RecognizerConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            kw[f.name] = value
    if "detector_options" in kw:
        kw["detector_options"] = parse_detector_options(kw["detector_options"])
    size = getattr(args, "detector_size", None)
    if size is not None:
        kw.setdefault("photo_max_side", size)
        kw.setdefault("video_max_side", size)
    return RecognizerConfig(**kw)
