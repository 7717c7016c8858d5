"""The weights shipped inside the package, without torch: THE catalogue of every bundled file.

``fervid/weights/manifest.json`` lists them with their sha256; this module is its only reader.
Each bundled emotion model has its weights twice, both verified by sha256 before use:
safetensors (what training, fine-tuning, evaluation and export load with torch) and an fp32
ONNX export of the same weights (what inference runs on onnxruntime, so that ``pip install
fervid`` predicts without torch; tests/test_torch_free.py checks that the two agree). The
YuNet face detector ships twice too: a dynamic-shape file for onnxruntime and OpenCV's export.

As timm ties pretrained weights to architectures (``resnet18.a1_in1k``), every bundled model
names the registered architecture it loads into, and ``ARCH.NAME`` (``resnet18_fer.ferplus``) is
accepted wherever a bundled name is::

    >>> from fervid.models.bundled import weight_files, verified_weight
    >>> [(w.name, w.architecture, w.runtime) for w in weight_files()][:2]
    [('default', 'resnet18_fer', 'torch'), ('default', 'resnet18_fer', 'onnxruntime')]
    >>> verified_weight("yunet", "onnxruntime").name   # sha256 checked
    'yunet_s_dynamic.onnx'
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fervid.errors import CheckpointError, UnknownNameError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

RUNTIMES = ("torch", "onnxruntime", "opencv")
"""What loads a weight file: torch (safetensors), onnxruntime or OpenCV (ONNX)."""


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


@dataclass(frozen=True)
class BundledModel:
    """A bundled emotion model: its safetensors and, when listed, its fp32 ONNX export."""

    name: str
    file: str
    sha256: str
    description: str
    onnx: str = ""
    """The fp32 ONNX export of the same weights ('' when the manifest lists none)."""
    onnx_sha256: str = ""
    architecture: str = ""
    """The registered architecture (``create_model`` name) the weights load into."""
    licence: str = ""

    @property
    def pretrained_name(self) -> str:
        """``ARCH.NAME``, the timm-style name of these weights (``fast_cnn.fast``)."""
        return f"{self.architecture}.{self.name}" if self.architecture else self.name


@dataclass(frozen=True)
class WeightFile:
    """One bundled weight file: which weights, for which architecture and runtime, its sha256."""

    name: str
    """What users call the weights: a bundled model (``default``, ``fast``) or ``yunet``."""
    architecture: str
    runtime: str
    """One of :data:`RUNTIMES`."""
    file: str
    """Relative to the weights folder."""
    sha256: str
    description: str = ""
    licence: str = ""

    @property
    def path(self) -> Path:
        """Where the file is (not checked: see :meth:`verified_path`)."""
        return WEIGHTS_DIR / self.file

    def verified_path(self) -> Path:
        """:attr:`path` after checking that it exists and has the manifest's sha256."""
        return verified_file(self.name, self.file, self.sha256)


def _model(e: dict[str, Any]) -> BundledModel:
    return BundledModel(
        str(e["name"]),
        str(e["file"]),
        str(e["sha256"]),
        str(e.get("description", "")),
        str(e.get("onnx", "")),
        str(e.get("onnx_sha256", "")),
        str(e.get("architecture", "")),
        str(e.get("licence", "")),
    )


def _detector(e: dict[str, Any]) -> WeightFile:
    return WeightFile(
        str(e["name"]),
        str(e.get("architecture", e["name"])),
        str(e["runtime"]),
        str(e["file"]),
        str(e["sha256"]),
        str(e.get("description", "")),
        str(e.get("licence", "")),
    )


