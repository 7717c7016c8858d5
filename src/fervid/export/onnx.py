"""Export a fervid model to ONNX (fp32, or int8 with static QDQ quantization).

>>> from fervid.export.onnx import export_onnx
>>> report = export_onnx("fast", "fast.onnx")                        # fp32, dynamic batch
>>> report = export_onnx("default", "m.onnx", int8=True,
...                      calibration_data="shared/data/fer2013/fer2013.csv.gz")
>>> report.max_abs_prob_diff                                           # parity vs PyTorch

The ONNX graph takes the **normalised** input tensor, float32 ``N x C x S x S`` (input
name ``input``, batch axis dynamic) and returns logits ``N x K`` (``logits``). Everything
needed to use it without fervid's Python objects is in the model's ``metadata_props``:

``fervid.labels``        JSON list of the K emotion labels, in output order
``fervid.preprocess``    JSON :class:`~fervid.data.preprocess.PreprocessConfig` (size, mean, std, margin, ...)
``fervid.temperature``   calibration temperature: probabilities = softmax(logits / T)
``fervid.input``         a one-line description of the input tensor
``fervid.quantization``  ``none`` or e.g. ``int8-static-qdq-minmax-per-channel-fp32-tail-0``
``fervid.source``        the model the file was exported from

int8 uses onnxruntime's **static** quantization (QDQ format, per-channel int8 weights,
uint8 activations) calibrated on a few hundred FER2013 Training images; dynamic int8 was
slower than fp32 on a 2-core CPU (it re-quantizes activations on every call). Every
convolution but the first is int8, and so is every weight but the first convolution's and
the classifier head's: the file is about a quarter of the fp32 one (an edge model must be at
most :data:`MAX_INT8_SIZE_RATIO` of it). The export checks that this keeps PyTorch's top label
on >= 99% of the PublicTest faces (95% lower bound); where it does not, it tries 16-bit
activations (the same int8 weights, so the same small file, but slower: onnxruntime has no
16-bit convolution kernels), then leaving the last convolutions in fp32 (:data:`INT8_PLANS`:
the first that meets the bar), and its report says when the file misses the size target.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fervid.data.datasets import load_dataset
from fervid.errors import UserFileNotFoundError, UserValueError
from fervid.models import model_cfg, model_preprocess, model_temperature
from fervid.models.onnx import OPSET, normalize_faces, onnx_session, set_metadata, to_onnx_bytes
from fervid.runtime import fer2013_csv, progress_bar, progress_stage, softmax
from fervid.safety import atomic_path, check_input_file, check_not_input, preflight_output

if TYPE_CHECKING:
    import torch

    from fervid.data.preprocess import PreprocessConfig

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION = "minmax"
"""Activation ranges from the calibration minimum and maximum: with every convolution but the
first in int8 (uint8 activations), the bundled width-32 ``default`` kept PyTorch's top label
on 98.66% of the PublicTest faces with min-max ranges, as with entropy ranges (98.66%) and
about as with the 99.99th percentile (98.63%), and min-max calibrates fastest (BENCHMARKS.md,
issue 26; the percentile default was chosen for the older width-64 model,
benchmarks/realtime.md). Not measured for ``fast``."""
MAX_INT8_SIZE_RATIO = 0.4
"""An int8 export meant for the edge is at most this share of the fp32 file; the report says
when the fp32 tail needed for the agreement bar makes it bigger."""
INT8_MIN_AGREEMENT = 0.99
"""int8 export keeps PyTorch's top label on at least this share of PublicTest faces (a 95%
lower confidence bound), by leaving the end of the network in fp32 if it must (see
:data:`FP32_TAILS`)."""
FP32_TAILS = (0.0, 0.25, 0.5, 0.75)
ACTIVATIONS = ("uint8", "uint16")
INT8_PLANS: tuple[tuple[str, float], ...] = (("uint8", 0.0), ("uint16", 0.0)) + tuple(
    ("uint8", t) for t in FP32_TAILS[1:]
)
"""``(activation type, fp32 tail)`` tried in order by an int8 export that chooses its own
precision: every convolution but the first int8 with uint8 activations (smallest and
fastest); the same int8 weights with 16-bit activations (as small, slower: for the bundled
width-32 default, 98.66% top-label agreement on PublicTest with uint8 activations, 99.55% with
16-bit ones; BENCHMARKS.md, issue 26); then fp32 tails (bigger files)."""
"""Shares of the convolutions, counted from the output end, tried in order as the fp32 tail
of an int8 model. Activation rounding error accumulates towards the output: with uint8
activations everywhere the default ResNet-18 kept only 97.6% of its top labels on
PublicTest, with 16-bit activations 99.7%, and with its last stage (a quarter of the
convolutions) in fp32 99.0%; the bundled fast_cnn needs half of its convolutions in fp32
for the bound (99.4% on PublicTest)."""


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
        fp32_tail: int8 only: share of the convolutions (from the output end) left in fp32.
        activations: int8 only: the activation type, ``"uint8"`` or ``"uint16"``.
        n_selection, selection_agreement: the PublicTest faces that chose ``fp32_tail`` and
            the chosen model's top-1 agreement with PyTorch on them (0 / nan: not chosen).
        fp32_size_bytes: the size of the same model exported in fp32 (int8: its graph before
            quantization).
        tried: int8 with selection: ``(activations, fp32 tail, top-1 agreement on the selection
            faces)`` of every plan of :data:`INT8_PLANS` tried, in order (the last is the chosen one).
    """

    path: Path
    int8: bool
    n_check: int
    max_abs_prob_diff: float
    top1_agreement: float
    size_bytes: int
    fp32_tail: float = 0.0
    n_selection: int = 0
    selection_agreement: float = float("nan")
    fp32_size_bytes: int = 0
    tried: tuple[tuple[str, float, float], ...] = ()
    activations: str = "uint8"

    @property
    def size_ratio(self) -> float:
        """The file's size over the fp32 file's (nan when that is unknown)."""
        return self.size_bytes / self.fp32_size_bytes if self.fp32_size_bytes else float("nan")

    @property
    def meets_size_target(self) -> bool:
        """int8: whether the file is at most :data:`MAX_INT8_SIZE_RATIO` of the fp32 one."""
        return self.int8 and self.size_ratio <= MAX_INT8_SIZE_RATIO

    def summary(self) -> str:
        acts = "16-bit activations, " if self.activations == "uint16" else ""
        kind = f"int8 (static QDQ, {acts}fp32 tail {self.fp32_tail:g})" if self.int8 else "fp32"
        s = f"wrote {self.path} ({kind}, {self.size_bytes / 1e6:.2f} MB"
        s += f", {self.size_ratio:.2f}x the fp32 file)" if self.int8 and self.fp32_size_bytes else ")"
        if self.n_check:
            s += (
                f"; parity vs PyTorch on {self.n_check} faces: max abs prob diff {self.max_abs_prob_diff:.2e}, "
                f"top-1 agreement {100 * self.top1_agreement:.2f}%"
            )
        if self.n_selection:
            s += (
                f"; precision (activations, fp32 tail) chosen on {self.n_selection} PublicTest faces "
                f"(top-1 agreement {100 * self.selection_agreement:.2f}%)"
            )
        if len(self.tried) > 1:
            acts0, tail0, agree0 = self.tried[0]
            s += (
                f"; with {acts0} activations and fp32 tail {tail0:g} the int8 model kept only {100 * agree0:.2f}% "
                "of the top labels (below the bar at 95% confidence)"
            )
        if self.int8 and self.fp32_size_bytes and not self.meets_size_target:
            s += f"; NOTE: above the {MAX_INT8_SIZE_RATIO:g}x size target of an edge model"
        return s


