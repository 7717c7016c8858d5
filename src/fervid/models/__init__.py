"""Model registry: ``create_model(name)``, ``list_models()``, one file per family.

Every registered constructor returns an ``nn.Module`` with three attributes that make a
checkpoint self-describing and spare every other module from guessing: ``model.preprocess``
(:class:`PreprocessConfig`), ``model.model_args`` (the keyword arguments that rebuild the same
architecture) and ``model.fervid_cfg`` (:class:`ModelCfg`: the first convolution, the
classifier and the head, declared by the family as timm's ``default_cfg`` does; fine-tuning
and int8 export read them).
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, overload

from fervid.data.preprocess import PreprocessConfig
from fervid.emotions import FER2013
from fervid.errors import UnknownNameError, UserValueError
from fervid.models.bundled import bundled_models

if TYPE_CHECKING:
    # torch is imported by the families and by the functions that build or check a model, not
    # here: fervid.models.onnx (inference on onnxruntime) sits below and must not need it.
    import torch.nn as nn


@dataclass(frozen=True)
class ModelCfg:
    """What a model family declares about its own layers (module paths in ``named_modules``)."""

    first_conv: str
    """The input convolution (int8 export keeps it in fp32)."""
    classifier: str
    """The final ``nn.Linear``, one output per label (fine-tuning maps or re-initialises its rows)."""
    head: str = ""
    """Parameter prefix of the head, which trains while the backbone is frozen ('' = the classifier)."""

    @property
    def head_prefix(self) -> str:
        return (self.head or self.classifier) + "."


CfgSpec: TypeAlias = "ModelCfg | Callable[[nn.Module], ModelCfg]"

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_CFGS: dict[str, CfgSpec | None] = {}


@overload
def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]: ...
@overload
def register_model(*, cfg: CfgSpec) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]: ...
def register_model(fn: Callable[..., nn.Module] | None = None, *, cfg: CfgSpec | None = None) -> Any:
    """Decorator: register a model constructor under its function name.

    ``cfg`` declares the first convolution, classifier and head (a :class:`ModelCfg`, or a
    function of the built model for families whose layout depends on their arguments).
    A family registered without it works for training and inference; fine-tuning and int8
    export then refuse it instead of guessing.
    """

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[f.__name__] = f
        _DESCRIPTIONS[f.__name__] = (f.__doc__ or "").strip().splitlines()[0] if f.__doc__ else ""
        _CFGS[f.__name__] = cfg
        return f

    return deco(fn) if fn is not None else deco


def model_cfg(model: nn.Module) -> ModelCfg:
    """The :class:`ModelCfg` a model's family declared (checked against the model)."""
    cfg = getattr(model, "fervid_cfg", None)
    if not isinstance(cfg, ModelCfg):
        name = getattr(model, "model_name", type(model).__name__)
        raise UserValueError(
            f"model {name!r} declares no ModelCfg (first conv, classifier, head): "
            "register its family with register_model(cfg=ModelCfg(...))"
        )
    return cfg


def _resolve_cfg(name: str, model: nn.Module, n_classes: int) -> ModelCfg | None:
    import torch.nn as nn

    spec = _CFGS.get(name)
    if spec is None:
        return None
    cfg = spec(model) if callable(spec) else spec
    modules = dict(model.named_modules())
    conv, clf = modules.get(cfg.first_conv), modules.get(cfg.classifier)
    # A wrong declaration is a bug in the family: fail when the model is built, not later.
    assert isinstance(conv, nn.Conv2d), f"{name}: first_conv {cfg.first_conv!r} is not an nn.Conv2d"
    assert isinstance(clf, nn.Linear) and clf.out_features == n_classes, (
        f"{name}: classifier {cfg.classifier!r} is not an nn.Linear with {n_classes} outputs"
    )
    return cfg


# The attributes that make a model self-describing. nn.Module types any attribute it does not
# know as ``Tensor | Module``, so they are written through `attach_meta` and read through the
# typed accessors below rather than as ``model.preprocess`` etc.
_META_ATTRS = frozenset({"model_name", "model_args", "preprocess", "fervid_cfg", "temperature", "checkpoint_meta"})


def attach_meta(model: nn.Module, **attrs: Any) -> None:
    """Set fervid's self-describing attributes (``preprocess``, ``temperature``, ...) on ``model``."""
    unknown = set(attrs) - _META_ATTRS
    assert not unknown, f"not a fervid model attribute: {sorted(unknown)}"
    for k, v in attrs.items():
        setattr(model, k, v)


