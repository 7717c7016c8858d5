"""Model registry: ``create_model(name)``, ``list_models()``, one file per family.

Every registered constructor returns an ``nn.Module`` with two attributes that make
a checkpoint self-describing: ``model.preprocess`` (:class:`PreprocessConfig`) and
``model.model_args`` (the keyword arguments that rebuild the same architecture).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

from fervid.data.preprocess import PreprocessConfig
from fervid.emotions import FER2013

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model constructor under its function name."""
    _REGISTRY[fn.__name__] = fn
    _DESCRIPTIONS[fn.__name__] = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    return fn


def list_models() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def describe_models() -> dict[str, str]:
    _load_families()
    return {k: _DESCRIPTIONS[k] for k in sorted(_REGISTRY)}


def create_model(name: str, *, num_classes: int | None = None, labels: tuple[str, ...] | list[str] | None = None,
                 in_chans: int = 1, input_size: int = 48, **overrides: Any) -> nn.Module:
    """Build a registered model. ``labels`` (default FER2013) fixes ``num_classes``."""
    _load_families()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
    labels = tuple(labels) if labels is not None else (FER2013 if num_classes in (None, 7) else tuple(f"class{i}" for i in range(num_classes)))
    if num_classes is not None and num_classes != len(labels):
        raise ValueError(f"num_classes={num_classes} but {len(labels)} labels given")
    model = _REGISTRY[name](num_classes=len(labels), in_chans=in_chans, **overrides)
    model.model_name = name
    model.model_args = {"num_classes": len(labels), "in_chans": in_chans, **overrides}
    model.preprocess = PreprocessConfig(input_size=input_size, in_chans=in_chans, labels=labels)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_families() -> None:
    # Imported lazily so that `import fervid` stays cheap; each import registers its models.
    from fervid.models import convnext, fast, resnet, timm_backbone, vgg  # noqa: F401


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


__all__ = ["register_model", "create_model", "list_models", "describe_models", "count_parameters"]
