"""Export a fervid model to ONNX (fp32, or int8 with static QDQ quantization).

>>> from fervid.export import export_onnx
>>> report = export_onnx("fast", "fast.onnx")                        # fp32, dynamic batch
>>> report = export_onnx("default", "m.onnx", int8=True,
...                      calibration_data="shared/data/fer2013/fer2013.csv.gz")
>>> report.max_abs_prob_diff                                           # parity vs PyTorch

The ONNX graph takes the **normalised** input tensor, float32 ``N x C x S x S`` (input
name ``input``, batch axis dynamic) and returns logits ``N x K`` (``logits``). Everything
needed to use it without fervid's Python objects is in the model's ``metadata_props``:

``fervid.labels``        JSON list of the K emotion labels, in output order
``fervid.preprocess``    JSON :class:`~fervid.preprocess.PreprocessConfig` (size, mean, std, margin, ...)
``fervid.temperature``   calibration temperature: probabilities = softmax(logits / T)
``fervid.input``         a one-line description of the input tensor
``fervid.quantization``  ``none`` or e.g. ``int8-static-qdq-minmax-per-channel``
``fervid.source``        the model the file was exported from

int8 uses onnxruntime's **static** quantization (QDQ format, per-channel int8 weights,
uint8 activations) calibrated on a few hundred FER2013 Training images; dynamic int8 was
slower than fp32 on a 2-core CPU (it re-quantizes activations on every call).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from .preprocess import PreprocessConfig

OPSET = 17
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
META_PREFIX = "fervid."
KEEP_EDGES_FP32 = True
"""Default for int8 export: first conv and classifier head stay fp32. Quantizing them too
agreed with PyTorch's top label on only 96.0% of 1,000 PublicTest faces (default model);
see benchmarks/realtime.md."""


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how closely it matches PyTorch.

    Attributes:
        path: the ONNX file.
        int8: whether weights and activations are int8-quantized.
        n_check: faces used for the parity check (0: no check).
        max_abs_prob_diff: max |p_onnx - p_torch| over those faces and all classes.
        top1_agreement: share of those faces whose top label is the same in both.
        size_bytes: the file size.
    """

    path: Path
    int8: bool
    n_check: int
    max_abs_prob_diff: float
    top1_agreement: float
    size_bytes: int

    def summary(self) -> str:
        kind = "int8 (static QDQ)" if self.int8 else "fp32"
        s = f"wrote {self.path} ({kind}, {self.size_bytes / 1e6:.2f} MB)"
        if self.n_check:
            s += (f"; parity vs PyTorch on {self.n_check} faces: max abs prob diff {self.max_abs_prob_diff:.2e}, "
                  f"top-1 agreement {100 * self.top1_agreement:.2f}%")
        return s


# --------------------------------------------------------------------------- helpers