def _required_meta(model: nn.Module, attr: str, what: str) -> Any:
    value = getattr(model, attr, None)
    if value is None:
        raise UserValueError(f"model has no .{attr} ({what}); load it with fervid.load_model or create_model")
    return value


def model_preprocess(model: nn.Module) -> PreprocessConfig:
    """``model.preprocess``: the model's own :class:`PreprocessConfig`."""
    pre: PreprocessConfig = _required_meta(model, "preprocess", "preprocessing config")
    return pre


def model_temperature(model: nn.Module) -> float:
    """``model.temperature``: the calibration temperature (1.0 when the model has none)."""
    return float(getattr(model, "temperature", 1.0))


def model_name(model: nn.Module) -> str:
    """``model.model_name``: the registered family that builds the architecture."""
    return str(_required_meta(model, "model_name", "registered architecture"))


def model_args(model: nn.Module) -> dict[str, Any]:
    """``model.model_args``: the keyword arguments that rebuild the architecture (the model's own dict)."""
    args: dict[str, Any] = _required_meta(model, "model_args", "architecture arguments")
    return args


def checkpoint_meta(model: nn.Module) -> dict[str, Any]:
    """``model.checkpoint_meta``: the loaded checkpoint's metadata ({} for a model not loaded from one)."""
    meta = getattr(model, "checkpoint_meta", None)
    return meta if isinstance(meta, dict) else {}


def list_models(filter: str = "", pretrained: bool = False) -> list[str]:
    """The registered architectures (``create_model`` names), as ``timm.list_models``: with
    ``pretrained`` the bundled weights instead, as ``ARCH.NAME`` (``resnet18_fer.ferplus``: the
    ``ferplus`` weights of ``resnet18_fer``), names that ``load_model`` and
    ``EmotionRecognizer`` accept. ``filter``: a shell-style pattern (``"fast*"``)."""
    if pretrained:  # the catalogue only: no torch needed
        names = [m.pretrained_name for m in bundled_models(aliases=False).values()]
    else:
        _load_families()
        names = list(_REGISTRY)
    return sorted(n for n in names if not filter or fnmatch.fnmatchcase(n, filter))


def describe_models() -> dict[str, str]:
    _load_families()
    return {k: _DESCRIPTIONS[k] for k in sorted(_REGISTRY)}


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    labels: tuple[str, ...] | list[str] | None = None,
    in_chans: int = 1,
    input_size: int = 48,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model. ``labels`` (default FER2013) fixes ``num_classes``."""
    _load_families()
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
    labels = (
        tuple(labels)
        if labels is not None
        else (FER2013 if num_classes in (None, 7) else tuple(f"class{i}" for i in range(num_classes)))
    )
    if num_classes is not None and num_classes != len(labels):
        raise UserValueError(f"num_classes={num_classes} but {len(labels)} labels given")
    model = _REGISTRY[name](num_classes=len(labels), in_chans=in_chans, **overrides)
    attach_meta(
        model,
        model_name=name,
        model_args={"num_classes": len(labels), "in_chans": in_chans, **overrides},
        preprocess=PreprocessConfig(input_size=input_size, in_chans=in_chans, labels=labels),
        fervid_cfg=_resolve_cfg(name, model, len(labels)),
    )
    return model


def model_arguments(name: str) -> dict[str, Any] | None:
    """The keyword arguments ``create_model(name, **args)`` accepts, with their annotations: the
    family's own parameters (read from its signature) and ``in_chans`` / ``input_size``;
    ``num_classes`` is fixed by the labels. ``None``: the family takes any keyword."""
    _load_families()
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
    found = _signature(_REGISTRY[name])
    return dict(found) if found is not None else None


@functools.cache
def _signature(fn: Callable[..., nn.Module]) -> dict[str, Any] | None:
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    hints = typing.get_type_hints(fn)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    out = {p.name: hints.get(p.name, Any) for p in params if p.kind in named and p.name != "num_classes"}
    return {**out, "in_chans": int, "input_size": int}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_families() -> None:
    # Imported lazily so that `import fervid` stays cheap; each import registers its models.
    from fervid.models import convnext, fast, resnet, timm_backbone, vgg  # noqa: F401


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


__all__ = [
    "ModelCfg",
    "register_model",
    "model_cfg",
    "create_model",
    "list_models",
    "describe_models",
    "count_parameters",
    "model_arguments",
    "attach_meta",
    "model_preprocess",
    "model_temperature",
    "model_name",
    "model_args",
    "checkpoint_meta",
]
