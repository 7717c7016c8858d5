"""``fervid calibrate``: fit a temperature on PublicTest and write a calibrated checkpoint copy."""

from __future__ import annotations

import argparse

from fervid.cli.argtypes import output_path
from fervid.inference.options import TTA_MODES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "calibrate",
        help="temperature scaling fitted on PublicTest; writes a checkpoint copy with it",
        description="Fits T minimising the NLL of softmax(logits/T) on --split (PublicTest) and writes "
        "MODEL's checkpoint with 'temperature' set to --out (.pt or .safetensors).",
    )
    p.add_argument("model", metavar="MODEL", help="checkpoint (.pt / .safetensors) or bundled model name")
    p.add_argument("--data", required=True, help="fer2013.csv(.gz), an image folder or a fervid pack")
    p.add_argument("--split", default="PublicTest", help="split to fit on (default: PublicTest)")
    p.add_argument(
        "--tta", choices=TTA_MODES, default="none", help="fit on these TTA logits (use the TTA you will predict with)"
    )
    p.add_argument(
        "--ferplus",
        help="fer2013new.csv: fit to the FER+ vote distribution (8-class FER+ models; --data must be the FER2013 CSV)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=output_path, required=True, help="output checkpoint (.pt, or .safetensors)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    import json

    from fervid.evaluation.calibration import calibrate

    info = calibrate(
        args.model,
        args.data,
        args.out,
        split=args.split,
        tta=args.tta,
        device=args.device,
        ferplus=args.ferplus,
        progress=args.progress,
    )
    print(json.dumps(info, indent=2))
    return 0
