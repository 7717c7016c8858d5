"""``fervid finetune``: transfer learning from any fervid checkpoint (see :mod:`fervid.training.finetune`)."""

from __future__ import annotations

import argparse
import json

from fervid.cli import add_set_option, parse_set
from fervid.cli.argtypes import nonnegative_int, open_unit_interval, output_path, positive_float, positive_int, seed
from fervid.errors import UserValueError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from fervid.data.ferplus import TARGETS

    p = sub.add_parser(
        "finetune",
        help="fine-tune a fervid model on new data or a new label set; writes a normal checkpoint",
        description="Starts from BASE (a bundled model name, a checkpoint file, or timm:<arch> with --timm-weights), "
        "gives it a classifier for the data's labels (rows of labels the base knows are copied), trains "
        "with a frozen or slower backbone, fits the temperature on the selection split and writes "
        "OUT/best.pt. Data without a PublicTest split has --val-fraction of its images held out for "
        "selection.",
    )
    p.add_argument("base", metavar="BASE", help="bundled model name (default, fast), checkpoint file, or timm:<arch>")
    p.add_argument(
        "--data", required=True, help="image folder (<class>/* or <split>/<class>/*), fer2013.csv(.gz) or a pack"
    )
    p.add_argument(
        "--labels", help="comma-separated label set (default: the data's classes); images of other classes are ignored"
    )
    p.add_argument(
        "--freeze",
        choices=("backbone", "none"),
        default="backbone",
        help="backbone: train only the head first (default); none: train everything from the start",
    )
    p.add_argument(
        "--freeze-epochs",
        dest="freeze_epochs",
        type=nonnegative_int,
        default=1,
        help="with --freeze backbone: unfreeze after this many epochs; 0 keeps it frozen (default 1)",
    )
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--lr", type=positive_float, default=0.01, help="head learning rate (default 0.01)")
    p.add_argument(
        "--backbone-lr-mult",
        dest="backbone_lr_mult",
        type=float,
        default=0.1,
        help="backbone learning rate = lr x this (default 0.1)",
    )
    p.add_argument(
        "--layer-lr-decay",
        dest="layer_lr_decay",
        type=positive_float,
        default=1.0,
        help="each earlier backbone stage learns this factor slower again (e.g. 0.8; default 1)",
    )
    p.add_argument(
        "--head",
        choices=("mapped", "fresh"),
        default="mapped",
        help="mapped: copy the base's classifier rows for known labels (default); fresh: new classifier",
    )
    p.add_argument(
        "--targets", choices=TARGETS, default="fer2013", help="FER+ targets on the FER2013 CSV (with --ferplus)"
    )
    p.add_argument("--ferplus", help="fer2013new.csv, for --targets ferplus-*")
    p.add_argument("--ferplus-classes", dest="ferplus_classes", type=int, choices=(7, 8), default=8)
    p.add_argument(
        "--max-train-samples",
        dest="max_train_samples",
        type=positive_int,
        help="stratified subset of the training images",
    )
    p.add_argument("--val-fraction", dest="val_fraction", type=open_unit_interval, default=0.1)
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=64)
    p.add_argument(
        "--timm-weights", dest="timm_weights", help="local weights file for a timm:<arch> base (never downloaded)"
    )
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false", help="keep temperature 1")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--out", type=output_path, default="runs/finetune", help="run directory (default runs/finetune)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in OUT from OUT/last.pt")
    again.add_argument("--overwrite", action="store_true", help="OUT holds an earlier run: replace it")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    add_set_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from fervid.training.finetune import finetune
    from fervid.training.warmstart import TIMM_PREFIX

    extra = parse_set(args.set)
    if args.timm_weights:
        if not args.base.startswith(TIMM_PREFIX):
            raise UserValueError("--timm-weights goes with a timm:<arch> base")
        model_args = extra.get("model_args", {})
        if not isinstance(model_args, dict):
            raise UserValueError(
                f"--set model_args must be a mapping (e.g. model_args={{drop: 0.1}}), got {model_args!r}"
            )
        extra["model_args"] = {**model_args, "pretrained_file": args.timm_weights}
    from fervid.safety import sigterm_as_interrupt

    named = {
        "labels": args.labels,
        "freeze": args.freeze,
        "freeze_epochs": args.freeze_epochs or None,
        "epochs": args.epochs,
        "out": args.out,
        "lr": args.lr,
        "backbone_lr_mult": args.backbone_lr_mult,
        "layer_lr_decay": args.layer_lr_decay,
        "head": args.head,
        "targets": args.targets,
        "ferplus": args.ferplus,
        "ferplus_classes": args.ferplus_classes,
        "max_train_samples": args.max_train_samples,
        "batch_size": args.batch_size,
        "calibrate": args.calibrate,
        "val_fraction": args.val_fraction,
        "device": args.device,
        "seed": args.seed,
        "progress": args.progress,
        "resume": args.resume,
        "overwrite": args.overwrite,
    }
    clash = sorted(set(extra) & {*named, "base", "data", "init_from", "loaded"})
    if clash:  # finetune() would get the key twice (a TypeError) or replace it silently
        raise UserValueError(f"--set {clash[0]}: set by fervid finetune's own arguments (see fervid finetune --help)")
    with sigterm_as_interrupt():  # `kill` stops like Ctrl-C
        final = finetune(args.base, args.data, **named, **extra)
    print(json.dumps(final, indent=2))
    print(f"checkpoint: {args.out}/best.pt")
    return 0
