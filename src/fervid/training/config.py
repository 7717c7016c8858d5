"""The training config: every setting a run depends on, typed and checked.

Dumped to ``config.yaml`` in each run directory; ``fervid train --config X.yaml --set k=v`` builds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fervid.data.ferplus import TARGETS
from fervid.errors import UserFileNotFoundError, UserValueError
from fervid.models import model_arguments
from fervid.safety import check_input_file
from fervid.training.augment import CAMERA_KINDS, AugmentConfig, check_camera
from fervid.training.imbalance import STRATEGIES
from fervid.training.schema import (
    ANY,
    PROBABILITY,
    Rule,
    at_least,
    between,
    check_fields,
    declare,
    from_mapping,
    load_yaml,
    one_of,
    positive,
    typed,
)


@dataclass
class TrainConfig:
    """Everything a run depends on; dumped to ``config.json`` in the run directory."""

    data: str = ""
    model: str = "fast_cnn"
    model_args: dict[str, Any] = field(default_factory=dict)
    out: str = "runs/fervid"
    epochs: int = 30
    batch_size: int = 128
    max_train_samples: int | None = None  # stratified subset of Training, for quick runs and tests
    optimizer: str = "sgd"  # sgd (Nesterov) | adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step | plateau | constant
    warmup_epochs: float = 1.0
    step_epochs: list[int] = field(default_factory=lambda: [20, 40])
    step_gamma: float = 0.1
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    label_smoothing: float = 0.0
    grad_clip: float | None = 5.0
    imbalance: str = "none"  # see fervid.training.imbalance.STRATEGIES
    focal_gamma: float = 2.0
    cb_beta: float = 0.9999
    oversample_power: float = 1.0
    targets: str = "fer2013"  # fer2013 | ferplus-{majority,probability,crossentropy,multilabel}
    ferplus: str | None = None  # path to fer2013new.csv for ferplus-* targets
    ferplus_classes: int = 8  # 8 (with contempt) or 7 (FER2013 classes)
    multilabel_threshold: float = 0.3
    multilabel_loss: str = "bce"  # bce (per-emotion binary CE) | max (Barsoum et al.: -log max_k in targets p_k)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    select_metric: str = "accuracy"  # accuracy | macro_f1, on PublicTest
    early_stopping: int | None = None  # epochs without PublicTest improvement before stopping
    device: str = "auto"
    amp: bool = True  # bf16 autocast where supported
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    workers_threads: int | None = None  # torch CPU threads (None: torch default)
    progress: bool = True
    eval_private: bool = True  # evaluate PrivateTest once at the end
    time_budget_minutes: float | None = None  # fit the epoch count to a wall-clock budget (set after epoch 1)
    # Transfer learning (see fervid.training.finetune): start from a checkpoint; a new head for new labels.
    init_from: str | None = None  # bundled model name or checkpoint whose weights start the run
    labels: list[str] | None = None  # class names for image-folder data (default: the FER2013 classes)
    head: str = "mapped"  # init_from: mapped (reuse rows of labels the base knows) | fresh
    freeze: str = "none"  # none | backbone (only the classifier head trains)
    freeze_epochs: int | None = None  # freeze=backbone: unfreeze after this many epochs (None: never)
    backbone_lr_mult: float = 1.0  # backbone lr = lr x this (lower for pretrained layers)
    layer_lr_decay: float = 1.0  # each earlier backbone stage gets this factor more (discriminative lr)
    val_fraction: float = 0.1  # share of Training held out for selection when the data has no PublicTest
    # Knowledge distillation from stored teacher logits (an .npz with ``index``: the data rows,
    # ``logits``: N x K): loss = kd_alpha * T^2 * KL(teacher_T || student_T) + (1 - kd_alpha) * loss.
    # The teacher saw the clean face, the student sees the augmented one (see benchmarks/gpu_pack.py).
    teacher: str | None = None
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0
    # Aligned views: an .npz with ``index`` (data rows), ``theta`` (N x 2 x 3 affine_grid matrices
    # warping each face into its aligned crop) and ``found``; with probability align_p a training
    # face is replaced by its aligned view (before the usual augmentation), so the model learns
    # the crops the inference pipeline makes (benchmarks/gpu_pack.py align).
    align: str | None = None
    align_p: float = 0.5

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A config from plain values (YAML, JSON, ``--set``), each checked against its field's
        type and declared rule (:data:`TRAIN_SCHEMA`; what ties keys together, such as
        ``model_args`` and the family's signature, is checked by :meth:`validate`, which
        :func:`~fervid.training.loop.train` calls): ``--set lr=abc`` is a
        :class:`~fervid.errors.UserValueError` naming the key, the expected type and the value.
        Ints are taken where floats are expected and lists where tuples are; nothing else is
        converted (no ``"0.1"`` -> 0.1, no ``1`` -> ``True``)."""
        cfg: TrainConfig = from_mapping(cls, d, "training config")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Check every value against its type and declared rule, then what ties keys together."""
        check_fields(self)
        if self.targets.startswith("ferplus") and not self.ferplus:
            raise UserValueError(f"targets={self.targets} needs ferplus=<path to fer2013new.csv>")
        check_camera(self.augment)  # again: the config may have been changed since it was made
        _check_model_args(self)


def _check_model_args(cfg: TrainConfig) -> None:
    """``model`` is a registered family and ``model_args`` are keywords of its signature, of
    their annotated types. A warm start (``init_from``) takes the base's architecture instead."""
    if cfg.init_from:
        return
    accepted = model_arguments(cfg.model)
    if accepted is None:
        return
    unknown = sorted(set(cfg.model_args) - set(accepted))
    if unknown:
        raise UserValueError(
            f"config key 'model_args': {cfg.model} takes no argument(s) {unknown}; valid: {sorted(accepted)}"
        )
    for k, v in cfg.model_args.items():
        typed(f"model_args.{k}", v, accepted[k])
        if k in ("in_chans", "input_size"):  # create_model's own; the family's are tried when it is built
            at_least(1).check(f"model_args.{k}", v)


