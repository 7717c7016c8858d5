from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from fervid.cli import add_set_option, parse_set
from fervid.cli.argtypes import output_path, positive_float, positive_int, seed
from fervid.errors import UserValueError

if TYPE_CHECKING:
    from fervid.training.config import TrainConfig


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from fervid.data.ferplus import TARGETS
    from fervid.training.imbalance import STRATEGIES

    p = sub.add_parser("train", help="train a model (selects on PublicTest, reports PrivateTest once)")
    p.add_argument("--config", help="YAML recipe (configs/*.yaml); flags below override it")
    p.add_argument("--data", help="fer2013.csv(.gz), an image folder or a fervid pack")
    p.add_argument("--model", help="architecture name (fervid models)")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", dest="batch_size", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--max-train-samples", dest="max_train_samples", type=positive_int)
    p.add_argument("--imbalance", choices=STRATEGIES)
    p.add_argument("--targets", choices=TARGETS)
    p.add_argument("--ferplus", help="fer2013new.csv, for --targets ferplus-*")
    p.add_argument(
        "--ferplus-classes",
        dest="ferplus_classes",
        type=int,
        choices=(7, 8),
        help="FER+ head: 8 emotions with contempt (default) or the 7 FER2013 classes (contempt votes dropped)",
    )
    p.add_argument("--device", help="auto | cpu | cuda | mps")
    p.add_argument("--seed", type=seed)
    p.add_argument("--out", type=output_path, help="run directory")
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.pt with the run's settings (OUT/config.json); options given now "
        "override them, e.g. a larger --epochs extends the run",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="OUT holds an earlier run: delete its run files and start again (without --resume or "
        "--overwrite an existing run is never touched)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    add_set_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from fervid.training.config import load_config
    from fervid.training.distributed import is_main_process
    from fervid.training.loop import train

    extra = parse_set(args.set)
    keys = (
        "data",
        "model",
        "epochs",
        "batch_size",
        "lr",
        "max_train_samples",
        "imbalance",
        "targets",
        "ferplus",
        "ferplus_classes",
        "device",
        "seed",
        "out",
        "progress",
    )
    flags = {k: getattr(args, k) for k in keys}
    both = sorted(k for k, v in flags.items() if v is not None and k in extra)
    if both:  # one value per key, as in a recipe: the flag silently replaced --set's value
        flag = "--no-progress" if both[0] == "progress" else "--" + both[0].replace("_", "-")
        raise UserValueError(f"--set {both[0]}: also given as {flag}; give it once")
    given = {**extra, **{k: v for k, v in flags.items() if v is not None}}
    cfg = load_config(args.config, **given)
    if args.resume:
        cfg = _resumed_config(cfg, args.config, given)
    if not cfg.data:
        raise UserValueError("no data: give --data PATH or set data: in the config")
    from fervid.safety import sigterm_as_interrupt

    with sigterm_as_interrupt():  # `kill` stops like Ctrl-C: last.pt holds the last finished epoch
        final = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if is_main_process():  # under torchrun, rank 0 speaks for the run
        print(json.dumps(final, indent=2))
    return 0


def _resumed_config(cfg: TrainConfig, recipe: str | None, given: dict[str, object]) -> TrainConfig:
    """--resume: the run's own settings (OUT/config.json), then the recipe and options given now."""
    from pathlib import Path

    from fervid.training.config import TrainConfig

    stored = Path(cfg.out) / "config.json"
    if not stored.is_file():
        return cfg  # train() reports the missing run
    try:
        d = json.loads(stored.read_text())
    except (OSError, ValueError) as e:  # a damaged run folder: say which file, no traceback
        raise UserValueError(
            f"{stored}: cannot resume from this run's config ({e}); use --overwrite to start again"
        ) from e
    if not isinstance(d, dict):
        raise UserValueError(f"{stored}: not a run config (a JSON object); use --overwrite to start again")
    if recipe:
        from fervid.training.config import read_recipe

        d.update(read_recipe(recipe))
    d.update(given)
    return TrainConfig.from_dict(d)