# --------------------------------------------------------------------------- helpers


def _load_torch_model(model: Any) -> torch.nn.Module:
    import torch

    from fervid.models.checkpoint import load_model

    m = model if isinstance(model, torch.nn.Module) else load_model(model, device="cpu")
    return m.eval().float().cpu()


def load_calibration_faces(
    path: str | os.PathLike | None = None, n: int = 500, split: str = "Training", seed: int = 0
) -> np.ndarray:
    """``n`` uint8 faces for int8 calibration: a random (seeded) sample of ``split`` from a
    dataset fervid can read (FER2013 CSV, image folder), or all images of a ``.npy`` array
    (``N x H x W`` uint8). ``path=None``: see :func:`fervid.runtime.fer2013_csv`."""
    if path is None:
        path = fer2013_csv()
        if path is None:
            raise UserValueError(
                "int8 export needs calibration images: pass --calibration-data PATH "
                "(the FER2013 CSV, an image folder or an .npy of uint8 faces) or set FERVID_DATA"
            )
    path = Path(path)
    if not path.exists():
        raise UserFileNotFoundError(f"calibration data {path} does not exist")
    if path.suffix == ".npy":
        return load_npy_faces(path)[:n]
    data = load_dataset(path)
    idx = np.flatnonzero(data.splits == split)
    if len(idx) == 0:
        idx = np.arange(len(data))  # no split column: use everything
    if len(idx) == 0:
        raise UserValueError(f"{path}: no images to calibrate on")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return data.images[pick]


