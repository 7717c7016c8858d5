"""Self-describing checkpoints and ``load_model(name_or_path)``.

A fervid checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)
holding the architecture name and arguments, labels, preprocessing, training config,
metrics, calibration temperature and the weights. Bundled models are the same
metadata plus weights in safetensors, verified against a sha256 before loading.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from fervid.data.preprocess import PreprocessConfig
from fervid.errors import CheckpointError, OutputError, UserFileNotFoundError, UserValueError
from fervid.models import (
    attach_meta,
    checkpoint_meta,
    create_model,
    model_args,
    model_name,
    model_preprocess,
    model_temperature,
)
from fervid.models.bundled import bundled_models, file_sha256, verified_file
from fervid.models.onnx_model import OnnxModel
from fervid.safety import atomic_write, check_input_file, output_error
from fervid.version import __version__

FORMAT = "fervid-checkpoint"
FORMAT_VERSION = 1


def make_checkpoint(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """The self-describing dict for ``model`` (created by :func:`fervid.models.create_model`)."""
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fervid_version": __version__,
        "model": model_name(model),
        "model_args": _plain(model_args(model)),
        "preprocess": model_preprocess(model).to_dict(),
        "labels": list(model_preprocess(model).labels),
        "temperature": model_temperature(model),
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
    """``torch.save`` through :func:`fervid.safety.atomic_write`: an interrupted or failed save
    (full disk, no permission) never leaves a broken or temporary file, and the error is an
    :class:`~fervid.errors.OutputError` naming ``path``. Saving to a file object also keeps
    torch's own writer from turning ``ENOSPC`` into an opaque ``RuntimeError``."""
    try:
        with atomic_write(path) as f:
            torch.save(obj, f)
    except RuntimeError as e:
        # torch's zip writer turns a failed write (ENOSPC...) into "unexpected pos" on exit;
        # the OSError that started it is its context
        cause = e.__context__
        if isinstance(cause, OSError):
            raise output_error(cause, path) from e
        raise OutputError(f"cannot write {path}: torch.save failed ({e})") from e


_REQUIRED = {"model": str, "model_args": dict, "preprocess": dict, "labels": list, "state_dict": dict}


