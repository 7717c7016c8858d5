"""Inference backends behind one small interface: a classifier that maps grey face crops
(uint8 ``N x H x W``) to logits. ``torch`` is always there; ``onnx`` uses onnxruntime
(see :mod:`fervid.export`)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from .preprocess import PreprocessConfig, to_tensor


class Classifier(Protocol):
    labels: tuple[str, ...]
    preprocess: PreprocessConfig
    temperature: float

    def logits(self, faces: np.ndarray) -> np.ndarray:
        """uint8 ``N x H x W`` grey faces (any size; resized per ``preprocess``) -> ``N x K`` float32."""
        ...


class TorchClassifier:
    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", batch_size: int = 256):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.preprocess: PreprocessConfig = model.preprocess
        self.labels = tuple(self.preprocess.labels)
        self.temperature = float(getattr(model, "temperature", 1.0))

    @torch.inference_mode()
    def logits(self, faces: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(faces), self.batch_size):
            x = to_tensor(faces[i:i + self.batch_size], self.preprocess, self.device)
            out.append(self.model(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def load_classifier(model: str | torch.nn.Module = "default", backend: str = "torch", device: str = "cpu") -> Classifier:
    """A classifier for a bundled model name, a checkpoint path or a loaded model."""
    if backend == "torch":
        from .checkpoint import load_model

        m = load_model(model, device=device) if not isinstance(model, torch.nn.Module) else model
        return TorchClassifier(m, device)
    raise ValueError(f"unknown backend {backend!r}; available: torch")
