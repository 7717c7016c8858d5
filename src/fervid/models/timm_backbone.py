"""Optional ImageNet-pretrained backbones through ``timm`` (not a fervid dependency).

``timm_model(arch=..., pretrained_file=PATH)`` builds ``timm.create_model(arch)`` with a
grey (1-channel) stem and loads ImageNet weights from a **local file** only: fervid never
downloads weights at run time. timm adapts the pretrained RGB stem to one channel (sums
the filters) and drops the ImageNet classifier. Used by ``fervid finetune timm:<arch>
--timm-weights FILE``. ``timm`` is imported only when such a model is built.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from fervid.errors import UserFileNotFoundError
from fervid.models import ModelCfg, register_model


def _timm_cfg(model: nn.Module) -> ModelCfg:
    # timm's own declaration (pretrained_cfg / default_cfg) names the stem conv and the classifier.
    c = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", {})
    return ModelCfg(first_conv=str(c["first_conv"]), classifier=str(c["classifier"]))


@register_model(cfg=_timm_cfg)
def timm_model(
    num_classes: int = 7,
    in_chans: int = 1,
    arch: str = "resnet18",
    pretrained_file: str | None = None,
    drop: float = 0.0,
) -> nn.Module:
    """Any timm architecture (optional dependency; local pretrained weights only)."""
    try:
        import timm
    except ImportError as e:
        raise ImportError(
            "timm backbones need the optional package timm (pip install timm); fervid's own architectures do not"
        ) from e
    kw: dict = {}
    if pretrained_file is not None:
        if not Path(pretrained_file).is_file():
            raise UserFileNotFoundError(f"no such weights file: {pretrained_file} (fervid never downloads weights)")
        kw = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(pretrained_file)}}
    return timm.create_model(arch, num_classes=num_classes, in_chans=in_chans, drop_rate=drop, **kw)
