"""The recognizer's settings, in one frozen dataclass (torch-free: the CLI and the service build it
before anything loads).

>>> from fervid import EmotionRecognizer, RecognizerConfig
>>> cfg = RecognizerConfig(model="fast", detector="haar", threshold=0.25)
>>> rec = EmotionRecognizer.from_config(cfg)       # == EmotionRecognizer("fast", "haar", threshold=0.25)
>>> RecognizerConfig.from_dict(cfg.to_dict()) == cfg
True

Every default of a recognizer lives here, once: :class:`fervid.inference.recognizer.EmotionRecognizer`'s
keyword arguments, the CLI's recognizer arguments (``fervid predict``, ``video``, ``batch`` and
``serve`` share one set, named after these fields: :mod:`fervid.cli.recognizer_args`), ``fervid batch``'s
recorded settings and what ``fervid serve --workers N`` hands each worker process
(:meth:`RecognizerConfig.to_dict`, JSON) all read it. A config is checked when it is made
(:meth:`RecognizerConfig.validate`): one that exists is valid, so nothing downstream checks it
again. Whether the detector accepts its options is the detector's own check, made when the
recognizer creates it (before anything loads).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from fervid.detectors import DEFAULT_DETECTOR
from fervid.errors import UserValueError
from fervid.inference.options import BACKENDS

if TYPE_CHECKING:
    from fervid.detectors import Detector


class FrozenOptions(Mapping[str, Any]):
    """A read-only ``str -> value`` mapping: a config's extra detector options. Compares equal to a
    dict with the same items, pickles (Ray, worker processes) and hashes when its values do."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None):
        self._items: dict[str, Any] = dict(items or {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._items,))


def _is_number(value: Any) -> bool:
    # bool is an int subclass: True as a threshold or a size is a mistake, not 1
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_DEVICE = re.compile(r"auto|(cpu|cuda|mps|xpu)(:[0-9]+)?")
"""The devices a recognizer runs on (what torch would take, spelt as the CLI documents it):
checked when the config is made, so that ``"gpu"`` or ``"cuda:-1"`` is refused before a model
loads (or before ``fervid serve --workers N`` starts N processes that would each fail)."""

