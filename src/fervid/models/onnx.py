"""ONNX models at run time: export of a torch model to an ONNX graph with fervid's metadata,
reading that metadata back, and onnxruntime sessions.

The graph takes the **normalised** input tensor, float32 ``N x C x S x S`` (input name
``input``, batch axis dynamic) and returns logits ``N x K`` (``logits``); the metadata
(``fervid.labels``, ``fervid.preprocess``, ``fervid.temperature``, ...) carries everything
needed to use it without fervid's Python objects. int8 quantization and parity reports are
in :mod:`fervid.export.onnx`; this module is what inference needs, (torch-free:
the YuNet detector uses its sessions); :class:`fervid.models.onnx_model.OnnxModel` lets an
exported file stand wherever a torch model does.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from fervid.data.preprocess import PreprocessConfig, to_array
from fervid.errors import CheckpointError, UserValueError
from fervid.models import model_preprocess, model_temperature
from fervid.safety import check_input_file
from fervid.version import __version__

if TYPE_CHECKING:
    import torch

    from fervid.data.preprocess import PreprocessConfig

OPSET = 17
META_PREFIX = "fervid."


def normalize_faces(faces: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 ``N x H x W`` grey faces -> float32 ``N x C x S x S`` input of an exported model:
    :func:`fervid.data.preprocess.to_array`, the numpy twin of ``to_tensor`` (no torch needed),
    so ONNX and PyTorch see the same tensor."""
    return to_array(np.asarray(faces), cfg)


def model_source(model: Any) -> str:
    """A short name for where a model came from (stored as ``fervid.source``)."""
    meta = getattr(model, "checkpoint_meta", None)
    if isinstance(meta, dict) and meta.get("source"):
        return str(meta["source"])
    return str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__


def to_onnx_bytes(model: torch.nn.Module, opset: int = OPSET, fold: bool = True) -> bytes:
    """``model`` (in eval mode) as an ONNX graph. ``fold=False`` keeps BatchNormalization as a
    node and skips constant folding, so the initializers are the module's own tensors
    (``benchmarks/bundle_onnx.py`` relies on it to store the fp16 weights losslessly)."""
    import torch

    cfg = model_preprocess(model)
    x = torch.zeros(2, int(cfg.in_chans), int(cfg.input_size), int(cfg.input_size))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) writes to a file object too; torch annotates
        # `f` for the dynamo exporter only.
        torch.onnx.export(
            model,
            (x,),
            buf,  # type: ignore[arg-type]
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
            do_constant_folding=fold,
            # PRESERVE skips the eval-mode peephole that folds BatchNorm into the convolutions
            training=torch.onnx.TrainingMode.EVAL if fold else torch.onnx.TrainingMode.PRESERVE,
        )
    return buf.getvalue()


def set_metadata(proto: Any, model: torch.nn.Module, quantization: str) -> None:
    cfg = model_preprocess(model)
    meta = {
        "labels": json.dumps(list(cfg.labels)),
        "preprocess": json.dumps(cfg.to_dict()),
        "temperature": repr(model_temperature(model)),
        "input": (
            f"float32 N x {cfg.in_chans} x {cfg.input_size} x {cfg.input_size}: grey face crop "
            f"(face_margin {cfg.face_margin} per side), pixels/255, minus mean {cfg.mean}, over std {cfg.std}"
        ),
        "quantization": quantization,
        "source": model_source(model),
    }
    try:
        meta["version"] = str(__version__)
    except ImportError:  # pragma: no cover
        pass
    del proto.metadata_props[:]
    for k, v in meta.items():
        e = proto.metadata_props.add()
        e.key, e.value = META_PREFIX + k, v
    proto.producer_name = "fervid"


