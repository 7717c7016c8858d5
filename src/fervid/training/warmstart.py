"""The model a run starts from: a bundled model or checkpoint with a new head, or a timm backbone."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fervid.emotions import try_canonical
from fervid.models import attach_meta, create_model, model_args, model_name, model_preprocess
from fervid.training.optim import classifier_name

if TYPE_CHECKING:
    import torch.nn as nn

    from fervid.training.config import TrainConfig

TIMM_PREFIX = "timm:"
IMAGENET_GREY_MEAN = 0.449  # mean of ImageNet's RGB means: what a grey image fed to an RGB-summed conv expects
IMAGENET_GREY_STD = 0.226


def _timm_model(cfg: TrainConfig, names: tuple[str, ...]) -> nn.Module:
    args = dict(cfg.model_args)
    size = int(args.pop("input_size", 96))
    arch = str(cfg.init_from)[len(TIMM_PREFIX) :]
    model = create_model("timm_model", labels=names, in_chans=1, input_size=size, arch=arch, **args)
    model_args(model).pop("pretrained_file", None)  # the checkpoint carries the weights, not the path
    attach_meta(
        model, preprocess=dataclasses.replace(model_preprocess(model), mean=IMAGENET_GREY_MEAN, std=IMAGENET_GREY_STD)
    )
    cfg.model, cfg.model_args = "timm_model", dict(model_args(model))
    return model


def init_model(cfg: TrainConfig, names: Sequence[str]) -> nn.Module:
    """A model with ``cfg.init_from``'s architecture, preprocessing and weights and a
    classifier for ``names``: rows of labels the base knows are copied (``head="mapped"``),
    the others are freshly initialised. ``cfg.model``/``cfg.model_args`` are set to the
    base's, so the run's config records what was trained."""
    import torch

    from fervid.models.checkpoint import load_model

    names = tuple(names)
    if str(cfg.init_from).startswith(TIMM_PREFIX):
        return _timm_model(cfg, names)
    base = load_model(str(cfg.init_from))
    args = {k: v for k, v in model_args(base).items() if k not in ("num_classes", "in_chans")}
    pre = model_preprocess(base)
    model = create_model(model_name(base), labels=names, in_chans=pre.in_chans, input_size=pre.input_size, **args)
    attach_meta(model, preprocess=dataclasses.replace(pre, labels=names))
    clf = classifier_name(model)
    base_clf = classifier_name(base)
    sd = model.state_dict()
    bsd = base.state_dict()
    for k, v in bsd.items():
        if not k.startswith(base_clf + ".") and k in sd and sd[k].shape == v.shape:
            sd[k] = v.clone()
    if cfg.head == "mapped":
        base_names = [try_canonical(n) or n for n in pre.labels]
        with torch.no_grad():
            for i, n in enumerate(names):
                c = try_canonical(n) or n
                if c in base_names:
                    j = base_names.index(c)
                    sd[f"{clf}.weight"][i] = bsd[f"{base_clf}.weight"][j]
                    sd[f"{clf}.bias"][i] = bsd[f"{base_clf}.bias"][j]
    model.load_state_dict(sd)
    cfg.model, cfg.model_args = model_name(base), dict(args)
    return model
