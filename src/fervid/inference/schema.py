"""The one result schema: the result types and every field and column name of every output.

A face found in a photo is a :class:`FaceResult`; a face in a video frame is a
:class:`TrackedFace`, which *holds* that photo face (its field ``face``) and adds identity
(``face_id``), smoothing (``smoothed``, and ``label``/``confidence`` read from it) and the
key-frame flag. Every output is built here from these objects, so one name means one thing
everywhere:

- JSON (``fervid predict --json``, ``POST /v1/predict``, ``ImageResult.to_dict``,
  ``FrameResult.to_dict``): nested ``box``, ``probabilities``, ``smoothed`` and ``landmarks``
  objects, and :data:`SCHEMA_VERSION` at the top of each document;
- tables (``results_to_dataframe``, the video timeline CSV, ``fervid batch``'s Parquet): one
  row per face with the columns :func:`columns` (``x, y, w, h``; ``p_<label>``;
  ``smoothed_<label>``; ``<landmark>_x``/``_y``), the same for photos and video frames. A photo
  is a video of one frame: ``frame`` 0, ``time`` 0.0, ``face_id`` its 1-based position in the
  photo (there is no identity across photos), ``smoothed`` equal to ``probabilities`` (one
  observation, nothing to average), ``raw_label`` equal to ``label``, ``key_frame`` true (a
  full-image detection).

``docs/result-schema.md`` carries :func:`markdown_table`; a test keeps them equal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from fervid.detectors import LANDMARK_NAMES, Landmarks
from fervid.inference.ambiguity import AMBIGUITY_THRESHOLD, top2_margin

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = "1"
"""Version of the field and column names below: written as ``schema_version`` in every JSON
document and in the Parquet metadata (:data:`PARQUET_METADATA_KEY`). A rename or a change of
meaning raises it; a new field does not."""

PARQUET_METADATA_KEY = b"fervid_schema_version"


class Field(NamedTuple):
    """One field of the schema, as the user-facing table documents it."""

    name: str
    type: str
    where: str  # which outputs carry it
    meaning: str


DOCUMENT_FIELDS: tuple[Field, ...] = (
    Field("schema_version", "string", "document", f'this schema\'s version ("{SCHEMA_VERSION}")'),
    Field("path", "string", "photo document", "the file, or a short description of an in-memory input"),
    Field("index", "int", "frame document", "the frame's index in the source, 0-based, skipped frames counted"),
    Field("time", "float", "frame document", "seconds from the start of the video"),
    Field("width", "int", "document", "image or frame width in pixels (after EXIF orientation)"),
    Field("height", "int", "document", "image or frame height in pixels"),
    Field("faces", "list", "document", "one object per face: left to right in photos, by face_id in frames"),
)
"""The top-level keys of a photo's JSON (``schema_version, path, width, height, faces``) and a
video frame's (``schema_version, index, time, width, height, faces``)."""

FACE_FIELDS: tuple[Field, ...] = (
    Field("box", "{x, y, w, h} ints", "photo and video", "the face in the image's pixels"),
    Field("score", "float", "photo and video", "the detector's score (1.0 for whole-image input)"),
    Field("label", "string", "photo and video", "the most probable emotion (in videos: of `smoothed`)"),
    Field("confidence", "float", "photo and video", "the probability of `label` (in videos: smoothed)"),
    Field("probabilities", "label -> float", "photo and video", "every emotion of the model, calibrated, sums to 1"),
    Field("ambiguity", "float 0..1", "photo and video", "normalised entropy of `probabilities`: 0 certain, 1 uniform"),
    Field("top2_margin", "float", "photo and video", "best minus second-best of `probabilities`"),
    Field("ambiguous", "bool", "photo and video", f"`ambiguity >= {AMBIGUITY_THRESHOLD}`"),
    Field(
        "labels_above",
        "list of strings",
        "photo and video",
        "labels of `probabilities` at or above the threshold (0.3 by default), most probable first",
    ),
    Field(
        "landmarks",
        "object or null",
        "photo and video",
        "`right_eye`, `left_eye` (the person's own), `nose`, `mouth_right`, `mouth_left`: `[x, y]` pixels; "
        "null for detectors without landmarks",
    ),
)
"""A face's fields (``FaceResult.to_dict``): the same for photos and video frames. In a video,
``ambiguity``, ``top2_margin``, ``ambiguous`` and ``labels_above`` are computed on the frame's
own ``probabilities`` (not the smoothed ones), exactly as for a photo."""

