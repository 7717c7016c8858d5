"""The ONNX files the web page runs in the browser: YuNet from the package and the bundled
emotion models, exported once (fp32) into the cache folder on first request."""

from __future__ import annotations

import json
import os
import threading
from importlib.resources import files
from pathlib import Path
from typing import Any

from fervid.inference.backends import cached_onnx
from fervid.models.bundled import bundled_onnx
from fervid.models.onnx import read_metadata
from fervid.runtime import torch_available

YUNET_FILE = "yunet_s_dynamic.onnx"


def _cache_root() -> Path:
    env = os.environ.get("FERVID_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fervid"


def package_file(*parts: str) -> Path:
    return Path(str(files("fervid").joinpath(*parts)))


def _bundled_models() -> list[dict[str, str]]:
    """``[{"name", "sha256", "description"}]`` of the bundled models (the weights manifest)."""
    try:
        manifest = json.loads(package_file("weights", "manifest.json").read_text())
        return [
            {"name": m["name"], "sha256": m.get("sha256", ""), "description": m.get("description", "")}
            for m in manifest["models"]
        ]
    except (OSError, KeyError, ValueError):
        return [{"name": "default", "sha256": "", "description": ""}, {"name": "fast", "sha256": "", "description": ""}]


def _onnx_metadata(path: Path) -> dict[str, Any]:
    """The ``fervid.*`` metadata of an exported model (labels, preprocess, temperature): read
    by onnx, or by onnxruntime in a core install without it."""
    meta = read_metadata(path)
    return {
        "labels": list(meta["labels"]),
        "preprocess": meta["preprocess"].to_dict(),
        "temperature": meta["temperature"],
        "input": meta.get("input", ""),
        "quantization": meta.get("quantization", "none"),
        "source": meta.get("source", ""),
    }


class BrowserModels:
    """The ONNX files the page runs: YuNet from the package and the bundled emotion models,
    exported once (fp32) into the cache folder on first request."""

    def __init__(self, cache_dir: Path | None = None):
        self._cache_dir = cache_dir
        self.models = _bundled_models()
        self._locks = {m["name"]: threading.Lock() for m in self.models}
        self._meta: dict[str, dict[str, Any]] = {}

    @property
    def names(self) -> list[str]:
        return [m["name"] for m in self.models]

    def yunet(self) -> Path | None:
        p = package_file("weights", "yunet", YUNET_FILE)
        return p if p.is_file() else None

    def index(self) -> dict[str, Any]:
        """What the page offers: the detector and the models, with their URLs."""
        return {
            "detector": {"name": "yunet", "url": "/models/yunet.onnx", "available": self.yunet() is not None},
            "models": [
                {
                    "name": m["name"],
                    "url": f"/models/{m['name']}.onnx",
                    "metadata": f"/models/{m['name']}.json",
                    "description": m["description"],
                }
                for m in self.models
            ],
        }

    def path(self, name: str) -> Path:
        """The exported ONNX file of bundled model ``name`` (exported now if not cached; blocking)."""
        next(m for m in self.models if m["name"] == name)  # a bundled model, nothing else
        if not torch_available():  # a core install: the verified ONNX file shipped with the weights
            shipped = bundled_onnx(name)
            if shipped is not None:
                return shipped
        with self._locks[name]:
            # The verified cache (issue 12): the bundled weights' sha256 is checked before the
            # export is served, the entry against its record (a damaged one is rebuilt), and
            # it is written atomically (other processes never see a partial file).
            return cached_onnx(name, folder=(self._cache_dir or _cache_root()) / "serve")

    def metadata(self, name: str) -> dict[str, Any]:
        if name not in self._meta:
            self._meta[name] = {"name": name, "url": f"/models/{name}.onnx", **_onnx_metadata(self.path(name))}
        return self._meta[name]
