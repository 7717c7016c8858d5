"""The service's documented shapes: pydantic response models and the OpenAPI request bodies.

The endpoints answer plain JSON built by the recognizer (``ImageResult.to_dict()``); these
models document it in ``/openapi.json`` (``response_model``) and keep unknown fields
(``extra="allow"``: e.g. the landmarks of detectors that give them).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fervid.inference.schema import DOCUMENT_FIELDS, FACE_FIELDS


class Box(BaseModel):
    x: int
    y: int
    w: int
    h: int


# Field names and descriptions come from the one result schema (fervid.inference.schema);
# tests/test_contract.py keeps these models' field sets equal to it.
_FACE = {f.name: f.meaning for f in FACE_FIELDS}
_DOC = {f.name: f.meaning for f in DOCUMENT_FIELDS}


class Face(BaseModel):
    """One face, as in ``fervid predict --json`` (:data:`fervid.inference.schema.FACE_FIELDS`)."""

    model_config = ConfigDict(extra="allow")
    box: Box = Field(description=_FACE["box"])
    score: float = Field(description=_FACE["score"])
    label: str = Field(description=_FACE["label"])
    confidence: float = Field(description=_FACE["confidence"])
    probabilities: dict[str, float] = Field(description=_FACE["probabilities"])
    ambiguity: float = Field(description=_FACE["ambiguity"])
    top2_margin: float = Field(description=_FACE["top2_margin"])
    ambiguous: bool = Field(description=_FACE["ambiguous"])
    labels_above: list[str] = Field(description=_FACE["labels_above"])
    landmarks: dict[str, list[float]] | None = Field(description=_FACE["landmarks"])


class PredictResult(BaseModel):
    """One photo, as ``ImageResult.to_dict()`` (:data:`fervid.inference.schema.DOCUMENT_FIELDS`)."""

    model_config = ConfigDict(extra="allow")
    schema_version: str = Field(description=_DOC["schema_version"])
    path: str = Field(description="the uploaded file name ('upload' for a raw body)")
    width: int = Field(description=_DOC["width"])
    height: int = Field(description=_DOC["height"])
    faces: list[Face] = Field(description=_DOC["faces"])


class BatchResult(BaseModel):
    results: list[PredictResult]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    model_loaded: bool
    version: str
    auth_required: bool


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in (
        (400, "empty body, no file field or malformed multipart"),
        (401, "missing or wrong API key"),
        (413, "body over the upload limit, or an image declaring too many pixels"),
        (415, "not an image, or an image that cannot be decoded"),
        (422, "invalid request"),
        (500, "internal error (details in the server log)"),
    )
}
"""The documented error answers of the ``/v1`` endpoints (``responses=``)."""

# The upload endpoints read the request themselves (multipart or a raw image body, with the
# size and pixel guards before any parsing), so their bodies are declared here for the docs.
IMAGE_BODY = {"type": "string", "format": "binary"}
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": {"file": IMAGE_BODY}}
            },
            "image/jpeg": {"schema": IMAGE_BODY},
            "image/png": {"schema": IMAGE_BODY},
            "application/octet-stream": {"schema": IMAGE_BODY},
        },
    }
}
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "array", "items": IMAGE_BODY}},
                }
            }
        },
    }
}