TRACK_FIELDS: tuple[Field, ...] = (
    Field(
        "face_id",
        "int",
        "video JSON, every table row",
        "the person's id, stable across frames (photos: 1, 2, ... in the photo)",
    ),
    Field(
        "raw_label",
        "string",
        "video JSON, every table row",
        "the top emotion of this frame's `probabilities` (photos: `label`)",
    ),
    Field(
        "smoothed",
        "label -> float",
        "video JSON, every table row",
        "the track's exponentially smoothed probabilities (photos: `probabilities`)",
    ),
    Field(
        "key_frame", "bool", "video JSON, every table row", "the box comes from a full-frame detection (photos: true)"
    ),
)
"""What a video face adds to a photo face (``TrackedFace.to_dict``)."""

ROW_FIELDS: tuple[Field, ...] = (
    Field("source", "string", "table row", "the photo or video (JSON: `path`)"),
    Field("kind", "string", "table row", "`image` or `video`"),
    Field("frame", "int", "table row", "the frame index (photos: 0)"),
    Field("time", "float", "table row", "seconds from the start (photos: 0.0)"),
    Field("width", "int", "table row", "image or frame width"),
    Field("height", "int", "table row", "image or frame height"),
    Field("face", "int", "table row", "the face's position in its image or frame, 0-based"),
)
"""The columns that place a face in its source (tables only)."""

BOX_COLUMNS = ("x", "y", "w", "h")

LEAD_COLUMNS: tuple[str, ...] = (
    *(f.name for f in ROW_FIELDS),
    "face_id",
    *BOX_COLUMNS,
    "score",
    "label",
    "confidence",
    "raw_label",
    "ambiguity",
    "top2_margin",
    "ambiguous",
    "labels_above",
    "key_frame",
)
"""The table's columns before the per-label and landmark columns."""

LANDMARK_COLUMNS: tuple[str, ...] = tuple(f"{n}_{c}" for n in LANDMARK_NAMES for c in "xy")
"""``right_eye_x, right_eye_y, ..., mouth_left_y``."""


def prob_column(label: str) -> str:
    """The table column of one label's probability: ``p_<label>``."""
    return f"p_{label}"


def smoothed_column(label: str) -> str:
    """The table column of one label's smoothed probability: ``smoothed_<label>``."""
    return f"smoothed_{label}"


def columns(labels: Sequence[str]) -> list[str]:
    """Every table column, in order: :data:`LEAD_COLUMNS`, ``p_<label>``..., ``smoothed_<label>``...,
    :data:`LANDMARK_COLUMNS`. The DataFrame, the video CSV and the batch Parquet all have these."""
    return [
        *LEAD_COLUMNS,
        *(prob_column(lab) for lab in labels),
        *(smoothed_column(lab) for lab in labels),
        *LANDMARK_COLUMNS,
    ]


def order_columns(names: Iterable[str]) -> list[str]:
    """``names`` in the schema's order (the labels taken from the ``p_`` columns, in their
    order); names outside the schema last, sorted."""
    names = list(names)
    labels = [n[2:] for n in names if n.startswith("p_")]
    known = [c for c in columns(labels) if c in names]
    return known + sorted(set(names) - set(known))


