"""Inference backends behind one small interface: a classifier that maps grey face crops
(uint8 ``N x H x W``) to logits.

``torch``
    :class:`TorchClassifier`: the PyTorch model itself (always available; any device).
``onnx``
    :class:`OnnxClassifier`: an onnxruntime CPU session on an exported model (see
    :mod:`fervid.models.onnx`). Give it a ``.onnx`` file made by ``fervid export`` (labels,
    preprocessing and temperature come from its metadata), or a bundled name / checkpoint,
    which is exported once to ``~/.cache/fervid/onnx/<sha256>.onnx`` ($FERVID_CACHE or
    $XDG_CACHE_HOME move it) and reused.
``auto``
    ``onnx`` when onnxruntime is installed and the device is the CPU, else ``torch``:
    onnxruntime was 1.5-3x faster than PyTorch for both bundled models on a 2-core CPU
    (``fervid bench``; benchmarks/realtime.md).

A model ``A+B[+C]`` (``"default+fast"``; names or paths, two or more) is an ensemble:
:class:`EnsembleClassifier`, each member loaded as above on the same backend, its
probabilities the mean of the members' calibrated probabilities (:func:`mean_probabilities`),
the definition of ``fervid evaluate A B`` (``--ensemble mean``) and benchmarks/travel.py.
A path that exists is one model even when its name has a ``+``.

Without torch (``pip install fervid``, no ``train`` extra) a bundled model name runs the
verified ONNX file shipped beside its safetensors (:func:`fervid.models.bundled.bundled_onnx`);
nothing on this path imports torch.

Thread safety: every classifier here may be shared by threads. ``TorchClassifier`` runs
the model in eval mode without gradients (no state changes between calls);
``OnnxClassifier`` calls ``InferenceSession.run``, which onnxruntime documents as
thread-safe; ``EnsembleClassifier`` keeps no state between calls and only calls its members,
each one of the above. (AdaBN adapts a copy, never the shared model.)
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fervid.data.preprocess import PreprocessConfig
from fervid.errors import CheckpointError, UserFileNotFoundError, UserValueError
from fervid.inference.options import BACKENDS
from fervid.models.onnx import OPSET, normalize_faces, onnx_session, read_metadata, save_fp32
from fervid.runtime import cache_dir, softmax, torch_available

if TYPE_CHECKING:
    import torch


class Classifier(Protocol):
    labels: tuple[str, ...]
    preprocess: PreprocessConfig
    temperature: float

    def logits(self, faces: np.ndarray) -> np.ndarray:
        """uint8 ``N x H x W`` grey faces (any size; resized per ``preprocess``) -> ``N x K`` float32."""
        ...

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        """The same faces -> ``N x K`` float64 calibrated probabilities, each row summing to 1
        (what the face pipeline reports)."""
        ...


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``N x K`` float64 probabilities of one model's logits: :func:`fervid.runtime.softmax` of
    the logits (as float32) over the model's temperature, in float64, each row divided by its
    sum once more so it sums to 1 to the last digit (the arithmetic of every earlier release)."""
    probs = softmax(np.asarray(logits, np.float32), float(temperature)).astype(np.float64)
    probs /= probs.sum(1, keepdims=True)
    return probs


def mean_probabilities(members: Sequence[np.ndarray]) -> np.ndarray:
    """THE mean ensemble: the average, in float64, of the members' ``N x K`` calibrated
    probabilities, each row divided by its sum once more (as :func:`calibrated_probabilities`).
    :class:`EnsembleClassifier`, ``fervid evaluate A B`` and benchmarks/travel.py all average
    probabilities this way (never logits: members calibrated apart stay calibrated)."""
    probs = np.mean(np.stack([np.asarray(p, np.float64) for p in members]), axis=0)
    probs /= probs.sum(-1, keepdims=True)
    return probs


