"""Optimiser parameter groups and backbone freezing: what a run trains, and how fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fervid.models import model_cfg

if TYPE_CHECKING:
    import torch.nn as nn

    from fervid.training.config import TrainConfig


def classifier_name(model: nn.Module) -> str:
    """Module name of the final classifier, as the model's family declares it (:class:`ModelCfg`)."""
    return model_cfg(model).classifier


def head_prefix(model: nn.Module) -> str:
    """Parameters under this prefix form the head (declared by the family)."""
    return model_cfg(model).head_prefix


def backbone_stages(model: nn.Module) -> list[list[tuple[str, Any]]]:
    """Backbone parameters grouped into stages, input side first: the model's top-level
    children except the head, with ``nn.Sequential`` children expanded one level
    (fast_cnn: its conv blocks; ResNet: stem, then each residual block)."""
    import torch.nn as nn

    prefix = head_prefix(model)
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
        return [
            g
            for g in (
                {"params": dec, "weight_decay": cfg.weight_decay, "lr_scale": scale},
                {"params": nod, "weight_decay": 0.0, "lr_scale": scale},
            )
            if g["params"]
        ]

    if cfg.backbone_lr_mult == 1.0 and cfg.layer_lr_decay == 1.0:
        return [
            {"params": [p for _, p in model.named_parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for _, p in model.named_parameters() if p.ndim <= 1], "weight_decay": 0.0},
        ]
    prefix = head_prefix(model)
    stages = backbone_stages(model)
    groups: list[dict[str, Any]] = []
    for i, ps in enumerate(stages):
        groups += split(ps, cfg.backbone_lr_mult * cfg.layer_lr_decay ** (len(stages) - 1 - i))
    groups += split([(n, p) for n, p in model.named_parameters() if n.startswith(prefix)], 1.0)
    return groups


def apply_freeze(model: nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) the backbone. Call after ``model.train()``: frozen backbone
    modules are put in eval mode so their BatchNorm statistics stay the base's."""
    prefix = head_prefix(model)
    for n, p in model.named_parameters():
        if not n.startswith(prefix):
            p.requires_grad_(not frozen)
    if frozen:
        head_root = prefix.rstrip(".")
        for n, m in model.named_modules():
            if n and not (n == head_root or n.startswith(prefix)) and not head_root.startswith(n + "."):
                m.eval()