def normalize_faces(faces: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 ``N x H x W`` grey faces -> float32 ``N x C x S x S`` input of an exported model
    (numpy twin of :func:`fervid.preprocess.to_tensor`; other sizes are resized with OpenCV's
    area/linear interpolation, which differs slightly from torch's antialiased resize)."""
    faces = np.asarray(faces)
    if faces.ndim == 2:
        faces = faces[None]
    s = int(cfg.input_size)
    if faces.shape[1:] != (s, s):
        import cv2

        interp = cv2.INTER_AREA if max(faces.shape[1:]) > s else cv2.INTER_LINEAR
        faces = np.stack([cv2.resize(f, (s, s), interpolation=interp) for f in faces]) if len(faces) \
            else np.zeros((0, s, s), np.uint8)
    x = faces.astype(np.float32)[:, None]
    x *= np.float32(1.0 / (255.0 * cfg.std))
    x -= np.float32(cfg.mean / cfg.std)
    if cfg.in_chans != 1:
        x = np.repeat(x, cfg.in_chans, axis=1)
    return np.ascontiguousarray(x)


def _softmax(z: np.ndarray, t: float) -> np.ndarray:
    z = np.asarray(z, np.float64) / t
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _load_torch_model(model: Any) -> torch.nn.Module:
    import torch

    from .checkpoint import load_model

    m = model if isinstance(model, torch.nn.Module) else load_model(model, device="cpu")
    return m.eval().float().cpu()


def model_source(model: Any) -> str:
    """A short name for where a model came from (stored as ``fervid.source``)."""
    meta = getattr(model, "checkpoint_meta", None)
    if isinstance(meta, dict) and meta.get("source"):
        return str(meta["source"])
    return str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__


def default_calibration_data() -> Path | None:
    """The FER2013 CSV to calibrate on when none is given: ``$FERVID_DATA/fer2013/``, else
    ``shared/data/fer2013/`` or ``../shared/data/fer2013/`` from the working directory
    (``fer2013.csv.gz`` or ``fer2013.csv``); ``None`` if there is none."""
    roots = ([Path(os.environ["FERVID_DATA"])] if os.environ.get("FERVID_DATA") else []) + \
        [Path("shared/data"), Path("../shared/data")]
    for root in roots:
        for name in ("fer2013.csv.gz", "fer2013.csv"):
            if (root / "fer2013" / name).is_file():
                return root / "fer2013" / name
    return None


def load_calibration_faces(path: str | os.PathLike | None = None, n: int = 500, split: str = "Training",
                           seed: int = 0) -> np.ndarray:
    """``n`` uint8 faces for int8 calibration: a random (seeded) sample of ``split`` from a
    dataset fervid can read (FER2013 CSV, image folder), or all images of a ``.npy`` array
    (``N x H x W`` uint8). ``path=None``: see :func:`default_calibration_data`."""
    if path is None:
        path = default_calibration_data()
        if path is None:
            raise ValueError("int8 export needs calibration images: pass --calibration-data PATH "
                             "(the FER2013 CSV, an image folder or an .npy of uint8 faces) or set FERVID_DATA")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"calibration data {path} does not exist")
    if path.suffix == ".npy":
        faces = np.load(path)
        if faces.dtype != np.uint8 or faces.ndim != 3:
            raise ValueError(f"{path}: expected a uint8 N x H x W array, got {faces.dtype} {faces.shape}")
        return faces[:n]
    from .data import load_dataset

    data = load_dataset(path)
    idx = np.flatnonzero(data.splits == split)
    if len(idx) == 0:
        idx = np.arange(len(data))  # no split column: use everything
    if len(idx) == 0:
        raise ValueError(f"{path}: no images to calibrate on")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return data.images[pick]


def _torch_to_onnx_bytes(model: torch.nn.Module, opset: int = OPSET) -> bytes:
    import torch

    cfg = model.preprocess
    x = torch.zeros(2, int(cfg.in_chans), int(cfg.input_size), int(cfg.input_size))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    return buf.getvalue()


def _set_metadata(proto: Any, model: torch.nn.Module, quantization: str) -> None:
    cfg = model.preprocess
    meta = {
        "labels": json.dumps(list(cfg.labels)),
        "preprocess": json.dumps(cfg.to_dict()),
        "temperature": repr(float(getattr(model, "temperature", 1.0))),
        "input": (f"float32 N x {cfg.in_chans} x {cfg.input_size} x {cfg.input_size}: grey face crop "
                  f"(face_margin {cfg.face_margin} per side), pixels/255, minus mean {cfg.mean}, over std {cfg.std}"),
        "quantization": quantization,
        "source": model_source(model),
    }
    try:
        from . import __version__
        meta["version"] = str(__version__)
    except ImportError:  # pragma: no cover
        pass
    del proto.metadata_props[:]
    for k, v in meta.items():
        e = proto.metadata_props.add()
        e.key, e.value = META_PREFIX + k, v
    proto.producer_name = "fervid"


def read_metadata(path_or_proto: Any) -> dict[str, Any]:
    """The ``fervid.*`` metadata of an exported model (file path, bytes or ``ModelProto``):
    ``labels`` (tuple), ``preprocess`` (:class:`PreprocessConfig`), ``temperature`` (float),
    and the other entries as strings. Raises ``ValueError`` if the file was not made by fervid."""
    import onnx

    from .preprocess import PreprocessConfig

    if isinstance(path_or_proto, (str, os.PathLike)):
        proto = onnx.load(str(path_or_proto), load_external_data=False)
    elif isinstance(path_or_proto, (bytes, bytearray)):
        proto = onnx.load_from_string(bytes(path_or_proto))
    else:
        proto = path_or_proto
    raw = {p.key[len(META_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(META_PREFIX)}
    if "labels" not in raw or "preprocess" not in raw:
        raise ValueError(f"{path_or_proto if isinstance(path_or_proto, (str, os.PathLike)) else 'ONNX model'}: "
                         "no fervid metadata (labels, preprocess); export it with `fervid export`")
    out: dict[str, Any] = dict(raw)
    out["labels"] = tuple(json.loads(raw["labels"]))
    out["preprocess"] = PreprocessConfig.from_dict(json.loads(raw["preprocess"]))
    out["temperature"] = float(raw.get("temperature", "1.0"))
    return out


class _FaceReader:
    """onnxruntime CalibrationDataReader over normalised faces, in small batches."""

    def __init__(self, x: np.ndarray, batch: int = 32):
        self._x, self._batch = x, batch
        self._it: Iterator[dict[str, np.ndarray]] | None = None
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        assert self._it is not None
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter([{"input": self._x[i:i + self._batch]} for i in range(0, len(self._x), self._batch)])


def quantize_int8(fp32_path: str | os.PathLike, out: str | os.PathLike, calib: np.ndarray,
                  method: str = "minmax", per_channel: bool = True, keep_edges_fp32: bool = False) -> None:
    """Static int8 QDQ quantization of an exported fp32 model, calibrated on ``calib``
    (normalised inputs, float32 ``N x C x S x S``)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"unknown calibration method {method!r}; choose from {CALIBRATION_METHODS}")
    with tempfile.TemporaryDirectory(prefix="fervid-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            src = pre
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation only
            src = Path(fp32_path)
        extra: dict[str, Any] = {}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        exclude = _edge_nodes(src) if keep_edges_fp32 else []
        quantize_static(str(src), str(out), _FaceReader(calib), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=methods[method], extra_options=extra, nodes_to_exclude=exclude)


def _edge_nodes(path: str | os.PathLike) -> list[str]:
    """Names of the first convolution and the last Gemm/MatMul (the classifier head): the
    layers whose int8 error moves the top label most; they are a small share of the compute."""
    import onnx

    nodes = list(onnx.load(str(path)).graph.node)
    first = next((n.name for n in nodes if n.op_type == "Conv"), None)
    last = next((n.name for n in reversed(nodes) if n.op_type in ("Gemm", "MatMul")), None)
    return [n for n in (first, last) if n]


def onnx_session(model: str | os.PathLike | bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession`` (all graph optimisations; ``threads`` intra-op)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _probs_torch(model: torch.nn.Module, faces: np.ndarray) -> np.ndarray:
    import torch

    from .preprocess import to_tensor

    t = float(getattr(model, "temperature", 1.0))
    out = []
    with torch.inference_mode():
        for i in range(0, len(faces), 256):
            out.append(model(to_tensor(faces[i:i + 256], model.preprocess)).float().numpy())
    return _softmax(np.concatenate(out), t)


def _probs_onnx(sess: Any, faces: np.ndarray, cfg: PreprocessConfig, t: float) -> np.ndarray:
    out = [sess.run(None, {"input": normalize_faces(faces[i:i + 256], cfg)})[0] for i in range(0, len(faces), 256)]
    return _softmax(np.concatenate(out), t)


def compare_with_torch(onnx_model: str | os.PathLike | bytes, model: Any, faces: np.ndarray) -> tuple[float, float]:
    """``(max abs probability difference, top-1 agreement)`` of an exported model against
    the PyTorch model on uint8 ``faces``."""
    m = _load_torch_model(model)
    sess = onnx_session(onnx_model)
    pt = _probs_torch(m, faces)
    po = _probs_onnx(sess, faces, m.preprocess, float(getattr(m, "temperature", 1.0)))
    return float(np.abs(pt - po).max()), float((pt.argmax(1) == po.argmax(1)).mean())


def _check_faces(model: torch.nn.Module, calib: np.ndarray | None, n: int = 256) -> np.ndarray:
    if calib is not None and len(calib):
        return calib[:n]
    # no real faces at hand: smooth synthetic images (noise alone is far from the data)
    import cv2

    s = int(model.preprocess.input_size)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(64, 8, 8), dtype=np.uint8)
    return np.stack([cv2.resize(im, (s, s), interpolation=cv2.INTER_CUBIC) for im in small])


def export_onnx(model: Any, out: str | os.PathLike, *, int8: bool = False,
                calibration_data: str | os.PathLike | np.ndarray | None = None, n_calibration: int = 500,
                calibration_method: str = "minmax", per_channel: bool = True, opset: int = OPSET,
                check: bool = True, keep_edges_fp32: bool = KEEP_EDGES_FP32) -> ExportReport:
    """Export ``model`` (bundled name, checkpoint path or loaded torch model) to ONNX.

    Args:
        out: the ``.onnx`` file to write (its folder is created).
        int8: static QDQ int8 quantization calibrated on ``n_calibration`` Training images.
        calibration_data: a dataset path (see :func:`load_calibration_faces`) or a uint8
            ``N x H x W`` array of faces. Only used with ``int8`` (and for the parity check,
            which otherwise uses synthetic images).
        calibration_method: ``"minmax"`` (default), ``"entropy"`` or ``"percentile"``.
        keep_edges_fp32: leave the first convolution and the classifier head in fp32
            (see :data:`KEEP_EDGES_FP32`).
        check: compare the exported model's probabilities with PyTorch's, on 256
            PublicTest faces of the calibration dataset (or of :func:`default_calibration_data`),
            never the calibration images themselves; on synthetic images if there is no data.
    """
    import onnx

    m = _load_torch_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    calib: np.ndarray | None = None
    held_out: np.ndarray | None = None  # parity-check faces, not used for calibration
    if isinstance(calibration_data, np.ndarray):
        calib = calibration_data[:n_calibration]
        held_out = calibration_data[n_calibration:n_calibration + 256]
    else:
        source = calibration_data if calibration_data is not None else (default_calibration_data() if check else None)
        if int8 or calibration_data is not None:
            calib = load_calibration_faces(calibration_data, n=n_calibration)
        if check and source is not None and not str(source).endswith(".npy"):
            held_out = load_calibration_faces(source, n=256, split="PublicTest", seed=1)
    proto = onnx.load_from_string(_torch_to_onnx_bytes(m, opset))
    if not int8:
        _set_metadata(proto, m, "none")
        onnx.save(proto, str(out))
    else:
        assert calib is not None
        with tempfile.TemporaryDirectory(prefix="fervid-export-") as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            onnx.save(proto, str(fp32))
            qpath = Path(tmp) / "int8.onnx"
            quantize_int8(fp32, qpath, normalize_faces(calib, m.preprocess), calibration_method, per_channel,
                          keep_edges_fp32)
            q = onnx.load(str(qpath))
            _set_metadata(q, m, f"int8-static-qdq-{calibration_method}-{'per-channel' if per_channel else 'per-tensor'}"
                                + ("-edges-fp32" if keep_edges_fp32 else ""))
            onnx.save(q, str(out))
    diff, agree, n = float("nan"), float("nan"), 0
    if check:
        faces = held_out if held_out is not None and len(held_out) else _check_faces(m, calib)
        diff, agree = compare_with_torch(out, m, faces)
        n = len(faces)
    return ExportReport(out, int8, n, diff, agree, out.stat().st_size)
