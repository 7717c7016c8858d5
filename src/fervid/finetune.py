"""Transfer learning: start from any fervid checkpoint, train on new data, maybe new labels.

>>> from fervid.finetune import finetune
>>> finetune("default", "my_faces/", epochs=5, freeze="backbone", out="runs/my-faces")

Why a separate entry point and not just ``fervid train``: a small labelled set (a few
hundred faces of a new camera, or a new label set such as ``happy / neutral / sad``)
trains far better from a network that already knows faces than from scratch
(``benchmarks/transfer.md``), but only with lower learning rates and, at first, a
frozen backbone. :func:`finetune` sets those defaults and then runs the ordinary
trainer (:func:`fervid.train.train`), so the output is a normal fervid checkpoint
(``OUT/best.pt``) that :func:`fervid.load_model`, ``fervid evaluate`` and ``fervid
predict`` accept.

Pieces (each a :class:`~fervid.train.TrainConfig` field, so ``fervid train --set`` can
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

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch.nn as nn

    from .data import FERData
    from .train import TrainConfig

TIMM_PREFIX = "timm:"
IMAGENET_GREY_MEAN = 0.449   # mean of ImageNet's RGB means: what a grey image fed to an RGB-summed conv expects
IMAGENET_GREY_STD = 0.226


# --------------------------------------------------------------------------- labels and data

def normalize_labels(labels: Sequence[str] | str) -> tuple[str, ...]:
    """Label names as fervid writes them: emotion synonyms become the canonical name
    (``Anger`` -> ``angry``), other names are kept (stripped). ``"a,b,c"`` is split."""
    from .emotions import try_canonical

    if isinstance(labels, str):
        labels = [s for s in labels.split(",")]
    out = tuple((try_canonical(s) or s.strip()) for s in labels if s.strip())
    if len(out) < 2:
        raise ValueError(f"need at least two labels, got {list(out)}")
    if len(set(out)) != len(out):
        raise ValueError(f"labels name the same class twice: {list(out)}")
    return out


def folder_labels(path: str | os.PathLike) -> tuple[str, ...]:
    """The class folders of an image folder (``<root>/<class>/*`` or ``<root>/<split>/<class>/*``)
    as labels, in FER2013 order for emotions, then other names alphabetically."""
    from .data import _iter_class_dirs
    from .emotions import FERPLUS8

    names = {cname for _, _, cname in _iter_class_dirs(Path(path), FERPLUS8)}
    if not names:
        raise ValueError(f"{path}: no class folders found")
    known = [n for n in FERPLUS8 if n in names]
    return tuple(known + sorted(names - set(known)))


def load_training_data(path: str | os.PathLike, labels: Sequence[str] | None) -> FERData:
    """Load ``path`` with ``labels`` as the vocabulary: an image folder is read with those
    class names (folders outside them get label -1 and are ignored); a FER2013 CSV or pack
    keeps only the rows whose emotion is among ``labels``, relabelled."""
    from .data import load_dataset, load_image_folder

    if labels is None:
        return load_dataset(path)
    names = normalize_labels(labels)
    if Path(path).is_dir():
        return load_image_folder(path, label_names=names)
    data = load_dataset(path)
    return relabel(data, names)


def relabel(data: FERData, names: Sequence[str]) -> FERData:
    """``data`` with labels re-expressed in ``names`` (classes absent from ``names`` -> -1)."""
    from .emotions import try_canonical

    names = tuple(names)
    canon = [try_canonical(n) or n for n in names]
    lut = np.asarray([canon.index(c) if (c := try_canonical(o) or o) in canon else -1 for o in data.label_names]
                     + [-1], dtype=np.int64)
    return dataclasses.replace(data, labels=lut[data.labels], label_names=names)


# --------------------------------------------------------------------------- the model

def classifier_name(model: nn.Module) -> str:
    """Module name of the final classifier: the last ``nn.Linear`` with one output per label."""
    import torch.nn as nn

    k = len(model.preprocess.labels)
    found = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == k]
    if not found:
        raise ValueError(f"{type(model).__name__}: no nn.Linear with {k} outputs to use as the classifier")
    return found[-1]


def _head_prefix(model: nn.Module) -> str:
    """Parameters under this prefix form the head (fervid models: ``head.``; else the classifier)."""
    import torch.nn as nn

    head = getattr(model, "head", None)
    clf = classifier_name(model)
    if isinstance(head, nn.Module) and clf.startswith("head."):
        return "head."
    return clf + "."


def backbone_stages(model: nn.Module) -> list[list[tuple[str, Any]]]:
    """Backbone parameters grouped into stages, input side first: the model's top-level
    children except the head, with ``nn.Sequential`` children expanded one level
    (fast_cnn: its conv blocks; ResNet: stem, then each residual block)."""
    import torch.nn as nn

    prefix = _head_prefix(model)
    stages: list[list[tuple[str, Any]]] = []
    seen: set[str] = set()
    for name, child in model.named_children():
        if prefix == name + ".":
            continue  # the head itself
        parts = list(child.named_children()) if isinstance(child, nn.Sequential) else [("", child)]
        for sub, mod in parts:
            full = f"{name}.{sub}" if sub else name
            ps = [(f"{full}.{n}", p) for n, p in mod.named_parameters() if not f"{full}.{n}".startswith(prefix)]
            if ps:
                stages.append(ps)
                seen.update(n for n, _ in ps)
    rest = [(n, p) for n, p in model.named_parameters() if n not in seen and not n.startswith(prefix)]
    if rest:
        stages.insert(0, rest)
    return stages


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Optimizer groups: weight decay on weights (not biases / norms) and an ``lr_scale``
    per backbone stage (``backbone_lr_mult x layer_lr_decay^(stages after it)``); the head
    keeps ``lr_scale`` 1. Without fine-tuning options: exactly the trainer's two groups."""
    def split(ps: list[tuple[str, Any]], scale: float) -> list[dict[str, Any]]:
        dec = [p for _, p in ps if p.ndim > 1]
        nod = [p for _, p in ps if p.ndim <= 1]
        return [g for g in ({"params": dec, "weight_decay": cfg.weight_decay, "lr_scale": scale},
                            {"params": nod, "weight_decay": 0.0, "lr_scale": scale}) if g["params"]]

    if cfg.backbone_lr_mult == 1.0 and cfg.layer_lr_decay == 1.0:
        return [{"params": [p for _, p in model.named_parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
                {"params": [p for _, p in model.named_parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    prefix = _head_prefix(model)
    stages = backbone_stages(model)
    groups: list[dict[str, Any]] = []
    for i, ps in enumerate(stages):
        groups += split(ps, cfg.backbone_lr_mult * cfg.layer_lr_decay ** (len(stages) - 1 - i))
    groups += split([(n, p) for n, p in model.named_parameters() if n.startswith(prefix)], 1.0)
    return groups


def apply_freeze(model: nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) the backbone. Call after ``model.train()``: frozen backbone
    modules are put in eval mode so their BatchNorm statistics stay the base's."""
    prefix = _head_prefix(model)
    for n, p in model.named_parameters():
        if not n.startswith(prefix):
            p.requires_grad_(not frozen)
    if frozen:
        head_root = prefix.rstrip(".")
        for n, m in model.named_modules():
            if n and not (n == head_root or n.startswith(prefix)) and not head_root.startswith(n + "."):
                m.eval()


def _timm_model(cfg: TrainConfig, names: tuple[str, ...]) -> nn.Module:
    from .models import create_model
    from .preprocess import PreprocessConfig

    args = dict(cfg.model_args)
    size = int(args.pop("input_size", 96))
    arch = cfg.init_from[len(TIMM_PREFIX):]  # type: ignore[index]
    model = create_model("timm_model", labels=names, in_chans=1, input_size=size, arch=arch, **args)
    model.model_args.pop("pretrained_file", None)  # the checkpoint carries the weights, not the path
    model.preprocess = dataclasses.replace(model.preprocess, mean=IMAGENET_GREY_MEAN, std=IMAGENET_GREY_STD)
    assert isinstance(model.preprocess, PreprocessConfig)
    cfg.model, cfg.model_args = "timm_model", dict(model.model_args)
    return model


def init_model(cfg: TrainConfig, names: Sequence[str]) -> nn.Module:
    """A model with ``cfg.init_from``'s architecture, preprocessing and weights and a
    classifier for ``names``: rows of labels the base knows are copied (``head="mapped"``),
    the others are freshly initialised. ``cfg.model``/``cfg.model_args`` are set to the
    base's, so the run's config records what was trained."""
    import torch

    from .checkpoint import load_model
    from .emotions import try_canonical
    from .models import create_model

    names = tuple(names)
    if str(cfg.init_from).startswith(TIMM_PREFIX):
        return _timm_model(cfg, names)
    base = load_model(str(cfg.init_from))
    args = {k: v for k, v in base.model_args.items() if k not in ("num_classes", "in_chans")}
    pre = base.preprocess
    model = create_model(base.model_name, labels=names, in_chans=pre.in_chans, input_size=pre.input_size, **args)
    model.preprocess = dataclasses.replace(pre, labels=names)
    clf = classifier_name(model)
    base_clf = classifier_name(base)
    sd = model.state_dict()
    bsd = base.state_dict()
    for k, v in bsd.items():
        if not k.startswith(base_clf + ".") and k in sd and sd[k].shape == v.shape:
            sd[k] = v.clone()
    if cfg.head == "mapped":
        base_names = [try_canonical(n) or n for n in base.preprocess.labels]
        with torch.no_grad():
            for i, n in enumerate(names):
                c = try_canonical(n) or n
                if c in base_names:
                    j = base_names.index(c)
                    sd[f"{clf}.weight"][i] = bsd[f"{base_clf}.weight"][j]
                    sd[f"{clf}.bias"][i] = bsd[f"{base_clf}.bias"][j]
    model.load_state_dict(sd)
    cfg.model, cfg.model_args = base.model_name, dict(args)
    return model


# --------------------------------------------------------------------------- the entry point

def finetune(base: str, data: str | os.PathLike, *, labels: Sequence[str] | str | None = None,
             freeze: str = "backbone", freeze_epochs: int | None = 1, epochs: int = 5, out: str = "runs/finetune",
             lr: float = 0.01, backbone_lr_mult: float = 0.1, layer_lr_decay: float = 1.0, head: str = "mapped",
             targets: str = "fer2013", ferplus: str | None = None, ferplus_classes: int = 8,
             max_train_samples: int | None = None, batch_size: int = 64, calibrate: bool = True,
             loaded: FERData | None = None, **train_options: Any) -> dict[str, Any]:
    """Fine-tune ``base`` on ``data``; writes a normal fervid run to ``out`` (``best.pt``).

    Defaults are for small sets: the backbone is frozen for the first epoch (the new head
    settles without wrecking pretrained features; this replaces the learning-rate warm-up,
    which is off), then trains at a tenth of the head's learning rate. ``labels=None`` takes the label set from the data: FER2013's for a CSV,
    the class folders for an image folder (emotion folders in FER2013 order first).
    ``targets``/``ferplus`` select FER+ targets on the FER2013 CSV as in ``fervid train``.
    ``calibrate`` fits the temperature on the selection split afterwards. Other
    :class:`~fervid.train.TrainConfig` fields go in ``train_options``. Returns the
    trainer's final metrics plus ``temperature`` and ``labels``.
    """
    import torch

    from .checkpoint import save_atomic
    from .emotions import FER2013
    from .train import TrainConfig, _prepare, predict_logits, resolve_device, train

    if labels is None and loaded is None and Path(data).is_dir():
        found = folder_labels(data)
        labels = None if set(found) == set(FER2013) else found
    names = normalize_labels(labels) if labels is not None else None
    if names is not None and targets != "fer2013":
        raise ValueError("--labels works with targets=fer2013 (FER+ targets fix the label set)")
    cfg = TrainConfig(data=str(data), init_from=str(base), labels=list(names) if names else None, freeze=freeze,
                      freeze_epochs=freeze_epochs if freeze != "none" else None, epochs=epochs, out=str(out), lr=lr,
                      backbone_lr_mult=backbone_lr_mult, layer_lr_decay=layer_lr_decay, head=head, targets=targets,
                      ferplus=ferplus, ferplus_classes=ferplus_classes, max_train_samples=max_train_samples,
                      batch_size=batch_size, **{"warmup_epochs": 0.0, **train_options})
    ds = loaded if loaded is not None else load_training_data(cfg.data, names)
    if loaded is not None and names is not None:
        ds = relabel(ds, names)
    final = train(cfg, data=ds)
    best = Path(out) / "best.pt"
    ck = torch.load(best, map_location="cpu", weights_only=True)
    final["labels"] = list(ck["labels"])
    if calibrate:
        from .calibration import fit_temperature, nll
        from .checkpoint import model_from_checkpoint

        val = _prepare(cfg, ds)[0]["PublicTest"]
        model = model_from_checkpoint(ck)
        device = resolve_device(cfg.device)
        logits = predict_logits(model.to(device), val.images, device=device, amp=cfg.amp).numpy()
        t = fit_temperature(logits, val.labels)
        ck["temperature"] = float(t)
        ck["calibration"] = {"method": "temperature scaling on the selection split", "images": int(len(val.labels)),
                             "nll_before": nll(logits, val.labels, 1.0), "nll_after": nll(logits, val.labels, t)}
        save_atomic(ck, best)
        final["temperature"] = float(t)
    return final


__all__ = ["finetune", "init_model", "param_groups", "apply_freeze", "backbone_stages", "classifier_name",
           "normalize_labels", "folder_labels", "load_training_data", "relabel", "TIMM_PREFIX"]
