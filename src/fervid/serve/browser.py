"""The ONNX files the web page runs in the browser: YuNet and the bundled emotion models, all
from the weights catalogue (:mod:`fervid.models.bundled`), the emotion models exported once
(fp32) into fervid's cache folder on first request."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from fervid.errors import FervidError
from fervid.inference.backends import cached_onnx
from fervid.models.bundled import BundledModel, bundled_models, bundled_onnx, verified_weight
from fervid.models.onnx import metadata_json
from fervid.runtime import cache_dir, torch_available

log = logging.getLogger("fervid.serve")

YUNET_RUNTIME = "onnxruntime"
"""The page runs YuNet on onnxruntime-web: the catalogue's dynamic-shape file."""


class BrowserModels:
    """The ONNX files the page runs: YuNet and the bundled emotion models, exported once
    (fp32) into the cache folder on first request.

    ``cache_dir``: another cache root (the exports go to its ``serve`` subfolder); by default
    fervid's own (:func:`fervid.runtime.cache_dir`, the one the CLI uses)."""

    def __init__(self, cache_dir: Path | None = None):
        self._cache_dir = cache_dir
        self.models: list[BundledModel] = list(bundled_models(aliases=False).values())
        self._locks = {m.name: threading.Lock() for m in self.models}
        self._meta: dict[str, dict[str, Any]] = {}
        self._yunet: Path | None = None

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def cache_folder(self) -> Path:
        """Where the page's exports are cached (not created here: the export writes it)."""
        return (self._cache_dir / "serve") if self._cache_dir is not None else cache_dir("serve")

    def yunet(self) -> Path | None:
        """The page's YuNet file, sha256 checked (once); ``None`` when it is missing or damaged
        (the reason goes to the ``fervid.serve`` log)."""
        if self._yunet is None:
            try:
                self._yunet = verified_weight("yunet", YUNET_RUNTIME)
            except FervidError as e:
                log.error("the page's face detector is unavailable: %s", e)
                return None
        return self._yunet

    def index(self) -> dict[str, Any]:
        """What the page offers: the detector and the models, with their URLs."""
        return {
            "detector": {"name": "yunet", "url": "/models/yunet.onnx", "available": self.yunet() is not None},
            "models": [
                {
                    "name": m.name,
                    "url": f"/models/{m.name}.onnx",
                    "metadata": f"/models/{m.name}.json",
                    "description": m.description,
                }
                for m in self.models
            ],
        }

    def path(self, name: str) -> Path:
        """The exported ONNX file of bundled model ``name`` (exported now if not cached; blocking)."""
        lock = self._locks[name]  # a bundled model, nothing else (KeyError otherwise)
        if not torch_available():  # a core install: the verified ONNX file shipped with the weights
            shipped = bundled_onnx(name)
            if shipped is not None:
                return shipped
        with lock:
            # The verified cache (issue 12): the bundled weights' sha256 is checked before the
            # export is served, the entry against its record (a damaged one is rebuilt), and
            # it is written atomically (other processes never see a partial file).
            return cached_onnx(name, folder=self.cache_folder)

    def metadata(self, name: str) -> dict[str, Any]:
        if name not in self._meta:
            self._meta[name] = {"name": name, "url": f"/models/{name}.onnx", **metadata_json(self.path(name))}
        return self._meta[name]
