"""Inference backends behind one small interface: a classifier that maps grey face crops
(uint8 ``N x H x W``) to logits.

``torch``
    :class:`TorchClassifier`: the PyTorch model itself (always available; any device).
``onnx``
    :class:`OnnxClassifier`: an onnxruntime CPU session on an exported model (see
    :mod:`fervid.inference.onnx`). Give it a ``.onnx`` file made by ``fervid export`` (labels,
    preprocessing and temperature come from its metadata), or a bundled name / checkpoint,
    which is exported once to ``~/.cache/fervid/onnx/<sha256>.onnx`` ($FERVID_CACHE or
    $XDG_CACHE_HOME move it) and reused.
``auto``
    ``onnx`` when onnxruntime is installed and the device is the CPU, else ``torch``:
    onnxruntime was 1.5-3x faster than PyTorch for both bundled models on a 2-core CPU
    (``fervid bench``; benchmarks/realtime.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from fervid.data.preprocess import PreprocessConfig
from fervid.inference.logits import tta_logits
from fervid.inference.onnx import OPSET, normalize_faces, save_fp32
from fervid.runtime import cache_dir

BACKENDS: tuple[str, ...] = ("torch", "onnx", "auto")


class Classifier(Protocol):
    labels: tuple[str, ...]
    preprocess: PreprocessConfig
    temperature: float

    def logits(self, faces: np.ndarray) -> np.ndarray:
        """uint8 ``N x H x W`` grey faces (any size; resized per ``preprocess``) -> ``N x K`` float32."""
        ...


class TorchClassifier:
    """A PyTorch model as a :class:`Classifier`."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", batch_size: int = 256):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.preprocess: PreprocessConfig = model.preprocess
        self.labels = tuple(self.preprocess.labels)
        self.temperature = float(getattr(model, "temperature", 1.0))

    def logits(self, faces: np.ndarray) -> np.ndarray:
        # The one torch inference path (fervid.inference.logits), fp32: the same numbers as evaluation.
        return tta_logits(self.model, faces, "none", self.device, self.batch_size).numpy()


class OnnxClassifier:
    """An exported fervid model run by onnxruntime on the CPU.

    Args:
        path: a ``.onnx`` file written by :func:`fervid.export.onnx.export_onnx` (fp32 or int8).
        threads: onnxruntime intra-op threads (``None``: onnxruntime's default, all cores).
        batch_size: faces per ``session.run`` call.
    """

    backend = "onnx"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, batch_size: int = 256):
        from fervid.inference.onnx import onnx_session, read_metadata

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such ONNX model: {self.path}")
        meta = read_metadata(self.path)
        self.preprocess: PreprocessConfig = meta["preprocess"]
        self.labels = tuple(meta["labels"])
        self.temperature = float(meta["temperature"])
        self.quantization = str(meta.get("quantization", "none"))
        self.batch_size = batch_size
        self.session = onnx_session(self.path, threads)
        self._input = self.session.get_inputs()[0].name

    def __repr__(self) -> str:
        return f"OnnxClassifier({str(self.path)!r}, quantization={self.quantization!r})"

    def logits(self, faces: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(faces), self.batch_size):
            x = normalize_faces(faces[i:i + self.batch_size], self.preprocess)
            out.append(np.asarray(self.session.run(None, {self._input: x})[0], np.float32))
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)


def onnx_available() -> bool:
    """Whether onnxruntime (and onnx, for export) are installed."""
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def resolve_backend(backend: str, device: str = "cpu") -> str:
    """``"auto"`` -> ``"onnx"`` on the CPU when onnxruntime is installed, else ``"torch"``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    return "onnx" if str(device).startswith("cpu") and onnx_available() else "torch"


def _model_digest(model: str | os.PathLike) -> str:
    """sha256 identifying a bundled model or checkpoint file (plus the export format version)."""
    from fervid.models.checkpoint import bundled_models, file_sha256

    name = str(model)
    bundled = bundled_models()
    if name in bundled and not Path(name).exists():
        sha = bundled[name].sha256
    elif Path(name).is_file():
        sha = file_sha256(name)
    else:
        raise FileNotFoundError(f"no bundled model named {name!r} (have: {sorted(bundled)}) and no such file")
    return hashlib.sha256(f"{sha}:opset{OPSET}:fp32:v1".encode()).hexdigest()[:32]


def cached_onnx(model: str | os.PathLike) -> Path:
    """An fp32 ONNX export of a bundled model or checkpoint, made once and cached."""
    path = cache_dir("onnx") / f"{_model_digest(model)}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            save_fp32(model, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def load_classifier(model: str | os.PathLike | torch.nn.Module = "default", backend: str = "torch",
                    device: str = "cpu", threads: int | None = None) -> Classifier:
    """A classifier for a bundled model name, a checkpoint path, a loaded torch model or
    (``onnx``/``auto`` backends) an exported ``.onnx`` file.

    Args:
        backend: ``"torch"``, ``"onnx"`` or ``"auto"`` (see the module docstring).
        device: the torch device; the onnx backend runs on the CPU only.
        threads: onnxruntime intra-op threads (onnx backend).
    """
    is_onnx_file = isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")
    chosen = "onnx" if backend == "auto" and is_onnx_file else resolve_backend(backend, device)
    if backend == "auto" and chosen == "onnx" and not is_onnx_file:
        if isinstance(model, torch.nn.Module):
            chosen = "torch"  # an in-memory model: no export behind the user's back
        else:
            try:
                return OnnxClassifier(cached_onnx(model), threads)
            except (FileNotFoundError, ValueError):
                raise  # a bad model name or path: the same error torch would give
            except Exception as e:  # noqa: BLE001 - a model the exporter cannot handle: stay on torch
                import warnings

                warnings.warn(f"backend 'auto': ONNX export of {model} failed ({e}); using torch", stacklevel=2)
                chosen = "torch"
    if chosen == "torch":
        if is_onnx_file:
            raise ValueError(f"{model}: an .onnx file needs backend='onnx' (or 'auto')")
        from fervid.models.checkpoint import load_model

        m = load_model(model, device=device) if not isinstance(model, torch.nn.Module) else model
        return TorchClassifier(m, device)
    # onnx
    if not onnx_available():
        raise ImportError("backend 'onnx' needs onnxruntime and onnx: pip install onnxruntime onnx")
    if not str(device).startswith("cpu") and device != "auto":
        raise ValueError(f"backend 'onnx' runs on the CPU only (got device={device!r}); use backend='torch'")
    if isinstance(model, torch.nn.Module):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="fervid-onnx-") as tmp:
            p = Path(tmp) / "model.onnx"
            save_fp32(model, p)
            return OnnxClassifier(p, threads)  # the session holds the model in memory
    path = Path(model) if is_onnx_file else cached_onnx(model)
    return OnnxClassifier(path, threads)
