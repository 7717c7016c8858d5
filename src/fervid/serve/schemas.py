"""The service's documented shapes: pydantic response models and the OpenAPI request bodies.

The endpoints answer plain JSON built by the recognizer (``ImageResult.to_dict()``); these
models document it in ``/openapi.json`` (``response_model``) and keep unknown fields
(``extra="allow"``: e.g. the landmarks of detectors that give them).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Box(BaseModel):
    x: int
    y: int
    w: int
    h: int


class Face(BaseModel):
    """One face, as in ``fervid predict --json`` (detectors that give landmarks add them)."""

    model_config = ConfigDict(extra="allow")
    box: Box
    score: float
    label: str
    confidence: float
    probabilities: dict[str, float]
    ambiguity: float = Field(description="normalised entropy of the probabilities, 0 certain .. 1 uniform")
    top2_margin: float
    ambiguous: bool
    labels_above: list[str]


class PredictResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    path: str = Field(description="the uploaded file name ('upload' for a raw body)")
    width: int
    height: int
    faces: list[Face]


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