class TorchClassifier:
    """A PyTorch model as a :class:`Classifier`."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", batch_size: int = 256):
        import torch

        from fervid.models import model_preprocess, model_temperature

        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.preprocess: PreprocessConfig = model_preprocess(model)
        self.labels = tuple(self.preprocess.labels)
        self.temperature = model_temperature(model)

    def logits(self, faces: np.ndarray) -> np.ndarray:
        # The one torch inference path (fervid.inference.logits), fp32: the same numbers as evaluation.
        from fervid.inference.logits import tta_logits

        out = tta_logits(self.model, faces, "none", self.device, self.batch_size).numpy()
        meta = getattr(self.model, "checkpoint_meta", None)
        return finite_logits(out, meta.get("source", "the model") if isinstance(meta, dict) else "the model")

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        return calibrated_probabilities(self.logits(faces), self.temperature)


class OnnxClassifier:
    """An exported fervid model run by onnxruntime on the CPU.

    Args:
        path: a ``.onnx`` file written by :func:`fervid.export.onnx.export_onnx` (fp32 or int8).
        threads: onnxruntime intra-op threads (``None``: onnxruntime's default, all cores).
        batch_size: faces per ``session.run`` call.
    """

    backend = "onnx"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, batch_size: int = 256):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserFileNotFoundError(f"no such ONNX model: {self.path}")
        # Without the onnx package (a core install) the metadata comes from the session itself:
        # open it once, first (a file it cannot read is named by read_metadata below).
        session = None
        if importlib.util.find_spec("onnx") is None:
            from fervid.safety import check_input_file

            check_input_file(self.path, "model")
            try:
                session = onnx_session(self.path, threads)
            except Exception:  # noqa: BLE001 - read_metadata reports the unreadable file
                session = None
        meta = read_metadata(self.path, session)
        self.preprocess: PreprocessConfig = meta["preprocess"]
        self.labels = tuple(meta["labels"])
        self.temperature = float(meta["temperature"])
        self.quantization = str(meta.get("quantization", "none"))
        self.batch_size = batch_size
        try:
            self.session = session or onnx_session(self.path, threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error types (InvalidGraph, Fail, ...)
            raise CheckpointError(f"{self.path}: onnxruntime cannot load it ({type(e).__name__}: {e})") from e
        self._input = self.session.get_inputs()[0].name

    def __repr__(self) -> str:
        return f"OnnxClassifier({str(self.path)!r}, quantization={self.quantization!r})"

    def logits(self, faces: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(faces), self.batch_size):
            x = normalize_faces(faces[i : i + self.batch_size], self.preprocess)
            out.append(np.asarray(self.session.run(None, {self._input: x})[0], np.float32))
        return finite_logits(np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32), self.path)

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        return calibrated_probabilities(self.logits(faces), self.temperature)


ENSEMBLE_SEPARATOR = "+"


def ensemble_members(model: object) -> list[str] | None:
    """The member names or paths of an ensemble spec ``A+B[+C]``, or ``None`` for one model (a
    loaded model, a spec without ``+``, or a path that exists, ``+`` in its name or not). A
    member's own ``+`` (``runs/a+b.pt+fast``) is kept where the longer path is a file.
    Raises :class:`~fervid.errors.UserValueError` for an empty member (``"default+"``) or a
    member given twice."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    spec = os.fspath(model)
    if ENSEMBLE_SEPARATOR not in spec or Path(spec).exists():
        return None
    tokens = [m.strip() for m in spec.split(ENSEMBLE_SEPARATOR)]
    members = []
    i = 0
    while i < len(tokens):  # a member's path may have a "+" of its own: the longest run that is a file
        j = next(
            (j for j in range(len(tokens), i + 1, -1) if Path(ENSEMBLE_SEPARATOR.join(tokens[i:j])).is_file()), i + 1
        )
        members.append(ENSEMBLE_SEPARATOR.join(tokens[i:j]))
        i = j
    if len(members) == 1:
        return None
    if any(not m for m in members):
        raise UserValueError(f"model {spec!r}: an ensemble is A+B[+C] with a bundled name or path on each side of '+'")
    check_distinct_models(members, f"model {spec!r}")
    return members


def model_identity(model: str) -> str:
    """What a model name or path stands for: a bundled model's canonical name (an alias such as
    ``fast-cnn-fer2013`` is ``fast``), else the resolved path (``./a.pt`` and ``$PWD/a.pt`` are
    one file)."""
    from fervid.models.bundled import bundled_models

    bundled = bundled_models()
    if model in bundled and not Path(model).exists():
        return f"bundled:{bundled[model].name}"
    return str(Path(model).expanduser().resolve())


def check_distinct_models(models: Sequence[str], what: str = "models") -> None:
    """:class:`~fervid.errors.UserValueError` when two of ``models`` are the same model (by
    :func:`model_identity`): an ensemble of a model with itself is that model, reported as two."""
    seen: dict[str, str] = {}
    for m in models:
        key = model_identity(m)
        if key in seen:
            same = "given twice" if seen[key] == m else f"given twice ({seen[key]!r} and {m!r} are the same model)"
            raise UserValueError(f"{what}: a member is {same}")
        seen[key] = m


def check_ensemble_members(model: object) -> None:
    """For an ensemble spec, that each member is a bundled model name or an existing file:
    :class:`~fervid.errors.UserValueError` naming the first that is neither. (Labels and
    crops are compared when the members load: :class:`EnsembleClassifier`.)"""
    members = ensemble_members(model)
    if not members:
        return
    from fervid.models.bundled import bundled_models

    bundled = bundled_models()
    for m in members:
        if m not in bundled and not Path(m).is_file():
            raise UserValueError(
                f"ensemble {model!r}: member {m!r} is neither a bundled model (have: {sorted(bundled_models(False))}) "
                "nor a file"
            )


class EnsembleClassifier:
    """Two or more classifiers with the same labels and the same crop, as one: probabilities
    are :func:`mean_probabilities` of the members' calibrated probabilities.

    The face pipeline crops once, at the shared ``input_size`` and ``face_margin`` (each member
    still normalises the crop with its own mean and std): members that crop differently are
    refused, naming the member. (The bundled ``default``, ``fast`` and ``ferplus`` all crop
    48x48 with margin 0.2.) The ensemble's ``temperature`` is 1: its probabilities are already
    calibrated, member by member, before the averaging; :meth:`logits` are their logarithms,
    so ``softmax(logits / 1)`` gives the probabilities back (to float32 rounding) wherever
    logits are asked for (``fervid bench``).

    Args:
        members: the loaded classifiers.
        names: what the user called them (for errors and ``repr``).
    """

    temperature = 1.0

    def __init__(self, members: Sequence[Classifier], names: Sequence[str]):
        if len(members) < 2 or len(members) != len(names):
            raise UserValueError(f"an ensemble needs two or more members with a name each, got {list(names)}")
        self.members = list(members)
        self.names = [str(n) for n in names]
        first, p0 = self.names[0], members[0].preprocess
        for name, m in zip(self.names[1:], members[1:]):
            if tuple(m.labels) != tuple(members[0].labels):
                raise UserValueError(
                    f"ensemble {self.spec!r}: member {name!r} has labels {list(m.labels)}, "
                    f"{first!r} has {list(members[0].labels)}; members must share their labels"
                )
            crop, crop0 = (m.preprocess.input_size, m.preprocess.face_margin), (p0.input_size, p0.face_margin)
            if crop != crop0:
                raise UserValueError(
                    f"ensemble {self.spec!r}: member {name!r} crops faces at {crop[0]} px with margin {crop[1]}, "
                    f"{first!r} at {crop0[0]} px with margin {crop0[1]}; members must share their crop"
                )
        self.labels: tuple[str, ...] = tuple(members[0].labels)
        self.preprocess: PreprocessConfig = p0
        backends = {str(getattr(m, "backend", "?")) for m in members}
        self.backend = backends.pop() if len(backends) == 1 else "mixed"

    @property
    def spec(self) -> str:
        return ENSEMBLE_SEPARATOR.join(self.names)

    def __repr__(self) -> str:
        return f"EnsembleClassifier({self.spec!r}, backend={self.backend!r})"

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)))
        return mean_probabilities([m.probabilities(faces) for m in self.members])

    def logits(self, faces: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.maximum(np.log(self.probabilities(faces)), np.log(np.finfo(np.float64).tiny)).astype(np.float32)


def with_threads(clf: Classifier, threads: int | None) -> Classifier:
    """``clf`` with onnxruntime sessions of ``threads`` intra-op threads (each member of an
    ensemble; a torch classifier as it is): for timing on a fixed number of cores."""
    if isinstance(clf, EnsembleClassifier):
        return EnsembleClassifier([with_threads(m, threads) for m in clf.members], clf.names)
    if isinstance(clf, OnnxClassifier):
        return OnnxClassifier(clf.path, threads)
    return clf


def finite_logits(logits: np.ndarray, source: object) -> np.ndarray:
    """``logits``, or a :class:`~fervid.errors.CheckpointError` naming the model when any is
    NaN or infinite: results never carry NaN (not JSON, and not a probability)."""
    if not np.isfinite(logits).all():
        raise CheckpointError(f"{source}: the model produced NaN or infinite outputs (damaged weights?)")
    return logits


def onnx_available() -> bool:
    """Whether onnxruntime (and onnx, for export) are installed."""
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def resolve_backend(backend: str, device: str = "cpu") -> str:
    """``"auto"`` -> ``"onnx"`` on the CPU when onnxruntime is installed (and always without
    torch), else ``"torch"``."""
    if backend not in BACKENDS:
        raise UserValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if not torch_available():
        return "onnx"
    return "onnx" if str(device).startswith("cpu") and onnx_available() else "torch"


class OnnxExportError(RuntimeError):
    """The ONNX export (or its cache entry) of a model that loaded fine could not be made;
    ``.model`` is the loaded torch model, so falling back to torch does not load it again."""

    def __init__(self, message: str, model: torch.nn.Module):
        super().__init__(message)
        self.model = model


def source_sha256(model: str | os.PathLike) -> str:
    """sha256 of the weight file behind a bundled model name or a checkpoint path. A bundled
    file is hashed and checked against the manifest here, before anything derived from it
    (an ONNX export) is used: tampered or damaged weights are an error, not a cache hit."""
    from fervid.models.bundled import bundled_models, file_sha256, verified_file
    from fervid.safety import check_input_file

    name = str(model)
    bundled = bundled_models()
    if name in bundled and not Path(name).exists():
        b = bundled[name]
        verified_file(b.name, b.file, b.sha256)
        return b.sha256
    if Path(name).is_file():
        check_input_file(name, "model")
        return file_sha256(name)
    raise UserFileNotFoundError(f"no bundled model named {name!r} (have: {sorted(bundled)}) and no such file")


def _cache_versions() -> dict[str, str]:
    """What an export depends on besides the weights: a new torch, onnx or fervid makes a new entry."""
    import onnx
    import torch

    from fervid.version import __version__

    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "fervid": __version__,
        "opset": str(OPSET),
        "format": "fp32-v2",
    }


