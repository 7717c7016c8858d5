"""The training config: every setting a run depends on, typed and checked.

Dumped to ``config.yaml`` in each run directory; ``fervid train --config X.yaml --set k=v`` builds it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fervid.data.ferplus import TARGETS
from fervid.errors import UserValueError
from fervid.training.augment import AugmentConfig, check_camera
from fervid.training.imbalance import STRATEGIES


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
        type: ``--set lr=abc`` is a :class:`~fervid.errors.UserValueError` naming the key, the
        expected type and the value. Ints are taken where floats are expected and lists where
        tuples are; nothing else is converted (no ``"0.1"`` -> 0.1, no ``1`` -> ``True``)."""
        d = dict(d)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserValueError(f"unknown training config key(s) {unknown}; valid: {sorted(names)}")
        if isinstance(d.get("augment"), dict):
            bad = sorted(set(d["augment"]) - {f.name for f in fields(AugmentConfig)})
            if bad:
                raise UserValueError(f"unknown augment key(s) {bad}")
        hints = _hints(cls)
        return cls(**{k: _typed(f"{k}", v, hints[k]) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Check every value's type (as :meth:`from_dict` does) and the choices."""
        hints = _hints(type(self))
        for f in fields(self):
            _typed(f.name, getattr(self, f.name), hints[f.name])
        if self.imbalance not in STRATEGIES:
            raise UserValueError(f"imbalance must be one of {STRATEGIES}, got {self.imbalance!r}")
        if self.targets not in TARGETS:
            raise UserValueError(f"targets must be one of {TARGETS}, got {self.targets!r}")
        if self.targets.startswith("ferplus") and not self.ferplus:
            raise UserValueError(f"targets={self.targets} needs ferplus=<path to fer2013new.csv>")
        if self.optimizer not in ("sgd", "adamw"):
            raise UserValueError(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "plateau", "constant"):
            raise UserValueError(f"unknown schedule {self.schedule!r}")
        if self.select_metric not in ("accuracy", "macro_f1"):
            raise UserValueError(f"select_metric must be accuracy or macro_f1, got {self.select_metric!r}")
        if self.multilabel_loss not in ("bce", "max"):
            raise UserValueError(f"multilabel_loss must be bce or max, got {self.multilabel_loss!r}")
        if self.head not in ("mapped", "fresh"):
            raise UserValueError(f"head must be mapped or fresh, got {self.head!r}")
        if self.freeze not in ("none", "backbone"):
            raise UserValueError(f"freeze must be none or backbone, got {self.freeze!r}")
        check_camera(self.augment)  # again: the config may have been changed since it was made
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise UserValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if not (self.kd_temperature > 0 and math.isfinite(self.kd_temperature)):
            raise UserValueError(f"kd_temperature must be a finite number > 0, got {self.kd_temperature}")
        if not 0.0 <= self.align_p <= 1.0:
            raise UserValueError(f"align_p must be in [0, 1], got {self.align_p}")
        if not 0.0 < self.val_fraction < 1.0:
            raise UserValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        # Ranges (issue 12): a value outside them would mean something else silently
        # (max_train_samples=0 read as "no limit") or fail mid-run (batch_size=0).
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise UserValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise UserValueError(f"max_train_samples must be at least 1 (or null: all), got {self.max_train_samples}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not self.warmup_epochs >= 0:
            raise UserValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")


# ----------------------------------------------------------------------- type checking
# A few lines for the handful of types these dataclasses use (scalars, optionals, lists,
# tuples, dicts, the nested AugmentConfig), rather than a validation library as a core
# dependency of the training package.


def _hints(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


class _Mismatch(Exception):
    pass


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _typed(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against ``hint`` (ints accepted as floats, lists as tuples), or a
    :class:`UserValueError` naming ``key``, the expected type and the value."""
    try:
        return _convert(key, value, hint)
    except _Mismatch:
        raise UserValueError(
            f"training config key {key!r}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})"
        ) from None


def _convert(key: str, value: Any, hint: Any) -> Any:
    import dataclasses
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(key, value, a)
            except _Mismatch:
                pass
        raise _Mismatch
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise _Mismatch
        sub = _hints(hint)
        unknown = sorted(set(value) - set(sub))
        if unknown:
            raise UserValueError(f"unknown {key} key(s) {unknown}; valid: {sorted(sub)}")
        return hint(**{k: _typed(f"{key}.{k}", v, sub[k]) for k, v in value.items()})
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return [_convert(key, v, args[0]) for v in value] if args else list(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(key, v, args[0]) for v in value)
        if args and len(value) != len(args):
            raise _Mismatch
        return tuple(_convert(key, v, a) for v, a in zip(value, args)) if args else tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        kt, vt = args if args else (Any, Any)
        return {_convert(key, k, kt): _convert(key, v, vt) for k, v in value.items()}
    raise TypeError(f"config field {key!r}: unsupported annotation {hint!r}")  # a bug in the dataclass, not user input


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A YAML recipe (optional) with keyword overrides applied on top (``None`` = keep)."""
    d: dict[str, Any] = {}
    if path is not None:
        import yaml

        from fervid.errors import UserFileNotFoundError
        from fervid.safety import check_input_file

        check_input_file(path, "config")
        if not Path(path).is_file():
            raise UserFileNotFoundError(f"config {path}: no such file")
        try:
            d = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise UserValueError(f"config {path}: not valid YAML ({' '.join(str(e).split())})") from e
        if not isinstance(d, dict):
            raise UserValueError(f"config {path}: expected a mapping of training keys, got a {type(d).__name__}")
    for k, v in overrides.items():
        if v is not None:
            d[k] = v
    return TrainConfig.from_dict(d)