def load_npy_faces(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` of uint8 ``N x H x W`` faces (no pickles), or a named error."""
    check_input_file(path, "calibration data")
    try:
        faces = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserFileNotFoundError(f"calibration data {path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError/OSError/EOFError... for a bad file
        raise UserValueError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from e
    if not isinstance(faces, np.ndarray) or faces.dtype != np.uint8 or faces.ndim != 3 or 0 in faces.shape:
        raise UserValueError(
            f"{path}: expected a uint8 N x H x W array of faces, got "
            f"{getattr(faces, 'dtype', type(faces).__name__)} {getattr(faces, 'shape', '')}"
        )
    return faces


class _FaceReader:
    """onnxruntime CalibrationDataReader over normalised faces, in small batches."""

    def __init__(self, x: np.ndarray, batch: int = 32, progress: bool = False):
        # Equal batches: onnxruntime's histogram calibrators (entropy, percentile) stack the
        # batches' outputs and fail on a short last batch, so use the largest divisor of N.
        batch = max(b for b in range(1, min(batch, len(x)) + 1) if len(x) % b == 0) if len(x) else 1
        self._x, self._batch = x, batch
        self._it: Iterator[dict[str, np.ndarray]] | None = None
        self.bar = progress_bar(total=-(-len(x) // batch), desc="int8 calibration", unit="batch", enabled=progress)
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        assert self._it is not None
        item = next(self._it, None)
        if item is not None:
            self.bar.update(1)
        return item

    def rewind(self) -> None:
        self.bar.reset()
        self._it = iter([{"input": self._x[i : i + self._batch]} for i in range(0, len(self._x), self._batch)])


def quantize_int8(
    fp32_path: str | os.PathLike,
    out: str | os.PathLike,
    calib: np.ndarray,
    method: str = DEFAULT_CALIBRATION,
    per_channel: bool = True,
    fp32_tail: float = 0.0,
    keep_fp32: Sequence[str] = (),
    progress: bool = False,
    activations: str = "uint8",
) -> None:
    """Static int8 QDQ quantization of an exported fp32 model, calibrated on ``calib``
    (normalised inputs, float32 ``N x C x S x S``). The first convolution, the classifier
    head and the last ``fp32_tail`` share of the convolutions (with everything after them)
    stay fp32 (:func:`fp32_nodes`); ``keep_fp32`` names the first convolution and the classifier
    as module paths (the model's :class:`~fervid.models.ModelCfg`). ``progress``: a bar over the
    calibration batches (:func:`fervid.runtime.progress_bar`). ``activations``: ``"uint8"``
    or ``"uint16"`` (weights are int8 either way; onnxruntime raises the opset to 21 for it)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise UserValueError(f"unknown calibration method {method!r}; choose from {CALIBRATION_METHODS}")
    if activations not in ACTIVATIONS:
        raise UserValueError(f"unknown activation type {activations!r}; choose from {ACTIVATIONS}")
    if not 0.0 <= fp32_tail <= 1.0:
        raise UserValueError(f"fp32_tail must be in [0, 1], got {fp32_tail}")
    with tempfile.TemporaryDirectory(prefix="fervid-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            src = pre
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation only
            src = Path(fp32_path)
        extra: dict[str, Any] = {}
        if method == "percentile":
            extra["CalibPercentile"] = 99.99
        reader = _FaceReader(calib, progress=progress)
        # onnxruntime's calibrators print progress lines to stdout; keep stdout for results
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.closing(reader.bar),
            progress_stage("int8 quantization", enabled=progress),
        ):
            quantize_static(
                str(src),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt16 if activations == "uint16" else QuantType.QUInt8,
                calibrate_method=methods[method],
                extra_options=extra,
                nodes_to_exclude=fp32_nodes(src, fp32_tail, keep_fp32),
            )


def fp32_nodes(path: str | os.PathLike, fp32_tail: float = 0.0, modules: Sequence[str] = ()) -> list[str]:
    """Nodes an int8 export leaves in fp32: the nodes of ``modules`` (module paths, e.g. the
    model's first convolution and classifier as its :class:`~fervid.models.ModelCfg` declares
    them: both a small share of the compute, and quantizing them cost top-label agreement), plus,
    for ``fp32_tail > 0``, every node from the first of the last ``ceil(fp32_tail * convolutions)``
    convolutions on (graph order follows the forward pass). The exporter names each node after
    its module's scope (``/stem/stem.0/Conv``), which is how a module path finds its nodes."""
    import onnx

    nodes = list(onnx.load(str(path)).graph.node)
    keep: set[int] = set()
    for mod in modules:
        found = [i for i, n in enumerate(nodes) if f"/{mod}/" in n.name]
        if not found:
            raise UserValueError(f"{path}: no ONNX node belongs to module {mod!r}; cannot keep it in fp32")
        keep.update(found)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    k = math.ceil(fp32_tail * len(convs))
    if k:
        keep.update(range(convs[-k], len(nodes)))
    return [nodes[i].name for i in sorted(keep) if nodes[i].name]


def _probs_torch(model: torch.nn.Module, faces: np.ndarray, progress: bool = False) -> np.ndarray:
    from fervid.inference.logits import tta_logits

    return softmax(tta_logits(model, faces, progress=progress).numpy(), model_temperature(model))


def _probs_onnx(sess: Any, faces: np.ndarray, cfg: PreprocessConfig, t: float, progress: bool = False) -> np.ndarray:
    out = [
        sess.run(None, {"input": normalize_faces(faces[i : i + 256], cfg)})[0]
        for i in progress_bar(range(0, len(faces), 256), desc="int8 agreement", unit="batch", enabled=progress)
    ]
    return softmax(np.concatenate(out), t)


def compare_with_torch(onnx_model: str | os.PathLike | bytes, model: Any, faces: np.ndarray) -> tuple[float, float]:
    """``(max abs probability difference, top-1 agreement)`` of an exported model against
    the PyTorch model on uint8 ``faces``."""
    m = _load_torch_model(model)
    sess = onnx_session(onnx_model)
    pt = _probs_torch(m, faces)
    po = _probs_onnx(sess, faces, model_preprocess(m), model_temperature(m))
    return float(np.abs(pt - po).max()), float((pt.argmax(1) == po.argmax(1)).mean())


def _check_faces(model: torch.nn.Module, calib: np.ndarray | None, n: int = 256) -> np.ndarray:
    if calib is not None and len(calib):
        return calib[:n]
    # no real faces at hand: smooth synthetic images (noise alone is far from the data)
    import cv2

    s = int(model_preprocess(model).input_size)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(64, 8, 8), dtype=np.uint8)
    return np.stack([cv2.resize(im, (s, s), interpolation=cv2.INTER_CUBIC) for im in small])


def export_onnx(
    model: Any,
    out: str | os.PathLike,
    *,
    int8: bool = False,
    calibration_data: str | os.PathLike | np.ndarray | None = None,
    n_calibration: int = 500,
    calibration_method: str = DEFAULT_CALIBRATION,
    per_channel: bool = True,
    opset: int = OPSET,
    check: bool = True,
    fp32_tail: float | None = None,
    min_agreement: float = INT8_MIN_AGREEMENT,
    n_selection: int | None = None,
    progress: bool = False,
    activations: str | None = None,
) -> ExportReport:
    """Export ``model`` (bundled name, checkpoint path or loaded torch model) to ONNX.

    Args:
        out: the ``.onnx`` file to write (its folder is created).
        int8: static QDQ int8 quantization calibrated on ``n_calibration`` Training images.
        calibration_data: a dataset path (see :func:`load_calibration_faces`) or a uint8
            ``N x H x W`` array of faces. Only used with ``int8`` (and for the parity check,
            which otherwise uses synthetic images).
        calibration_method: ``"percentile"`` (default, 99.99th), ``"minmax"`` or ``"entropy"``.
        fp32_tail: share of the convolutions, from the output end, left in fp32 (see
            :func:`fp32_nodes`). ``None`` (default): the first of :data:`FP32_TAILS` whose
            int8 model keeps PyTorch's top label on ``min_agreement`` of the faces, as a
            one-sided 95% lower confidence bound, on ``n_selection`` (default: all)
            PublicTest faces of the calibration dataset (the selection split; without one,
            faces not used for calibration). Without such faces: 0. The choice covers the
            activation type too: the first plan of :data:`INT8_PLANS` that meets the bar.
        activations: int8 activation type, ``"uint8"`` or ``"uint16"``; ``None`` (default):
            ``"uint8"`` with a fixed ``fp32_tail``, else chosen with the tail.
        check: compare the exported model's probabilities with PyTorch's, on 256
            PublicTest faces of the calibration dataset (or of :func:`fervid.runtime.fer2013_csv`),
            never the calibration images themselves; on synthetic images if there is no data.
        progress: progress bars for the int8 calibration and the fp32-tail search (minutes on
            a CPU; :func:`fervid.runtime.progress_bar`).
    """
    import onnx

    out = Path(out)
    check_not_input(out, [model, calibration_data], "--out")
    preflight_output(out)  # before minutes of calibration
    if isinstance(calibration_data, (str, os.PathLike)) and str(calibration_data).lower().endswith(".npy"):
        # faces only, no splits: treated as an array, so the faces after the calibration ones
        # choose the fp32 tail and check parity (--min-agreement is never skipped)
        calibration_data = load_npy_faces(calibration_data)
    m = _load_torch_model(model)
    with progress_stage("loading faces", enabled=progress and not isinstance(calibration_data, np.ndarray)):
        calib, held_out, select = _export_faces(
            calibration_data, n_calibration, n_selection, int8=int8, check=check, choose_tail=fp32_tail is None
        )
    with progress_stage("onnx export (fp32 graph)", enabled=progress):
        proto = onnx.load_from_string(to_onnx_bytes(m, opset))
    if not int8:
        set_metadata(proto, m, "none")
        with atomic_path(out) as tmp:  # a failed save leaves no 0-byte or partial .onnx
            onnx.save(proto, str(tmp))
        q = _Int8Result(fp32_size=out.stat().st_size)
    else:
        assert calib is not None
        q = _write_int8(
            m,
            proto,
            out,
            calib,
            select,
            method=calibration_method,
            per_channel=per_channel,
            fp32_tail=fp32_tail,
            min_agreement=min_agreement,
            activations=activations,
            progress=progress,
        )
    diff, agree, n = float("nan"), float("nan"), 0
    if check:
        faces = held_out if held_out is not None and len(held_out) else _check_faces(m, calib)
        with progress_stage(f"parity check on {len(faces)} faces", enabled=progress):
            diff, agree = compare_with_torch(out, m, faces)
        n = len(faces)
    return ExportReport(
        out, int8, n, diff, agree, out.stat().st_size, q.tail, q.n_sel, q.sel_agree, q.fp32_size, q.tried, q.acts
    )


def _export_faces(
    calibration_data: str | os.PathLike | np.ndarray | None,
    n_calibration: int,
    n_selection: int | None,
    *,
    int8: bool,
    check: bool,
    choose_tail: bool,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """The faces an export uses, three disjoint sets: ``calib`` calibrates int8, ``held_out``
    checks parity and ``select`` chooses the fp32 tail (``choose_tail``). From an array: its
    first ``n_calibration`` faces calibrate, the rest check and select; from a dataset (or
    :func:`fervid.runtime.fer2013_csv`), Training faces calibrate and PublicTest ones (other
    seeds) check and select. None where a set is not needed or there is no data."""
    calib: np.ndarray | None = None
    held_out: np.ndarray | None = None  # parity-check faces, not used for calibration
    select: np.ndarray | None = None  # faces that choose the fp32 tail, not used for calibration
    if isinstance(calibration_data, np.ndarray):
        calib = calibration_data[:n_calibration]
        held_out = calibration_data[n_calibration : n_calibration + 256]
        select = calibration_data[n_calibration:][:n_selection]
        if int8 and choose_tail and len(select) == 0:
            raise UserValueError(
                f"int8 export: all {len(calibration_data)} faces of the calibration data go to "
                f"calibration (--n-calibration {n_calibration}), none are left to check "
                "--min-agreement on: give more faces, a smaller --n-calibration, or --fp32-tail"
            )
        return calib, held_out, select
    source = calibration_data if calibration_data is not None else fer2013_csv()
    has_splits = source is not None and not str(source).endswith(".npy")  # an .npy is faces only
    if int8 or calibration_data is not None:
        calib = load_calibration_faces(calibration_data, n=n_calibration)
    if check and has_splits:
        held_out = load_calibration_faces(source, n=256, split="PublicTest", seed=1)
    if int8 and choose_tail and has_splits:
        select = load_calibration_faces(source, n=n_selection or 10**9, split="PublicTest", seed=2)
    return calib, held_out, select


@dataclass
class _Int8Result:
    """What an export's int8 step chose (an fp32 export: its file size, the rest unset)."""

    fp32_size: int
    tail: float = 0.0
    sel_agree: float = float("nan")
    n_sel: int = 0
    acts: str = "uint8"
    tried: tuple[tuple[str, float, float], ...] = ()


def _write_int8(
    m: torch.nn.Module,
    proto: Any,
    out: Path,
    calib: np.ndarray,
    select: np.ndarray | None,
    *,
    method: str,
    per_channel: bool,
    fp32_tail: float | None,
    min_agreement: float,
    activations: str | None,
    progress: bool,
) -> _Int8Result:
    """``proto`` quantized to int8 at ``out``: with the given ``fp32_tail`` (0 without faces
    to choose one on), else the first plan that keeps PyTorch's top label on ``select``."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="fervid-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        onnx.save(proto, str(fp32))
        res = _Int8Result(fp32_size=fp32.stat().st_size)
        x = normalize_faces(calib, model_preprocess(m))
        if fp32_tail is not None or select is None or len(select) == 0:
            res.tail = 0.0 if fp32_tail is None else float(fp32_tail)
            res.acts = activations or "uint8"
            quantize_int8(
                fp32, Path(tmp) / "int8.onnx", x, method, per_channel, res.tail, _keep_fp32(m), progress, res.acts
            )
        else:
            plans = [p for p in INT8_PLANS if activations is None or p[0] == activations]
            res.tried = _select_fp32_tail(
                m,
                fp32,
                Path(tmp) / "int8.onnx",
                x,
                select,
                method,
                per_channel,
                min_agreement,
                progress=progress,
                plans=plans,
            )
            res.acts, res.tail, res.sel_agree = res.tried[-1]
            res.n_sel = len(select)
        q = onnx.load(str(Path(tmp) / "int8.onnx"))
        set_metadata(
            q,
            m,
            f"int8-static-qdq-{method}-{'per-channel' if per_channel else 'per-tensor'}"
            f"{'-a16' if res.acts == 'uint16' else ''}-fp32-tail-{res.tail:g}",
        )
        with atomic_path(out) as tmp_out:
            onnx.save(q, str(tmp_out))
    return res


def _select_fp32_tail(
    m: torch.nn.Module,
    fp32: Path,
    out: Path,
    calib: np.ndarray,
    faces: np.ndarray,
    method: str,
    per_channel: bool,
    min_agreement: float,
    progress: bool = False,
    plans: Sequence[tuple[str, float]] = INT8_PLANS,
) -> tuple[tuple[str, float, float], ...]:
    """Quantize with each ``(activations, fp32 tail)`` of ``plans`` in turn; keep the first whose top-label
    agreement with PyTorch on ``faces`` is at least ``min_agreement`` with 95% confidence
    (one-sided normal bound: a point estimate on a few thousand faces is +-0.2 points, and
    the bar must hold on the *test* split). ``(activations, tail, agreement)`` of every plan
    tried, the chosen one last. Raises
    :class:`~fervid.errors.UserValueError` when no tail meets the bar: such a model is never
    written (an explicit ``fp32_tail`` writes one anyway, with its agreement in the report)."""
    ref = _probs_torch(m, faces, progress).argmax(1)
    keep = _keep_fp32(m)
    best: tuple[str, float, float, float] | None = None  # (activations, tail, agreement, lower bound)
    tried: list[tuple[str, float, float]] = []
    search = progress_bar(total=len(plans), desc="int8 plan search", unit="plan", enabled=progress)
    for acts, tail in plans:
        search.set_postfix_str(f"{acts} activations, fp32 tail {tail:g}")
        cand = out.with_name(f"{acts}-tail-{tail:g}.onnx")
        quantize_int8(fp32, cand, calib, method, per_channel, tail, keep, progress, acts)
        probs = _probs_onnx(onnx_session(cand), faces, model_preprocess(m), 1.0, progress)
        agree = float((probs.argmax(1) == ref).mean())
        lower = agree - 1.645 * float(np.sqrt(agree * (1.0 - agree) / len(faces)))
        tried.append((acts, tail, agree))
        if best is None or agree > best[2]:
            best = (acts, tail, agree, lower)
            cand.replace(out)
        search.update(1)
        if lower >= min_agreement:
            search.close()
            return tuple(tried)
    search.close()
    assert best is not None
    raise UserValueError(
        f"int8 export: no (activations, fp32 tail) of {list(plans)} keeps PyTorch's top label on "
        f"{100 * min_agreement:.1f}% of the {len(faces)} selection faces at 95% confidence (best: {100 * best[2]:.2f}%, "
        f"lower bound {100 * best[3]:.2f}%, with {best[0]} activations and {best[1]:g} of the convolutions in fp32); "
        "nothing written. Export fp32, "
        "or pass fp32_tail (--fp32-tail) or a lower min_agreement (--min-agreement) to write it anyway"
    )


def _keep_fp32(m: torch.nn.Module) -> tuple[str, str]:
    """The modules an int8 export always leaves in fp32: the declared first conv and classifier."""
    cfg = model_cfg(m)
    return cfg.first_conv, cfg.classifier
