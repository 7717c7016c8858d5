"""Argument types for the verbs' parsers: a value outside its range is refused by argparse
(usage line, ``error: argument --epochs: must be at least 1, got 0``, exit status 2) before
anything runs, instead of meaning something else (``--max-train-samples 0`` = no limit) or
failing later (``--batch-size 0``: a division by zero mid-run).

Not a verb: ``fervid.cli.VERBS`` lists the verb modules.
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, counts, epochs)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


#: The largest seed: what numpy's legacy seeding and the training config accept (``seed`` in
#: :mod:`fervid.training.config`), so one seed means the same thing on every verb.
MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
    """A random seed, an integer in 0..2**32-1 (``data show --seed -1`` was numpy's ValueError
    traceback; ``finetune`` and ``study`` took any integer)."""
    value = int(_number(text, int))
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_SEED}, got {value}")
    return value


def output_path(text: str) -> str:
    """An output path (``--out``, ``--csv``): refused when empty or blank. ``--out "$DIR"`` with
    ``DIR`` unset was read as "no output" (``predict``, ``evaluate``, ``video --csv``: the
    annotated copies, the report or the timeline silently not written) or as ``.``."""
    if not text.strip():
        raise argparse.ArgumentTypeError('an empty path ("") is not a file name')
    return text


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, seconds)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value:g}")
    return value


def unit_interval(text: str) -> float:
    """A number in (0, 1] (probability thresholds, smoothing weights, agreement rates)."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value:g}")
    return value


def closed_unit_interval(text: str) -> float:
    """A number in [0, 1] (shares)."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value


def open_unit_interval(text: str) -> float:
    """A number in (0, 1) (held-out fractions)."""
    value = _number(text, float)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {value:g}")
    return value


def count_or_all(text: str) -> int | None:
    """An integer >= 1, or ``all`` (``None``: no limit). ``0`` is refused, not read as "all"."""
    if text.strip().lower() == "all":
        return None
    return positive_int(text)


def port(text: str) -> int:
    """A TCP port, 0..65535 (0: any free port)."""
    value = int(_number(text, int))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {value}")
    return value