def landmarks_json(landmarks: Landmarks | None) -> dict[str, list[float]] | None:
    """``{"right_eye": [x, y], ...}`` (pixels, 2 decimals); ``None`` stays ``None``."""
    if landmarks is None:
        return None
    return {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(LANDMARK_NAMES, landmarks)}


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class FaceResult:
    """The emotion of one face.

    Attributes:
        box: ``(x, y, w, h)`` of the detected face in the original image's pixels.
        score: the detector's score (scale depends on the detector; 1.0 for ``skip`` and
            :meth:`~fervid.inference.recognizer.EmotionRecognizer.predict_faces`).
        probabilities: every emotion label -> probability (temperature applied; sums to 1),
            in the model's label order.
        label: the most probable emotion.
        confidence: its probability.
        ambiguity: normalised entropy of ``probabilities``, 0 (one certain emotion) .. 1
            (all equally likely).
        labels_above: labels whose probability is at least the recognizer's ``threshold``
            (default 0.3), most probable first: the plausible readings of an ambiguous face.
        top2_margin: probability of the best label minus the second best (near 0: the
            model hesitates between two readings).
        ambiguous: ``ambiguity >= fervid.inference.ambiguity.AMBIGUITY_THRESHOLD``, a level set so
            that the bundled model flags about as many FER+ test faces as the ten human
            annotators disagreed on (see :mod:`fervid.inference.ambiguity`). Computed from
            ``probabilities`` when not given.
        landmarks: the detector's five landmarks ``((x, y), ...)`` in the original image's
            pixels, in :data:`fervid.detectors.LANDMARK_NAMES` order (the person's
            right eye, left eye, nose tip, right and left mouth corners); ``None`` for
            detectors without landmarks (``haar``, ``dlib``, ``skip``). The crop was
            aligned on them.
    """

    box: tuple[int, int, int, int]
    score: float
    probabilities: dict[str, float]
    label: str
    confidence: float
    ambiguity: float
    labels_above: tuple[str, ...]
    top2_margin: float | None = None
    ambiguous: bool | None = None
    landmarks: Landmarks | None = None

    def __post_init__(self) -> None:
        if self.top2_margin is None:
            object.__setattr__(self, "top2_margin", float(top2_margin(list(self.probabilities.values()))))
        if self.ambiguous is None:
            object.__setattr__(self, "ambiguous", bool(self.ambiguity >= AMBIGUITY_THRESHOLD))

    def to_dict(self) -> dict[str, Any]:
        """The face's JSON (:data:`FACE_FIELDS`, in that order)."""
        x, y, w, h = self.box
        return {
            "box": {"x": x, "y": y, "w": w, "h": h},
            "score": round(float(self.score), 4),
            "label": self.label,
            "confidence": float(self.confidence),
            "probabilities": {k: float(v) for k, v in self.probabilities.items()},
            "ambiguity": float(self.ambiguity),
            "top2_margin": float(self.top2_margin),  # type: ignore[arg-type]  # set in __post_init__
            "ambiguous": bool(self.ambiguous),
            "labels_above": list(self.labels_above),
            "landmarks": landmarks_json(self.landmarks),
        }

    def as_tracked(self, face_id: int) -> TrackedFace:
        """This photo face as a one-frame video face (see the module docstring)."""
        return TrackedFace(self, face_id, dict(self.probabilities), True)