_NOT_A_MODEL = (bool, int, float, complex, bytes, list, tuple, dict, set)
"""Types that are neither a model name or path nor a loaded model (``model=3``, ``["default"]``)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RecognizerConfig:
    """Everything that decides what an :class:`~fervid.inference.recognizer.EmotionRecognizer`
    answers, checked when made.

    Attributes:
        model: a bundled model name (``"default"``, ``"fast"``), a checkpoint path (``.pt``,
            ``.safetensors``, ``.onnx``), an ensemble of them ``"A+B[+C]"`` (``"default+fast"``:
            the mean of the members' calibrated probabilities; each member must be a bundled
            name or an existing file, checked here; their labels and crops are compared when
            they load), or a loaded model object (such a config cannot be written to JSON).
        detector: a registered detector name (``"yunet"``, with landmarks; ``"haar"``,
            ``"haar-profile"``, ``"dlib"``, ``"skip"`` for images that already are face crops)
            or a detector object (``detect(image) -> list[FaceBox]``; not written to JSON).
        photo_max_side: photos are shrunk to this longer side for detection (``None``: the
            detector's default, YuNet 640 px, Haar and dlib 1024 px). Larger finds smaller faces
            in big photos, slower.
        video_max_side: the same for video frames (``None``: the detector's video default,
            YuNet 320 px in one pass; a detector without video settings uses its photo size).
        score_threshold: the detector keeps faces scoring at least this, on photos and video
            (``None``: the detector's defaults, YuNet 0.7 on photos and 0.6 on video). Only
            detectors with such an option (YuNet) accept it.
        backend: ``"auto"`` (onnxruntime on the CPU when installed, else torch), ``"torch"`` or
            ``"onnx"``.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        threshold: probability at or above which a label is in a face's ``labels_above``.
        max_pixels: largest image, in pixels, that the service (``fervid serve``) decodes: an
            upload whose header declares more is refused before decoding (a decompression bomb
            guard).
        detector_options: any other keyword arguments of the detector (e.g.
            ``{"min_neighbors": 8}`` for Haar, ``{"coarse_side": None}`` for YuNet in one pass).
            ``max_side`` or ``score_threshold`` given here (the spelling before these fields)
            apply to photos and video alike, as they did.
    """

    model: Any = "default"
    detector: str | Detector = DEFAULT_DETECTOR
    photo_max_side: int | None = None
    video_max_side: int | None = None
    score_threshold: float | None = None
    backend: str = "auto"
    device: str = "auto"
    threshold: float = 0.3
    max_pixels: int = 50_000_000
    # hash=False: the options' values may be unhashable (lists); the config still compares by them
    detector_options: Mapping[str, Any] = field(default_factory=FrozenOptions, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.detector_options, Mapping):
            raise UserValueError(
                f"detector_options must be a mapping of option -> value, got {type(self.detector_options).__name__}"
            )
        if not isinstance(self.detector_options, FrozenOptions):
            object.__setattr__(self, "detector_options", FrozenOptions(self.detector_options))
        if isinstance(self.model, os.PathLike):  # one spelling of a path, so that configs compare and serialise
            object.__setattr__(self, "model", os.fspath(self.model))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~fervid.errors.UserValueError` naming the first field that is wrong.
        Called when the config is made (and by :func:`dataclasses.replace`)."""
        if isinstance(self.model, str) and not self.model.strip():
            raise UserValueError("model must name a bundled model or a checkpoint path, got an empty string")
        if self.model is None or isinstance(self.model, _NOT_A_MODEL):
            raise UserValueError(
                "model must be a bundled model name, a checkpoint path or a loaded model, "
                f"not {type(self.model).__name__} {self.model!r}"
            )
        if isinstance(self.model, str):
            from fervid.inference.backends import check_ensemble_members

            check_ensemble_members(self.model)  # "default+fast": each member a bundled name or a file
        if isinstance(self.detector, str):
            if not self.detector.strip():
                raise UserValueError("detector must name a detector (e.g. 'yunet'), got an empty string")
        elif not callable(getattr(self.detector, "detect", None)):
            raise UserValueError(
                f"detector must be a detector name or an object with detect(image), got {self.detector!r}"
            )
        for name in ("photo_max_side", "video_max_side"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= 1):
                raise UserValueError(f"{name} must be a whole number of pixels >= 1 or None, got {value!r}")
        if self.score_threshold is not None and not (
            _is_number(self.score_threshold) and 0.0 <= self.score_threshold <= 1.0
        ):
            raise UserValueError(f"score_threshold must be in [0, 1] or None, got {self.score_threshold!r}")
        if self.backend not in BACKENDS:
            raise UserValueError(f"unknown backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise UserValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")
        if not (_is_number(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise UserValueError(f"threshold must be in [0, 1], got {self.threshold!r}")
        if not (_is_int(self.max_pixels) and self.max_pixels >= 1):
            raise UserValueError(f"max_pixels must be a whole number >= 1, got {self.max_pixels!r}")
        for key in self.detector_options:
            if not isinstance(key, str) or not key.isidentifier():
                raise UserValueError(f"detector_options: {key!r} is not an option name")
        both = [
            (name, key)
            for name, key in (("photo_max_side", "max_side"), ("score_threshold", "score_threshold"))
            if getattr(self, name) is not None and key in self.detector_options
        ]
        if both:
            name, key = both[0]
            raise UserValueError(f"{name} and detector_options[{key!r}] both set the detector's {key}: give one")

    # ---- the detector's keyword arguments
    def detector_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the photo detector (:func:`fervid.detectors.create_detector`)."""
        kw = dict(self.detector_options)
        if self.photo_max_side is not None:
            kw["max_side"] = self.photo_max_side
        if self.score_threshold is not None:
            kw["score_threshold"] = self.score_threshold
        return kw

    def video_detector_kwargs(self, video_defaults: Mapping[str, Any] | None) -> dict[str, Any]:
        """The keyword arguments of the video detector. ``video_defaults``: the detector's own
        video settings (YuNet: :data:`~fervid.detectors.YUNET_VIDEO`), ``None`` for a
        detector without any (it then runs on frames as on photos). On top of them come
        ``detector_options`` (which apply to photos and video alike), then ``video_max_side`` and
        ``score_threshold``."""
        kw = self.detector_kwargs() if video_defaults is None else {**video_defaults, **self.detector_options}
        if self.video_max_side is not None:
            kw["max_side"] = self.video_max_side
        if self.score_threshold is not None:
            kw["score_threshold"] = self.score_threshold
        return kw

    # ---- JSON
    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (``json.dumps`` takes it; :meth:`from_dict` reads it back).
        A loaded model or detector object has no JSON form: that is a
        :class:`~fervid.errors.UserValueError` naming the field."""
        for name in ("model", "detector"):
            if not isinstance(getattr(self, name), str):
                raise UserValueError(
                    f"{name} is a {type(getattr(self, name)).__name__} object: only a {name} given by name "
                    "or path can be written to JSON"
                )
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["detector_options"] = dict(self.detector_options)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecognizerConfig:
        """A config from :meth:`to_dict`'s output (missing keys take their defaults; an unknown
        key is a :class:`~fervid.errors.UserValueError` naming it)."""
        if not isinstance(data, Mapping):
            raise UserValueError(f"a recognizer config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise UserValueError(
                f"unknown recognizer config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> RecognizerConfig:
        """A copy with some fields changed (checked again)."""
        return replace(self, **changes)


DEFAULTS = RecognizerConfig()
"""The default config: every default of a recognizer, read from here."""

__all__ = ["DEFAULTS", "FrozenOptions", "RecognizerConfig"]