def _check_structure(ckpt: Any, src: str) -> None:
    """The checkpoint dict's keys and types, and its scalar fields, before anything is built."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{src}: not a fervid checkpoint (the file holds a {type(ckpt).__name__}, not a checkpoint dict)"
        )
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{src}: not a fervid checkpoint (missing format tag)")
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{src}: damaged fervid checkpoint: no {', '.join(repr(k) for k in missing)} entry")
    for key, typ in _REQUIRED.items():
        if not isinstance(ckpt[key], typ):
            raise CheckpointError(
                f"{src}: damaged fervid checkpoint: {key!r} is a {type(ckpt[key]).__name__}, expected a {typ.__name__}"
            )
    labels = ckpt["labels"]
    if len(labels) < 2 or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
        raise CheckpointError(f"{src}: 'labels' must be two or more distinct names, got {labels!r}")
    t = ckpt.get("temperature", 1.0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise CheckpointError(
            f"{src}: temperature must be a finite number > 0, got {t!r} "
            "(it divides the logits: <= 0 would invert or break the probabilities)"
        )
    bad = [k for k, v in ckpt["state_dict"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{src}: 'state_dict' entries that are not tensors: {bad[:5]}")


def _preprocess(ckpt: dict[str, Any], src: str) -> PreprocessConfig:
    try:
        pre = PreprocessConfig.from_dict(ckpt["preprocess"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{src}: bad 'preprocess' entry ({e})") from e
    ok = (
        isinstance(pre.input_size, int)
        and not isinstance(pre.input_size, bool)
        and 8 <= pre.input_size <= 4096
        and pre.in_chans in (1, 3)
        and all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in (pre.mean, pre.std, pre.crop_pct, pre.face_margin)
        )
        and pre.std > 0
        and 0 < pre.crop_pct <= 1
        and pre.face_margin >= 0
    )
    if not ok:
        raise CheckpointError(f"{src}: bad 'preprocess' entry {ckpt['preprocess']!r}")
    if list(pre.labels) != list(ckpt["labels"]):
        raise CheckpointError(f"{src}: 'labels' {ckpt['labels']} and 'preprocess.labels' {list(pre.labels)} disagree")
    return pre


def check_state_dict(model: nn.Module, state_dict: dict[str, Any], src: str) -> None:
    """``state_dict`` against ``model``'s own: the same keys, shapes and finite values, else a
    :class:`CheckpointError` that says which (a label count that does not match the
    classifier is named as such)."""
    want = model.state_dict()
    missing = [k for k in want if k not in state_dict]
    unexpected = [k for k in state_dict if k not in want]
    if missing or unexpected:
        parts = (
            [f"missing {len(missing)} weights ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"]
            if missing
            else []
        )
        parts += (
            [f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''})"]
            if unexpected
            else []
        )
        raise CheckpointError(
            f"{src}: weights do not match the {getattr(model, 'model_name', 'model')} architecture: {'; '.join(parts)}"
        )
    n_labels = len(getattr(model, "preprocess", PreprocessConfig()).labels)
    for k, w in want.items():
        v = state_dict[k]
        if tuple(v.shape) == tuple(w.shape):
            continue
        if w.ndim >= 1 and w.shape[0] == n_labels and v.ndim == w.ndim and tuple(v.shape[1:]) == tuple(w.shape[1:]):
            raise CheckpointError(f"{src}: {n_labels} labels, but the classifier weight {k} has {v.shape[0]} outputs")
        raise CheckpointError(
            f"{src}: weight {k} has shape {tuple(v.shape)}, the architecture expects {tuple(w.shape)}"
        )
    for k, v in state_dict.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{src}: weight {k} holds NaN or infinite values; the model would predict NaN")


def model_from_checkpoint(ckpt: dict[str, Any], source: str | None = None) -> nn.Module:
    """Build and load the model a checkpoint dict describes, validating it first: structure,
    preprocessing, temperature > 0, the architecture's weight names and shapes, the label
    count against the classifier, finite weights. Each failure is a :class:`CheckpointError`
    naming ``source`` (default: the checkpoint's own ``source`` entry)."""
    src = str(source or (ckpt.get("source") if isinstance(ckpt, dict) else None) or "checkpoint")
    _check_structure(ckpt, src)
    pre = _preprocess(ckpt, src)
    args = dict(ckpt["model_args"])
    args.pop("num_classes", None)
    args.pop("in_chans", None)
    try:
        model = create_model(
            ckpt["model"], labels=tuple(ckpt["labels"]), in_chans=pre.in_chans, input_size=pre.input_size, **args
        )
    except (KeyError, TypeError, ValueError) as e:  # unknown architecture or arguments it does not take
        raise CheckpointError(f"{src}: cannot build its model {ckpt['model']!r} ({e})") from e
    attach_meta(model, preprocess=pre)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    check_state_dict(model, sd, src)
    model.load_state_dict(sd)
    attach_meta(
        model,
        temperature=float(ckpt.get("temperature", 1.0)),
        checkpoint_meta={k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "trainer_state")},
    )
    return model.eval()


def load_safetensors_checkpoint(path: str | os.PathLike, sha256: str | None = None) -> dict[str, Any]:
    from safetensors import safe_open

    path = Path(path)
    check_input_file(path, "model")
    if sha256 is not None:
        got = file_sha256(path)
        if got != sha256:
            raise UserValueError(
                f"{path}: sha256 {got} does not match the expected {sha256}; the file is corrupt or was modified"
            )
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("fervid")
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type for any damage
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from e
    if raw is None:
        raise CheckpointError(f"{path}: a safetensors file without fervid's metadata (no 'fervid' header entry)")
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise CheckpointError(f"{path}: the 'fervid' metadata is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the 'fervid' metadata is a {type(meta).__name__}, not an object")
    meta["state_dict"] = sd
    return meta


