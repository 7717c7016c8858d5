"""Self-describing checkpoints and ``load_model(name_or_path)``.

A fervid checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)
holding the architecture name and arguments, labels, preprocessing, training config,
metrics, calibration temperature and the weights. Bundled models are the same
metadata plus weights in safetensors, verified against a sha256 before loading.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from fervid.data.preprocess import PreprocessConfig

FORMAT = "fervid-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def _version() -> str:
    from fervid import __version__
    return __version__


def make_checkpoint(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """The self-describing dict for ``model`` (created by :func:`fervid.models.create_model`)."""
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fervid_version": _version(),
        "model": model.model_name,
        "model_args": _plain(model.model_args),
        "preprocess": model.preprocess.to_dict(),
        "labels": list(model.preprocess.labels),
        "temperature": float(getattr(model, "temperature", 1.0)),
        "state_dict": sd,
        **extra,
    }


def _plain(obj: Any) -> Any:
    """Tuples -> lists etc., so the metadata survives JSON and weights_only loading."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """Write to a temporary file and rename: an interrupted save never leaves a broken file."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    from fervid.models import create_model

    if ckpt.get("format") != FORMAT:
        raise ValueError("not a fervid checkpoint (missing format tag)")
    pre = PreprocessConfig.from_dict(ckpt["preprocess"])
    args = dict(ckpt["model_args"])
    args.pop("num_classes", None)
    args.pop("in_chans", None)
    model = create_model(ckpt["model"], labels=tuple(ckpt["labels"]), in_chans=pre.in_chans, input_size=pre.input_size, **args)
    model.preprocess = pre
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    model.temperature = float(ckpt.get("temperature", 1.0))
    model.checkpoint_meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "trainer_state")}
    return model.eval()


@dataclass(frozen=True)
class BundledModel:
    name: str
    file: str
    sha256: str
    description: str


def bundled_models() -> dict[str, BundledModel]:
    """Models shipped inside the package (``fervid/weights/manifest.json``)."""
    manifest = WEIGHTS_DIR / "manifest.json"
    if not manifest.is_file():
        return {}
    entries = json.loads(manifest.read_text())
    out = {e["name"]: BundledModel(e["name"], e["file"], e["sha256"], e.get("description", "")) for e in entries["models"]}
    for alias, target in entries.get("aliases", {}).items():
        out[alias] = out[target]
    return out


def load_safetensors_checkpoint(path: str | os.PathLike, sha256: str | None = None) -> dict[str, Any]:
    from safetensors import safe_open

    path = Path(path)
    if sha256 is not None:
        got = file_sha256(path)
        if got != sha256:
            raise ValueError(f"{path}: sha256 {got} does not match the expected {sha256}; the file is corrupt or was modified")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["fervid"])
        meta["state_dict"] = {k: f.get_tensor(k) for k in f.keys()}
    return meta


def save_safetensors_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike, half: bool = True) -> str:
    """Write weights (fp16 by default: half the size, no accuracy change at 48x48) plus
    the metadata as JSON in the safetensors header. Returns the file's sha256."""
    from safetensors.torch import save_file

    sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in ckpt["state_dict"].items()}
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "trainer_state")}
    save_file(sd, str(path), metadata={"fervid": json.dumps(_plain(meta))})
    return file_sha256(path)


def load_model(name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu") -> nn.Module:
    """Load a bundled model by name (``"default"``, ``"fast"``) or a checkpoint file
    (``.pt`` from ``fervid train`` or ``.safetensors``). Returns the model in eval mode with
    ``.preprocess``, ``.temperature`` and ``.checkpoint_meta`` attached."""
    name = str(name_or_path)
    bundled = bundled_models()
    if name in bundled and not Path(name).exists():
        b = bundled[name]
        ckpt = load_safetensors_checkpoint(WEIGHTS_DIR / b.file, sha256=b.sha256)
        ckpt["source"] = f"bundled:{b.name}"
    else:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no bundled model named {name!r} (have: {sorted(bundled)}) and no such file")
        if path.suffix == ".safetensors":
            ckpt = load_safetensors_checkpoint(path)
        else:
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
                raise ValueError(f"{path}: not a readable fervid checkpoint ({type(e).__name__}: {e})") from e
        ckpt["source"] = str(path)
    model = model_from_checkpoint(ckpt)
    model.checkpoint_meta["source"] = ckpt["source"]
    return model.to(device)
