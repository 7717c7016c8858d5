"""The training config: every setting a run depends on, typed and checked.

Dumped to ``config.yaml`` in each run directory; ``fervid train --config X.yaml --set k=v`` builds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fervid.data.ferplus import TARGETS
from fervid.training.augment import AugmentConfig
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
    max_train_samples: int | None = None   # stratified subset of Training, for quick runs and tests
    optimizer: str = "sgd"                 # sgd (Nesterov) | adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"               # cosine | step | plateau | constant
    warmup_epochs: float = 1.0
    step_epochs: list[int] = field(default_factory=lambda: [20, 40])
    step_gamma: float = 0.1
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    label_smoothing: float = 0.0
    grad_clip: float | None = 5.0
    imbalance: str = "none"                # see fervid.imbalance.STRATEGIES
    focal_gamma: float = 2.0
    cb_beta: float = 0.9999
    oversample_power: float = 1.0
    targets: str = "fer2013"               # fer2013 | ferplus-{majority,probability,crossentropy,multilabel}
    ferplus: str | None = None             # path to fer2013new.csv for ferplus-* targets
    ferplus_classes: int = 8               # 8 (with contempt) or 7 (FER2013 classes)
    multilabel_threshold: float = 0.3
    multilabel_loss: str = "bce"           # bce (per-emotion binary CE) | max (Barsoum et al.: -log max_k in targets p_k)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    select_metric: str = "accuracy"        # accuracy | macro_f1, on PublicTest
    early_stopping: int | None = None      # epochs without PublicTest improvement before stopping
    device: str = "auto"
    amp: bool = True                       # bf16 autocast where supported
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    workers_threads: int | None = None     # torch CPU threads (None: torch default)
    progress: bool = True
    eval_private: bool = True              # evaluate PrivateTest once at the end
    time_budget_minutes: float | None = None  # fit the epoch count to a wall-clock budget (set after epoch 1)
    # Transfer learning (see fervid.finetune): start from a checkpoint; a new head for new labels.
    init_from: str | None = None           # bundled model name or checkpoint whose weights start the run
    labels: list[str] | None = None        # class names for image-folder data (default: the FER2013 classes)
    head: str = "mapped"                   # init_from: mapped (reuse rows of labels the base knows) | fresh
    freeze: str = "none"                   # none | backbone (only the classifier head trains)
    freeze_epochs: int | None = None       # freeze=backbone: unfreeze after this many epochs (None: never)
    backbone_lr_mult: float = 1.0          # backbone lr = lr x this (lower for pretrained layers)
    layer_lr_decay: float = 1.0            # each earlier backbone stage gets this factor more (discriminative lr)
    val_fraction: float = 0.1              # share of Training held out for selection when the data has no PublicTest

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training config key(s) {unknown}; valid: {sorted(names)}")
        if isinstance(d.get("augment"), dict):
            aug = d["augment"]
            bad = sorted(set(aug) - {f.name for f in fields(AugmentConfig)})
            if bad:
                raise ValueError(f"unknown augment key(s) {bad}")
            d["augment"] = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        if self.imbalance not in STRATEGIES:
            raise ValueError(f"imbalance must be one of {STRATEGIES}, got {self.imbalance!r}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {self.targets!r}")
        if self.targets.startswith("ferplus") and not self.ferplus:
            raise ValueError(f"targets={self.targets} needs ferplus=<path to fer2013new.csv>")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "plateau", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if self.select_metric not in ("accuracy", "macro_f1"):
            raise ValueError(f"select_metric must be accuracy or macro_f1, got {self.select_metric!r}")
        if self.multilabel_loss not in ("bce", "max"):
            raise ValueError(f"multilabel_loss must be bce or max, got {self.multilabel_loss!r}")
        if self.head not in ("mapped", "fresh"):
            raise ValueError(f"head must be mapped or fresh, got {self.head!r}")
        if self.freeze not in ("none", "backbone"):
            raise ValueError(f"freeze must be none or backbone, got {self.freeze!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A YAML recipe (optional) with keyword overrides applied on top (``None`` = keep)."""
    d: dict[str, Any] = {}
    if path is not None:
        import yaml

        d = yaml.safe_load(Path(path).read_text()) or {}
    for k, v in overrides.items():
        if v is not None:
            d[k] = v
    return TrainConfig.from_dict(d)