def _read_manifest() -> tuple[list[BundledModel], dict[str, str], list[WeightFile]]:
    """The manifest's models, aliases (alias -> model name) and detector files; all empty when
    the weights folder has no manifest (nothing is bundled). Read on every call: tests and
    tools point :data:`WEIGHTS_DIR` at a copy."""
    manifest = WEIGHTS_DIR / "manifest.json"
    if not manifest.is_file():
        return [], {}, []
    try:
        data = json.loads(manifest.read_text())
        models = [_model(e) for e in data["models"]]
        aliases = {str(a): str(t) for a, t in data.get("aliases", {}).items()}
        detectors = [_detector(e) for e in data.get("detectors", [])]
        unknown = sorted(set(aliases.values()) - {m.name for m in models})
        if unknown:
            raise KeyError(f"aliases of unknown models {unknown}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(
            f"{manifest}: broken bundled-model manifest ({type(e).__name__}: {e}); reinstall fervid"
        ) from e
    return models, aliases, detectors


def bundled_models(aliases: bool = True) -> dict[str, BundledModel]:
    """The emotion models shipped inside the package, by name, in the manifest's order; with
    ``aliases`` also under their aliases (``fast-cnn-fer2013``) and ``ARCH.NAME`` names
    (``fast_cnn.fast``)."""
    models, alias_map, _ = _read_manifest()
    out = {m.name: m for m in models}
    if aliases:
        for alias, target in alias_map.items():
            out[alias] = out[target]
        for m in models:
            out.setdefault(m.pretrained_name, m)
    return out


def weight_files() -> list[WeightFile]:
    """Every bundled weight file: each model's safetensors (torch) and ONNX (onnxruntime), then
    the detectors' files."""
    models, _, detectors = _read_manifest()
    out: list[WeightFile] = []
    for m in models:
        out.append(WeightFile(m.name, m.architecture, "torch", m.file, m.sha256, m.description, m.licence))
        if m.onnx:
            out.append(
                WeightFile(m.name, m.architecture, "onnxruntime", m.onnx, m.onnx_sha256, m.description, m.licence)
            )
    return out + detectors


def weight_file(name: str, runtime: str) -> WeightFile:
    """The catalogue entry of bundled weights ``name`` (a model, alias or ``yunet``) for
    ``runtime`` (``torch``, ``onnxruntime`` or ``opencv``); :class:`UnknownNameError` if none."""
    models = bundled_models()
    canonical = models[name].name if name in models else name
    files = weight_files()
    for w in files:
        if w.name == canonical and w.runtime == runtime:
            return w
    have = sorted({f"{w.name} ({w.runtime})" for w in files})
    raise UnknownNameError(f"no bundled weights {name!r} for {runtime}; have: {', '.join(have)}")


def verified_weight(name: str, runtime: str) -> Path:
    """The path of bundled weights ``name`` for ``runtime``, after its sha256 check."""
    return weight_file(name, runtime).verified_path()


def pretrained(architecture: str | None = None) -> dict[str, list[str]]:
    """The bundled models' names by the architecture they load into (only ``architecture``'s
    when given): ``{"fast_cnn": ["fast"], "resnet18_fer": ["default", "ferplus"]}``."""
    out: dict[str, list[str]] = {}
    for m in bundled_models(aliases=False).values():
        if architecture is None or m.architecture == architecture:
            out.setdefault(m.architecture, []).append(m.name)
    return dict(sorted(out.items()))


def verified_file(name: str, file: str, sha256: str) -> Path:
    """``WEIGHTS_DIR / file`` after checking it exists and has the manifest's ``sha256``:
    tampered or damaged weights are an error naming the file, never loaded."""
    path = WEIGHTS_DIR / file
    if not path.is_file():
        raise CheckpointError(f"{path}: the bundled model {name!r} is missing (a broken install? reinstall fervid)")
    got = file_sha256(path)
    if got != sha256:
        raise CheckpointError(
            f"{path}: sha256 {got} does not match the expected {sha256}; the bundled weights "
            "are corrupt or were modified (reinstall fervid)"
        )
    return path


def bundled_onnx(name: str) -> Path | None:
    """The verified bundled ONNX file of a bundled model name (``None``: not a bundled name,
    or no ONNX listed for it)."""
    b = bundled_models().get(name)
    if b is None or not b.onnx:
        return None
    return verified_file(b.name, b.onnx, b.onnx_sha256)
