"""``fervid export``: a model as ONNX (fp32, or int8 with static QDQ quantization).

    fervid export MODEL --format onnx [--int8] [--calibration-data PATH] --out FILE [--no-progress]

MODEL: a bundled model name (default, fast) or a checkpoint. The ONNX model has a dynamic
batch axis and carries its labels, preprocessing and temperature in its metadata; run it
with ``EmotionRecognizer(model="FILE.onnx", backend="onnx")`` or any onnxruntime. A parity
check against PyTorch is printed (max abs difference of probabilities, top-1 agreement,
on 256 PublicTest faces). ``--int8`` calibrates on 500 Training images of
``--calibration-data`` (default: $FERVID_DATA or ../shared/data, fer2013/fer2013.csv.gz)
and quantizes every convolution but the first (per channel; about a quarter of the fp32
file) if that keeps PyTorch's top label on >= 99% of the PublicTest faces, as a 95% lower
confidence bound; else it tries 16-bit activations (as small, slower), then keeps the end
of the network in fp32 (a bigger file, which the printed report flags; ``--fp32-tail`` and
``--activations`` fix the choice instead).
"""

from __future__ import annotations

import argparse

from fervid.cli.argtypes import closed_unit_interval, output_path, positive_int, unit_interval
from fervid.errors import UserValueError
from fervid.export.onnx import (
    ACTIVATIONS,
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION,
    FP32_TAILS,
    INT8_MIN_AGREEMENT,
    export_onnx,
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX (fp32 or static int8)",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="bundled model name or checkpoint path")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format (onnx)")
    p.add_argument("--out", type=output_path, required=True, metavar="FILE", help="the .onnx file to write")
    p.add_argument("--int8", action="store_true", help="static int8 (QDQ) quantization calibrated on training images")
    p.add_argument(
        "--calibration-data",
        dest="calibration_data",
        metavar="PATH",
        help="FER2013 CSV, image folder or .npy of uint8 faces (calibration and parity check)",
    )
    p.add_argument(
        "--n-calibration",
        dest="n_calibration",
        type=positive_int,
        default=500,
        help="Training images to calibrate on (default 500)",
    )
    p.add_argument(
        "--calibration-method",
        dest="calibration_method",
        default=DEFAULT_CALIBRATION,
        choices=CALIBRATION_METHODS,
        help=f"activation range calibration (default {DEFAULT_CALIBRATION}; percentile: the 99.99th)",
    )
    p.add_argument(
        "--fp32-tail",
        dest="fp32_tail",
        type=closed_unit_interval,
        default=None,
        help="share of the convolutions, from the output end, kept in fp32 (default: the smallest of "
        f"{', '.join(f'{t:g}' for t in FP32_TAILS)} whose 95%% lower bound of top-1 agreement on PublicTest reaches --min-agreement)",
    )
    p.add_argument(
        "--min-agreement",
        dest="min_agreement",
        type=unit_interval,
        default=INT8_MIN_AGREEMENT,
        help=f"top-1 agreement with PyTorch the int8 model must keep on PublicTest (default {INT8_MIN_AGREEMENT})",
    )
    p.add_argument(
        "--activations",
        default=None,
        choices=ACTIVATIONS,
        help="int8 activation type (default: uint8 with --fp32-tail, else chosen with the tail: uint8, "
        "then 16-bit activations, then fp32 tails, the first that reaches --min-agreement)",
    )
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the parity check")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from fervid.inference.backends import onnx_available

    if not onnx_available():  # the train extra brings onnx, and torch, which the export runs
        raise ModuleNotFoundError("export needs onnx and onnxruntime", name="onnx")
    if not str(args.out).lower().endswith(".onnx"):
        raise UserValueError(f"--out {args.out}: the file name must end in .onnx")
    report = export_onnx(
        args.model,
        args.out,
        int8=args.int8,
        calibration_data=args.calibration_data,
        n_calibration=args.n_calibration,
        calibration_method=args.calibration_method,
        check=args.check,
        fp32_tail=args.fp32_tail,
        min_agreement=args.min_agreement,
        progress=args.progress,
        activations=args.activations,
    )
    print(report.summary())
    return 0
