"""The models shipped inside the package (``fervid/weights/manifest.json``), without torch.

Each bundled model has its weights twice, both verified by sha256 before use: safetensors
(what training, fine-tuning, evaluation and export load with torch) and an fp32 ONNX export
of the same weights (what inference runs on onnxruntime, so that ``pip install fervid``
predicts without torch; tests/test_torch_free.py checks that the two agree).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from fervid.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


@dataclass(frozen=True)
class BundledModel:
    name: str
    file: str
    sha256: str
    description: str
    onnx: str = ""
    """The fp32 ONNX export of the same weights ('' when the manifest lists none)."""
    onnx_sha256: str = ""


def bundled_models() -> dict[str, BundledModel]:
    """Models shipped inside the package (``fervid/weights/manifest.json``), aliases included."""
    manifest = WEIGHTS_DIR / "manifest.json"
    if not manifest.is_file():
        return {}
    try:
        entries = json.loads(manifest.read_text())
        out = {
            e["name"]: BundledModel(
                str(e["name"]),
                str(e["file"]),
                str(e["sha256"]),
                str(e.get("description", "")),
                str(e.get("onnx", "")),
                str(e.get("onnx_sha256", "")),
            )
            for e in entries["models"]
        }
        for alias, target in entries.get("aliases", {}).items():
            out[alias] = out[target]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(
            f"{manifest}: broken bundled-model manifest ({type(e).__name__}: {e}); reinstall fervid"
        ) from e
    return out


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
