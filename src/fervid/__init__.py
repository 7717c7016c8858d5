"""fervid: facial emotion recognition, from FER2013 to a live camera.

Importing fervid does no work: no model is loaded, nothing is downloaded or created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_dataset": "data", "load_fer2013": "data", "load_image_folder": "data", "FERData": "data", "FERDataError": "data",
    "load_ferplus": "ferplus",
    "create_model": "models", "list_models": "models", "register_model": "models",
    "load_model": "checkpoint",
    "train": "train", "TrainConfig": "train",
    "FER2013": "emotions", "FERPLUS": "emotions",
    "EmotionRecognizer": "recognizer",
}

if TYPE_CHECKING:
    from .checkpoint import load_model
    from .data import FERData, FERDataError, load_dataset, load_fer2013, load_image_folder
    from .emotions import FER2013, FERPLUS
    from .ferplus import load_ferplus
    from .models import create_model, list_models, register_model
    from .recognizer import EmotionRecognizer
    from .train import TrainConfig, train


def __getattr__(name: str) -> Any:
    # PEP 562 lazy attributes: `import fervid` stays fast and side-effect free.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fervid' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