@dataclass(frozen=True)
class TrackedFace:
    """One face in one video frame: the frame's :class:`FaceResult` plus identity, smoothing
    and the key-frame flag. The photo fields (``box``, ``score``, ``probabilities``,
    ``ambiguity``, ``top2_margin``, ``ambiguous``, ``labels_above``, ``landmarks``) are read
    from ``face`` and describe **this frame alone**; ``label`` and ``confidence`` are the
    smoothed ones, ``raw_label`` the frame's own.

    Attributes:
        face: this frame's face, exactly as a photo of the frame would give it.
        face_id: the person's id, stable across frames, shot cuts and absences (1, 2, ... in
            order of appearance; :mod:`fervid.inference.tracking`).
        smoothed: the track's exponentially smoothed probabilities (sums to 1).
        key_frame: whether the box comes from a full-frame detection (else from the
            re-detection around the track's previous box, or is that previous box).
    """

    face: FaceResult
    face_id: int
    smoothed: dict[str, float]
    key_frame: bool = True

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` in the frame's pixels."""
        return self.face.box

    @property
    def score(self) -> float:
        """The detector's score for this box."""
        return self.face.score

    @property
    def probabilities(self) -> dict[str, float]:
        """This frame's emotion probabilities (label -> p, sums to 1)."""
        return self.face.probabilities

    @property
    def label(self) -> str:
        """The top emotion of ``smoothed`` (the first of equals, in label order)."""
        return max(self.smoothed, key=self.smoothed.__getitem__)

    @property
    def confidence(self) -> float:
        """The smoothed probability of :attr:`label`."""
        return self.smoothed[self.label]

    @property
    def raw_label(self) -> str:
        """The top emotion of this frame's ``probabilities``."""
        return self.face.label

    @property
    def ambiguity(self) -> float:
        """Normalised entropy of this frame's ``probabilities``."""
        return self.face.ambiguity

    @property
    def top2_margin(self) -> float | None:
        """Best minus second-best of this frame's ``probabilities``."""
        return self.face.top2_margin

    @property
    def ambiguous(self) -> bool | None:
        """Whether this frame's ``ambiguity`` reaches the ambiguity threshold."""
        return self.face.ambiguous

    @property
    def labels_above(self) -> tuple[str, ...]:
        """This frame's labels at or above the recognizer's threshold."""
        return self.face.labels_above

    @property
    def landmarks(self) -> Landmarks | None:
        """The five landmarks in the frame's pixels, or ``None`` for detectors without them."""
        return self.face.landmarks

    def to_dict(self) -> dict[str, Any]:
        """The face's JSON: ``face_id``, then :data:`FACE_FIELDS` (``label``/``confidence``
        smoothed), then the rest of :data:`TRACK_FIELDS`."""
        return {
            "face_id": self.face_id,
            **self.face.to_dict(),
            "label": self.label,
            "confidence": float(self.confidence),
            "raw_label": self.raw_label,
            "smoothed": {k: float(v) for k, v in self.smoothed.items()},
            "key_frame": bool(self.key_frame),
        }


@dataclass(frozen=True)
class ImageResult:
    """All faces found in one image (an empty ``faces`` list when there is none).

    Attributes:
        source: the path, or a short description of an in-memory input.
        width, height: the image size in pixels (after EXIF orientation).
        faces: one :class:`FaceResult` per face, left to right.
        labels: the model's emotion labels (the keys of every face's probabilities).
    """

    source: str
    width: int
    height: int
    faces: list[FaceResult] = field(default_factory=list)
    labels: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self) -> Iterator[FaceResult]:
        return iter(self.faces)

    def to_dict(self) -> dict[str, Any]:
        """The photo's JSON document (``schema_version, path, width, height, faces``)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "path": self.source,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
        }

    def to_json(self, **kwargs: Any) -> str:
        """One JSON object (``kwargs`` go to :func:`json.dumps`)."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per face, the columns :func:`columns` (see :func:`results_to_dataframe`); needs pandas."""
        return results_to_dataframe([self])


@dataclass(frozen=True)
class FrameResult:
    """One processed video frame.

    Attributes:
        index: the frame's index in the source (0-based, counting skipped frames).
        time: seconds from the start (video time for files, wall-clock time for cameras).
        duration: seconds this processed frame stands for (``every`` / fps for files), used
            to weight time on screen.
        width, height: the frame size.
        faces: the faces found, ordered by id.
        frame: the decoded frame, ``H x W x 3`` uint8 **BGR** (OpenCV order), for drawing.
        timings: seconds spent on each stage of :data:`fervid.inference.video.STAGES` for this frame.
    """

    index: int
    time: float
    duration: float
    width: int
    height: int
    faces: list[TrackedFace]
    frame: np.ndarray = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The frame's JSON document, without the pixels (``schema_version, index, time, width,
        height, faces``)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "index": self.index,
            "time": self.time,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
        }


# --------------------------------------------------------------------------- table rows


def face_row(face: TrackedFace) -> dict[str, Any]:
    """A face's table cells (everything but :data:`ROW_FIELDS`), full precision; landmarks
    ``None`` for detectors without them."""
    x, y, w, h = face.box
    lm: list[float | None] = (
        [None] * len(LANDMARK_COLUMNS) if face.landmarks is None else [float(v) for p in face.landmarks for v in p]
    )
    return {
        "face_id": int(face.face_id),
        "x": int(x),
        "y": int(y),
        "w": int(w),
        "h": int(h),
        "score": float(face.score),
        "label": face.label,
        "confidence": float(face.confidence),
        "raw_label": face.raw_label,
        "ambiguity": float(face.ambiguity),
        "top2_margin": float(face.top2_margin),  # type: ignore[arg-type]  # set in FaceResult.__post_init__
        "ambiguous": bool(face.ambiguous),
        "labels_above": list(face.labels_above),
        "key_frame": bool(face.key_frame),
        **{prob_column(k): float(v) for k, v in face.probabilities.items()},
        **{smoothed_column(k): float(v) for k, v in face.smoothed.items()},
        **dict(zip(LANDMARK_COLUMNS, lm)),
    }


def image_rows(result: ImageResult, source: str | None = None) -> list[dict[str, Any]]:
    """The table rows of one photo (``source``: the row's source, default ``result.source``)."""
    src = result.source if source is None else source
    return [
        {
            "source": src,
            "kind": "image",
            "frame": 0,
            "time": 0.0,
            "width": result.width,
            "height": result.height,
            "face": i,
            **face_row(f.as_tracked(i + 1)),
        }
        for i, f in enumerate(result.faces)
    ]


def frame_rows(frame: FrameResult, source: str) -> list[dict[str, Any]]:
    """The table rows of one video frame."""
    return [
        {
            "source": source,
            "kind": "video",
            "frame": int(frame.index),
            "time": float(frame.time),
            "width": frame.width,
            "height": frame.height,
            "face": i,
            **face_row(f),
        }
        for i, f in enumerate(frame.faces)
    ]


def results_to_dataframe(results: Iterable[ImageResult]) -> pd.DataFrame:
    """One row per face, the columns :func:`columns` (the rows ``fervid batch`` writes for
    photos): ``labels_above`` a list, landmarks NaN for detectors without them. Images without
    faces contribute no rows. Needs pandas (``pip install 'fervid[pandas]'``)."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("to_dataframe needs pandas: pip install 'fervid[pandas]'") from e
    results = list(results)
    labels: list[str] = []
    for r in results:
        labels += [lab for lab in r.labels if lab not in labels]
    rows = [row for r in results for row in image_rows(r)]
    df = pd.DataFrame(rows, columns=columns(labels))
    df[list(LANDMARK_COLUMNS)] = df[list(LANDMARK_COLUMNS)].astype(float)  # None -> NaN, as a number column
    return df


# --------------------------------------------------------------------------- CSV


def csv_header(labels: Sequence[str]) -> list[str]:
    """The video timeline CSV's header: :func:`columns`."""
    return columns(labels)


def csv_cell(value: Any) -> str:
    """One CSV cell: floats in full (shortest round-trip) precision, booleans ``1``/``0``,
    lists ``|``-joined, ``None`` and NaN empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return "|".join(map(str, value))
    return repr(float(value)) if isinstance(value, float) else str(value)


def csv_rows(result: FrameResult, labels: Sequence[str], source: str = "") -> list[list[str]]:
    """The timeline CSV rows of one frame, in :func:`csv_header` order."""
    cols = columns(labels)
    return [[csv_cell(row.get(c)) for c in cols] for row in frame_rows(result, source)]


# --------------------------------------------------------------------------- documentation


def markdown_table() -> str:
    """The schema as the Markdown table of ``docs/result-schema.md`` (a test keeps them equal)."""
    lines = ["| field | type | in | meaning |", "|---|---|---|---|"]
    for f in (*DOCUMENT_FIELDS, *FACE_FIELDS, *TRACK_FIELDS, *ROW_FIELDS):
        lines.append(f"| `{f.name}` | {f.type} | {f.where} | {f.meaning} |")
    return "\n".join(lines)


def field_names(fields: Iterable[Field]) -> list[str]:
    """The names of ``fields``, in order."""
    return [f.name for f in fields]