def save_safetensors_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike, half: bool = True) -> str:
    """Write weights (fp16 by default: half the size, no accuracy change at 48x48) plus
    the metadata as JSON in the safetensors header. Returns the file's sha256."""
    from safetensors.torch import save

    sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in ckpt["state_dict"].items()}
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "trainer_state")}
    blob = save(sd, metadata={"fervid": json.dumps(_plain(meta), allow_nan=False)})
    with atomic_write(path) as f:
        f.write(blob)
    return hashlib.sha256(blob).hexdigest()


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load`` of a ``.pt`` checkpoint (``weights_only``: a pickle never runs code), as
    a dict; anything else (a damaged file, a bare tensor or list) is a :class:`CheckpointError`
    naming the file."""
    path = Path(path)
    check_input_file(path, "model")
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        if isinstance(e, pickle.UnpicklingError):  # torch's message runs to a page: say it in one line
            detail = "not a torch file, or it holds objects beyond tensors and plain data, which are never unpickled"
        else:
            detail = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
        raise CheckpointError(f"{path}: not a readable fervid checkpoint ({detail})") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path}: not a fervid checkpoint (the file holds a {type(ckpt).__name__}, not a checkpoint dict)"
        )
    return ckpt


def read_resume_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """A training run's ``last.pt`` for ``--resume``, checked against the model being trained
    (weights, optimizer and trainer state present; same architecture) before anything is
    loaded: a damaged or foreign file is a named :class:`CheckpointError`, not a traceback."""
    ckpt = read_checkpoint(path)
    missing = [k for k in ("state_dict", "optimizer", "trainer_state") if not isinstance(ckpt.get(k), dict)]
    if missing:
        raise CheckpointError(
            f"{path}: cannot resume from it: no {', '.join(missing)} (a damaged file, or not a "
            "run's last.pt); use --overwrite to start the run again"
        )
    st = ckpt["trainer_state"]
    if not isinstance(st.get("epoch"), int) or not isinstance(st.get("weights"), list):
        raise CheckpointError(f"{path}: cannot resume from it: damaged trainer state")
    check_state_dict(model, ckpt["state_dict"], str(path))
    return ckpt


def load_checkpoint(name_or_path: str | os.PathLike = "default") -> dict[str, Any]:
    """The checkpoint dict (weights + metadata, ``"source"`` added) behind a bundled model name
    (sha256-checked) or a ``.pt`` / ``.safetensors`` file: the one resolver of model names."""
    name = str(name_or_path)
    bundled = bundled_models()
    if name in bundled and not Path(name).exists():
        b = bundled[name]
        # verified_file: a missing, damaged or replaced file (a folder in its place) is a
        # CheckpointError naming it; the weights folder is read where the catalogue reads it
        ckpt = load_safetensors_checkpoint(verified_file(b.name, b.file, b.sha256))
        ckpt["source"] = f"bundled:{b.name}"
        return ckpt
    path = Path(name)
    check_input_file(path, "model")  # a FIFO or device: refused before anything opens it
    if not path.is_file():
        raise UserFileNotFoundError(f"no bundled model named {name!r} (have: {sorted(bundled)}) and no such file")
    if path.suffix.lower() == ".onnx":
        raise UserValueError(
            f"{path}: an ONNX export holds no checkpoint (weights and training metadata); "
            "use the .pt or .safetensors it was exported from"
        )
    ckpt = load_safetensors_checkpoint(path) if path.suffix == ".safetensors" else read_checkpoint(path)
    ckpt["source"] = str(path)
    return ckpt


def load_model(name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu") -> nn.Module:
    """Load a bundled model by name (``"default"``, ``"fast"``) or a checkpoint file
    (``.pt`` from ``fervid train``, ``.safetensors``, or an ``.onnx`` export, run by ONNX
    Runtime on the CPU through :class:`fervid.models.onnx_model.OnnxModel`). Returns the model in eval
    mode with ``.preprocess``, ``.temperature`` and ``.checkpoint_meta`` attached."""
    if str(name_or_path).lower().endswith(".onnx") and Path(name_or_path).is_file():
        # An exported model (fp32 or int8) behind the same interface: evaluation and TTA accept
        # every model `fervid predict --model` accepts.
        return OnnxModel(name_or_path)
    ckpt = load_checkpoint(name_or_path)
    model = model_from_checkpoint(ckpt)
    checkpoint_meta(model)["source"] = ckpt["source"]
    return model.to(device)