def read_metadata(path_or_proto: Any, session: Any = None) -> dict[str, Any]:
    """The ``fervid.*`` metadata of an exported model (file path, bytes or ``ModelProto``):
    ``labels`` (tuple), ``preprocess`` (:class:`PreprocessConfig`), ``temperature`` (float),
    and the other entries as strings. Raises ``ValueError`` if the file was not made by fervid.
    A file is read with ``onnx`` when it is installed, else (a core install: onnxruntime only)
    through an onnxruntime session's model metadata, which holds the same entries (``session``:
    an onnxruntime session already open on that file, so that it is not loaded twice)."""
    name = str(path_or_proto) if isinstance(path_or_proto, (str, os.PathLike)) else "ONNX model"
    is_path = isinstance(path_or_proto, (str, os.PathLike))
    if is_path:
        check_input_file(path_or_proto, "model")
    if is_path and importlib.util.find_spec("onnx") is None:
        try:
            props = (session or onnx_session(path_or_proto)).get_modelmeta().custom_metadata_map
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error types (InvalidProtobuf, ...)
            raise CheckpointError(f"{name}: not a readable ONNX model ({type(e).__name__}: {e})") from e
        return _parse_metadata(dict(props), name)
    import onnx
    from google.protobuf.message import DecodeError

    try:
        if is_path:
            proto = onnx.load(str(path_or_proto), load_external_data=False)
        elif isinstance(path_or_proto, (bytes, bytearray)):
            proto = onnx.load_from_string(bytes(path_or_proto))
        else:
            proto = path_or_proto
    except (OSError, ValueError, RuntimeError, DecodeError) as e:  # DecodeError: not ValueError in protobuf >= 4
        raise CheckpointError(f"{name}: not a readable ONNX model ({type(e).__name__}: {e})") from e
    return _parse_metadata({p.key: p.value for p in proto.metadata_props}, name)


def _parse_metadata(props: dict[str, str], name: str) -> dict[str, Any]:
    raw = {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}
    if "labels" not in raw or "preprocess" not in raw:
        raise UserValueError(f"{name}: no fervid metadata (labels, preprocess); export it with `fervid export`")
    out: dict[str, Any] = dict(raw)
    try:
        out["labels"] = tuple(json.loads(raw["labels"]))
        out["preprocess"] = PreprocessConfig.from_dict(json.loads(raw["preprocess"]))
        out["temperature"] = float(raw.get("temperature", "1.0"))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{name}: damaged fervid metadata ({type(e).__name__}: {e})") from e
    if len(out["labels"]) < 2 or not all(isinstance(x, str) for x in out["labels"]):
        raise CheckpointError(f"{name}: fervid.labels must be two or more names, got {list(out['labels'])}")
    if not (math.isfinite(out["temperature"]) and out["temperature"] > 0):
        raise CheckpointError(f"{name}: fervid.temperature must be a finite number > 0, got {raw.get('temperature')}")
    return out


def onnx_session(model: str | os.PathLike | bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession`` (all graph optimisations; ``threads`` intra-op)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 -- onnxruntime's own types (Fail, InvalidGraph...) for a bad file
        name = "ONNX model" if isinstance(model, bytes) else str(model)
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{name}: onnxruntime cannot load this model ({msg})") from e


def save_fp32(model: torch.nn.Module, path: str | os.PathLike, opset: int = OPSET) -> None:
    """Write a loaded torch ``model`` as an fp32 ONNX file with fervid's metadata. The int8
    export with parity checks is :func:`fervid.export.onnx.export_onnx`."""
    import onnx

    m = model.eval().float().cpu()
    proto = onnx.load_from_string(to_onnx_bytes(m, opset))
    set_metadata(proto, m, "none")
    onnx.save(proto, str(path))


def metadata_json(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`read_metadata` of an exported model as JSON values (what the web page and other
    runtimes need to run it): ``labels`` (list), ``preprocess`` (dict), ``temperature``,
    ``input``, ``quantization`` (``"none"`` for fp32) and ``source``."""
    meta = read_metadata(path)
    return {
        "labels": list(meta["labels"]),
        "preprocess": meta["preprocess"].to_dict(),
        "temperature": meta["temperature"],
        "input": meta.get("input", ""),
        "quantization": meta.get("quantization", "none"),
        "source": meta.get("source", ""),
    }