# The declared rule of every key (fervid.training.schema): a field without one is refused when
# any config is checked, so no key goes without its check.
AUGMENT_SCHEMA: dict[str, Rule] = {
    "hflip": PROBABILITY,
    "rotate": between(0, 180),
    "scale": Rule(lo=0, lo_open=True, ordered=True),
    "translate": between(0, 1),
    "brightness": at_least(0),
    "contrast": between(0, 1),
    "erase": PROBABILITY,
    "erase_area": Rule(lo=0, hi=1, lo_open=True, ordered=True),
    "mixup": PROBABILITY,
    "mixup_alpha": positive(),
    "camera": PROBABILITY,
    "camera_kinds": Rule(choices=CAMERA_KINDS, each=True),
    "camera_second": PROBABILITY,
}
TRAIN_SCHEMA: dict[str, Rule] = {
    "data": ANY,
    "model": ANY,  # a registered family: checked with model_args
    "model_args": ANY,  # checked against the family's signature
    "out": ANY,
    "epochs": at_least(1),
    "batch_size": at_least(1),
    "max_train_samples": at_least(1, "null: all"),
    "optimizer": one_of("sgd", "adamw"),
    "lr": positive(),
    "momentum": between(0, 1, hi_open=True),
    "weight_decay": at_least(0),
    "schedule": one_of("cosine", "step", "plateau", "constant"),
    "warmup_epochs": at_least(0),
    "step_epochs": Rule(lo=0, each=True),
    "step_gamma": between(0, 1, lo_open=True),
    "plateau_patience": at_least(1),
    "plateau_factor": between(0, 1, lo_open=True),
    "label_smoothing": between(0, 1, hi_open=True),
    "grad_clip": positive("null: no clipping"),
    "imbalance": one_of(*STRATEGIES),
    "focal_gamma": at_least(0),
    "cb_beta": between(0, 1, hi_open=True, note="at 1 every class weight is 0/0"),
    "oversample_power": at_least(0),
    "targets": one_of(*TARGETS),
    "ferplus": ANY,
    "ferplus_classes": one_of(7, 8),
    "multilabel_threshold": between(0, 1, lo_open=True, hi_open=True),
    "multilabel_loss": one_of("bce", "max"),
    "augment": ANY,  # its own schema: AUGMENT_SCHEMA
    "select_metric": one_of("accuracy", "macro_f1"),
    "early_stopping": at_least(1, "null: never"),
    "device": ANY,  # resolved (and refused if unknown) by fervid.runtime.resolve_device
    "amp": ANY,
    "channels_last": ANY,
    "compile": ANY,
    "seed": between(0, 2**32 - 1),
    "workers_threads": between(1, 4096, note="CPU threads; null: torch's default"),
    "progress": ANY,
    "eval_private": ANY,
    "time_budget_minutes": positive("null: no budget"),
    "init_from": ANY,
    "labels": ANY,
    "head": one_of("mapped", "fresh"),
    "freeze": one_of("none", "backbone"),
    "freeze_epochs": at_least(0, "null: never unfreeze"),
    "backbone_lr_mult": at_least(0),
    "layer_lr_decay": positive(),
    "val_fraction": between(0, 1, lo_open=True, hi_open=True),
    "teacher": ANY,
    "kd_alpha": PROBABILITY,
    "kd_temperature": positive(),
    "align": ANY,
    "align_p": PROBABILITY,
}
declare(AUGMENT_SCHEMA)(AugmentConfig)
declare(TRAIN_SCHEMA)(TrainConfig)


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A YAML recipe (optional) with keyword overrides applied on top (``None`` = keep)."""
    d: dict[str, Any] = read_recipe(path) if path is not None else {}
    for k, v in overrides.items():
        if v is not None:
            d[k] = v
    return TrainConfig.from_dict(d)


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A YAML recipe's mapping (a key given twice, bad YAML or not a mapping: a named error)."""
    check_input_file(path, "config")
    if not Path(path).is_file():
        raise UserFileNotFoundError(f"config {path}: no such file")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserValueError(f"config {path}: not valid YAML (not UTF-8 text: {e})") from e
    d = load_yaml(text, f"config {path}") or {}
    if not isinstance(d, dict):
        raise UserValueError(f"config {path}: expected a mapping of training keys, got a {type(d).__name__}")
    try:  # the recipe's own keys and values, so that an error names the file
        from_mapping(TrainConfig, d, "training config")
    except UserValueError as e:
        raise UserValueError(f"config {path}: {e}") from None
    return d
