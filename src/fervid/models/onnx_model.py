"""An exported ``.onnx`` model wherever a torch model is expected (evaluation, TTA, AdaBN refusal)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from fervid.errors import UserFileNotFoundError
from fervid.models.onnx import onnx_session, read_metadata


class OnnxModel(nn.Module):
    """An exported fervid model (fp32 or int8 ``.onnx``) as a parameter-free ``nn.Module``:
    ``forward`` runs ONNX Runtime on the CPU, so the one torch inference path
    (:func:`fervid.inference.logits.tta_logits`, TTA included) and evaluation score it exactly
    like a checkpoint. Labels, preprocessing and temperature come from the file's metadata."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise UserFileNotFoundError(f"no such ONNX model: {self.path}")
        meta = read_metadata(self.path)
        self.preprocess = meta["preprocess"]
        self.temperature = float(meta["temperature"])
        self.model_name = "onnx"
        self.model_args: dict[str, Any] = {}
        self.checkpoint_meta: dict[str, Any] = {
            "source": self.path,
            "quantization": str(meta.get("quantization", "none")),
        }
        self.session = onnx_session(self.path, threads)
        self._input = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self._input: x.detach().float().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(np.asarray(out, np.float32)).to(x.device)
