"""Transfer learning: start from any fervid checkpoint, train on new data, maybe new labels.

>>> from fervid.training.finetune import finetune
>>> finetune("default", "my_faces/", epochs=5, freeze="backbone", out="runs/my-faces")

Why a separate entry point and not just ``fervid train``: a small labelled set (a few
hundred faces of a new camera, or a new label set such as ``happy / neutral / sad``)
trains far better from a network that already knows faces than from scratch
(``benchmarks/transfer.md``), but only with lower learning rates and, at first, a
frozen backbone. :func:`finetune` sets those defaults and then runs the ordinary
trainer (:func:`fervid.training.loop.train`), so the output is a normal fervid checkpoint
(``OUT/best.pt``) that :func:`fervid.load_model`, ``fervid evaluate`` and ``fervid
predict`` accept.

Pieces (each a :class:`~fervid.training.config.TrainConfig` field, so ``fervid train --set`` can
use them too):

- ``init_from``: the base -- a bundled name (``default``, ``fast``), a checkpoint file,
  or ``timm:<arch>`` for an ImageNet backbone from the optional ``timm`` package with a
  *local* weights file (``model_args={"pretrained_file": ...}``; nothing is downloaded).
- ``labels``: the new label set. The classifier rows of labels the base already knows
  are copied (``head="mapped"``, matched by emotion name: ``anger`` = ``angry``); other
  rows start fresh. ``head="fresh"`` re-initialises the whole classifier.
- ``freeze="backbone"``: only the classifier trains (backbone BatchNorm statistics stay
  fixed too); ``freeze_epochs=N`` unfreezes the backbone after N epochs.
- ``backbone_lr_mult`` and ``layer_lr_decay``: the backbone learns at ``lr x mult``, and
  each earlier stage ``layer_lr_decay`` times slower again (discriminative learning
  rates: early layers hold generic edges and textures, the head the task).

After training the temperature is fitted on the selection split (PublicTest, or the
held-out share of a folder without one), so the fine-tuned model's probabilities, and
with them the ambiguity outputs, are calibrated like the bundled models'.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fervid.data.datasets import folder_labels, load_training_data, normalize_labels, relabel
from fervid.emotions import FER2013
from fervid.errors import UserValueError
from fervid.runtime import resolve_device

if TYPE_CHECKING:
    from fervid.data.datasets import FERData
    from fervid.training.config import TrainConfig


# --------------------------------------------------------------------------- the entry point
# torch and the modules that load it (the trainer, the torch path) are imported on use:
# importing this module stays light.


def finetune(
    base: str,
    data: str | os.PathLike,
    *,
    labels: Sequence[str] | str | None = None,
    freeze: str = "backbone",
    freeze_epochs: int | None = 1,
    epochs: int = 5,
    out: str = "runs/finetune",
    lr: float = 0.01,
    backbone_lr_mult: float = 0.1,
    layer_lr_decay: float = 1.0,
    head: str = "mapped",
    targets: str = "fer2013",
    ferplus: str | None = None,
    ferplus_classes: int = 8,
    max_train_samples: int | None = None,
    batch_size: int = 64,
    calibrate: bool = True,
    loaded: FERData | None = None,
    resume: bool = False,
    overwrite: bool = False,
    **train_options: Any,
) -> dict[str, Any]:
    """Fine-tune ``base`` on ``data``; writes a normal fervid run to ``out`` (``best.pt``).
    An ``out`` that already holds a run needs ``resume`` or ``overwrite`` (as in ``fervid train``).

    Defaults are for small sets: the backbone is frozen for the first epoch (the new head
    settles without wrecking pretrained features; this replaces the learning-rate warm-up,
    which is off), then trains at a tenth of the head's learning rate. ``labels=None`` takes the label set from the data: FER2013's for a CSV,
    the class folders for an image folder (emotion folders in FER2013 order first).
    ``targets``/``ferplus`` select FER+ targets on the FER2013 CSV as in ``fervid train``.
    ``calibrate`` fits the temperature on the selection split afterwards. Other
    :class:`~fervid.training.config.TrainConfig` fields go in ``train_options``. Returns the
    trainer's final metrics plus ``temperature`` and ``labels``.
    """
    import torch

    from fervid.training.loop import start_run_dir, train

    if labels is None and loaded is None and Path(data).is_dir():
        found = folder_labels(data)
        labels = None if set(found) == set(FER2013) else found
    names = normalize_labels(labels) if labels is not None else None
    if names is not None and targets != "fer2013":
        raise UserValueError("--labels works with targets=fer2013 (FER+ targets fix the label set)")
    cfg = _finetune_config(
        train_options,
        data=str(data),
        init_from=str(base),
        labels=list(names) if names else None,
        freeze=freeze,
        freeze_epochs=freeze_epochs if freeze != "none" else None,
        epochs=epochs,
        out=str(out),
        lr=lr,
        backbone_lr_mult=backbone_lr_mult,
        layer_lr_decay=layer_lr_decay,
        head=head,
        targets=targets,
        ferplus=ferplus,
        ferplus_classes=ferplus_classes,
        max_train_samples=max_train_samples,
        batch_size=batch_size,
    )
    _, resume = start_run_dir(out, resume=resume, overwrite=overwrite)  # refuse an earlier run before loading
    ds = loaded if loaded is not None else load_training_data(cfg.data, names)
    if loaded is not None and names is not None:
        ds = relabel(ds, names)
    final = train(cfg, data=ds, resume=resume, overwrite=overwrite)
    best = Path(out) / "best.pt"
    ck = torch.load(best, map_location="cpu", weights_only=True)
    final["labels"] = list(ck["labels"])
    if calibrate:
        final["temperature"] = _calibrate(cfg, ds, ck, best)
    return final


def _finetune_config(train_options: dict[str, Any], **fields: Any) -> TrainConfig:
    """The run's config: the fine-tuning defaults (no warm-up: the frozen first epoch settles
    the head instead), ``train_options`` over them, ``fields`` over both; checked like a
    recipe, so an unknown option or a value out of range is a named error."""
    from fervid.training.config import TrainConfig

    return TrainConfig.from_dict({"warmup_epochs": 0.0, **train_options, **fields})


def _calibrate(cfg: TrainConfig, ds: FERData, ck: dict[str, Any], best: Path) -> float:
    """The temperature fitted on the selection split (PublicTest, or the held-out share),
    written into ``best`` (``ck``, its loaded checkpoint) with the NLL before and after."""
    from fervid.evaluation.calibration import fit_temperature, nll
    from fervid.inference.logits import tta_logits
    from fervid.models.checkpoint import model_from_checkpoint, save_atomic
    from fervid.training.loop import prepare_splits

    val = prepare_splits(cfg, ds)[0]["PublicTest"]
    model = model_from_checkpoint(ck)
    device = resolve_device(cfg.device)
    logits = tta_logits(model, val.images, "none", device).numpy()
    t = fit_temperature(logits, val.labels)
    ck["temperature"] = float(t)
    ck["calibration"] = {
        "method": "temperature scaling on the selection split",
        "images": int(len(val.labels)),
        "nll_before": nll(logits, val.labels, 1.0),
        "nll_after": nll(logits, val.labels, t),
    }
    save_atomic(ck, best)
    return float(t)


__all__ = ["finetune"]
