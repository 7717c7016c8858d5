"""fervid: facial emotion recognition, from FER2013 to a live camera.

Importing fervid does no work: no model is loaded, nothing is downloaded or created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fervid.version import __version__

_LAZY = {
    "load_dataset": "data.datasets",
    "load_fer2013": "data.datasets",
    "load_image_folder": "data.datasets",
    "FERData": "data.datasets",
    "FERDataError": "data.datasets",
    "load_ferplus": "data.ferplus",
    "create_model": "models",
    "list_models": "models",
    "register_model": "models",
    "load_model": "models.checkpoint",
    "train": "training.loop",
    "TrainConfig": "training.config",
    "FER2013": "emotions",
    "FERPLUS": "emotions",
    "EmotionRecognizer": "inference.recognizer",
    "RecognizerConfig": "inference.config",
    "FervidError": "errors",
}

if TYPE_CHECKING:
    from fervid.data.datasets import (
        FERData,
        FERDataError,
        load_dataset,
        load_fer2013,
        load_image_folder,
    )
    from fervid.data.ferplus import load_ferplus
    from fervid.emotions import FER2013, FERPLUS
    from fervid.errors import FervidError
    from fervid.inference.config import RecognizerConfig
    from fervid.inference.recognizer import EmotionRecognizer
    from fervid.models import create_model, list_models, register_model
    from fervid.models.checkpoint import load_model
    from fervid.training.config import TrainConfig
    from fervid.training.loop import train


def __getattr__(name: str) -> Any:
    # PEP 562 lazy attributes: `import fervid` stays fast and side-effect free.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fervid' has no attribute {name!r}")


# Spelled out (not derived from _LAZY) so that linters and type checkers see the public names;
# tests/test_architecture.py checks that the two agree.
__all__ = [
    "__version__",
    "load_dataset",
    "load_fer2013",
    "load_image_folder",
    "FERData",
    "FERDataError",
    "load_ferplus",
    "create_model",
    "list_models",
    "register_model",
    "load_model",
    "train",
    "TrainConfig",
    "FER2013",
    "FERPLUS",
    "EmotionRecognizer",
    "RecognizerConfig",
    "FervidError",
]
