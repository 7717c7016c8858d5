"""``fervid evaluate``: metrics, TTA, ensembles, calibration and an HTML report."""

from __future__ import annotations

import argparse
import sys

from fervid.cli.argtypes import output_path, positive_int
from fervid.inference.options import TTA_MODES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="score one model or an ensemble; write metrics.json, predictions and report.html",
        description="Scores MODEL(s) on --split (default PrivateTest, or the whole folder without split names). Ensemble weights (--ensemble weighted) and "
        "temperatures (--calibrate) are fitted on PublicTest, never on the reported split.",
    )
    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="checkpoint (.pt / .safetensors) or bundled model name; A+B is the same as A B (the members of an ensemble)",
    )
    p.add_argument("--data", required=True, help="fer2013.csv(.gz), an image folder or a fervid pack")
    p.add_argument(
        "--split",
        default=None,
        help="split to report, or 'all' (default: PrivateTest if the data has it, else all of it)",
    )
    p.add_argument("--tta", choices=TTA_MODES, default="none", help="test-time augmentation")
    p.add_argument(
        "--ensemble",
        choices=("mean", "weighted"),
        default="mean",
        help="mean of probabilities, or weights fitted on PublicTest (minimum NLL)",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="fit a temperature per model on PublicTest; report ECE before/after; write calibrated copies "
        "to OUT/calibrated/",
    )
    p.add_argument("--fit-data", dest="fit_data", help="data holding the fit split (default: --data)")
    p.add_argument("--fit-split", dest="fit_split", default="PublicTest")
    p.add_argument("--ferplus", help="fer2013new.csv: FER+ majority accuracy, KL to the votes, >=30%%-vote accuracy")
    p.add_argument(
        "--adabn", action="store_true", help="test-time BatchNorm statistics adaptation on the scored images"
    )
    p.add_argument("--max-images", dest="max_images", type=positive_int, help="stratified subset (quick checks)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=256)
    p.add_argument("--amp", action="store_true", help="bf16 autocast where supported")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip report.html")
    p.add_argument("--out", type=output_path, help="output folder (default: print only)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from fervid.evaluation.evaluate import (
        EvalConfig,
        evaluate,
        summary_table,
        write_calibrated,
    )
    from fervid.inference.backends import ensemble_members

    # "default+fast" (as --model takes it) is the ensemble of its members: the same as "default fast"
    models = [m for spec in args.models for m in (ensemble_members(spec) or [spec])]
    cfg = EvalConfig(
        models=models,
        data=args.data,
        split=args.split,
        tta=args.tta,
        ensemble=args.ensemble,
        out=args.out,
        device=args.device,
        batch_size=args.batch_size,
        amp=args.amp,
        calibrate=args.calibrate,
        fit_split=args.fit_split,
        fit_data=args.fit_data,
        ferplus=args.ferplus,
        adabn=args.adabn,
        max_images=args.max_images,
        report=args.report,
        progress=args.progress,
    )
    res = evaluate(cfg, log=(lambda s: print(s, file=sys.stderr)) if args.progress else (lambda s: None))
    print(summary_table(res.metrics))
    if args.out:
        if args.calibrate:
            for p in write_calibrated(cfg, res, f"{args.out}/calibrated"):
                print(f"calibrated checkpoint: {p}")
        print(f"wrote {', '.join(str(p) for p in res.paths.values())}")
    return 0