def _cache_problem(path: Path, sidecar: Path, expected: dict[str, str]) -> str | None:
    """Why the cache entry cannot be used (``"missing"``, damaged, foreign), or ``None``."""
    import json

    from fervid.models.bundled import file_sha256

    try:
        if not path.is_file():
            return "missing"
    except OSError:  # a folder we may not look into: writing the entry says why, naming it
        return "missing"
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"has no readable record ({sidecar.name}: {type(e).__name__})"
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expected.items()):
        return "was made from other weights or by another fervid/torch/onnx version"
    if file_sha256(path) != meta.get("onnx_sha256"):
        return "is damaged or was replaced (its sha256 does not match its record)"
    return None


def cached_onnx(model: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path:
    """An fp32 ONNX export of a bundled model or checkpoint, made once and cached in
    ``cache_dir("onnx")``. The entry is keyed by the weight file's sha256 and the torch,
    onnx and fervid versions, and has a record (``<key>.json``: its own sha256 and the
    source's) checked on every read: a damaged or foreign entry is rebuilt, with a warning
    that says so. Bundled weights are verified first (:func:`source_sha256`).

    ``folder``: another cache folder (default ``cache_dir("onnx")``). Raises
    :class:`OnnxExportError` (carrying the loaded model) when the export or the cache write
    fails; checkpoint errors (:class:`~fervid.errors.CheckpointError`) propagate."""
    import json
    import warnings

    from fervid.models.bundled import file_sha256
    from fervid.models.checkpoint import load_model
    from fervid.safety import atomic_path, write_text_atomic

    expected = {"source_sha256": source_sha256(model), **_cache_versions()}
    key = hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()[:32]
    path = (Path(folder) if folder is not None else cache_dir("onnx")) / f"{key}.onnx"
    sidecar = path.with_suffix(".json")
    problem = _cache_problem(path, sidecar, expected)
    if problem is None:
        return path
    if problem != "missing":
        warnings.warn(f"the cached ONNX export {path} {problem}; rebuilding it from {model}", stacklevel=3)
    m = load_model(model, device="cpu")  # a bad checkpoint fails here with its own named error
    try:
        with atomic_path(path) as tmp:
            save_fp32(m, tmp)
        write_text_atomic(
            sidecar, json.dumps({**expected, "onnx_sha256": file_sha256(path), "model": str(model)}, indent=2) + "\n"
        )
    except Exception as e:  # noqa: BLE001 - an exporter failure or an unwritable cache: the caller decides
        what = "caching the ONNX export of" if isinstance(e, OSError) else "ONNX export of"
        raise OnnxExportError(f"{what} {model} failed ({e})", m) from e
    return path


def _torch_free_classifier(model: str | os.PathLike, device: str, threads: int | None) -> Classifier:
    """Without torch: an ``.onnx`` file, or a bundled name's verified ONNX file, on onnxruntime."""
    from fervid.models.bundled import bundled_onnx

    if importlib.util.find_spec("onnxruntime") is None:
        raise ImportError("fervid needs onnxruntime (or torch) to run a model: pip install onnxruntime")
    if not str(device).startswith(("cpu", "auto")):
        raise UserValueError(
            f"without torch fervid runs on the CPU only (got device={device!r}); install fervid[train]"
        )
    if str(model).lower().endswith(".onnx"):
        return OnnxClassifier(Path(model), threads)
    path = None if Path(model).exists() else bundled_onnx(str(model))
    if path is None:
        if Path(model).exists():
            raise UserValueError(
                f"{model}: a checkpoint needs torch to run (install fervid[train]); "
                "or export it once with `fervid export` and give the .onnx file"
            )
        from fervid.models.bundled import bundled_models

        raise UserFileNotFoundError(
            f"no bundled model named {str(model)!r} (have: {sorted(bundled_models())}) and no such file"
        )
    return OnnxClassifier(path, threads)


def load_classifier(
    model: str | os.PathLike | torch.nn.Module = "default",
    backend: str = "torch",
    device: str = "cpu",
    threads: int | None = None,
) -> Classifier:
    """A classifier for a bundled model name, a checkpoint path, a loaded torch model,
    (``onnx``/``auto`` backends) an exported ``.onnx`` file, or an ensemble ``A+B[+C]`` of
    names and paths (:class:`EnsembleClassifier`, each member on ``backend``). Without torch installed,
    ``onnx`` and ``auto`` run a bundled name's verified ONNX file or an ``.onnx`` file.

    Args:
        backend: ``"torch"``, ``"onnx"`` or ``"auto"`` (see the module docstring).
        device: the torch device; the onnx backend runs on the CPU only.
        threads: onnxruntime intra-op threads (onnx backend).
    """
    if not isinstance(model, (str, os.PathLike)):
        return _module_classifier(model, backend, device, threads)
    members = ensemble_members(model)
    if members:
        check_ensemble_members(model)
        return EnsembleClassifier([load_classifier(m, backend, device, threads) for m in members], members)
    if backend in ("onnx", "auto") and not torch_available():
        return _torch_free_classifier(model, device, threads)
    is_onnx_file = str(model).lower().endswith(".onnx")
    chosen = "onnx" if backend == "auto" and is_onnx_file else resolve_backend(backend, device)
    if backend == "auto" and chosen == "onnx" and not is_onnx_file:
        import warnings

        try:
            path = cached_onnx(model)  # bad names, paths and checkpoints raise their own errors
        except OnnxExportError as e:  # the model loaded, the export did not: stay on torch
            warnings.warn(f"backend 'auto': {e}; using torch", stacklevel=2)
            return TorchClassifier(e.model, device)
        try:
            return OnnxClassifier(path, threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime cannot run this (verified) export
            warnings.warn(
                f"backend 'auto': onnxruntime cannot run the ONNX export of {model} "
                f"({type(e).__name__}: {e}); using torch",
                stacklevel=2,
            )
            chosen = "torch"
    if chosen == "torch":
        if is_onnx_file:
            raise UserValueError(f"{model}: an .onnx file needs backend='onnx' (or 'auto')")
        from fervid.models.checkpoint import load_model

        return TorchClassifier(load_model(model, device=device), device)
    _check_onnx_backend(device)
    if is_onnx_file:
        return OnnxClassifier(Path(model), threads)
    try:
        path = cached_onnx(model)
    except OnnxExportError as e:
        if isinstance(e.__cause__, OSError):
            raise e.__cause__ from None  # the cache location: an OutputError naming it
        raise
    return OnnxClassifier(path, threads)


def _check_onnx_backend(device: str) -> None:
    if not onnx_available():
        raise ImportError("backend 'onnx' needs onnxruntime and onnx: pip install onnxruntime onnx")
    if not str(device).startswith("cpu") and device != "auto":
        raise UserValueError(f"backend 'onnx' runs on the CPU only (got device={device!r}); use backend='torch'")


def _module_classifier(model: torch.nn.Module, backend: str, device: str, threads: int | None) -> Classifier:
    """A loaded torch model: ``auto`` keeps it on torch (no export behind the user's back);
    ``onnx`` exports it to a temporary file, whose session holds the model in memory."""
    if resolve_backend(backend, device) == "torch" or backend == "auto":
        return TorchClassifier(model, device)
    _check_onnx_backend(device)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fervid-onnx-") as tmp:
        p = Path(tmp) / "model.onnx"
        save_fp32(model, p)
        return OnnxClassifier(p, threads)
