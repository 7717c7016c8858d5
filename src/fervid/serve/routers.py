"""The service's endpoints: :data:`api` (``/v1/*``, ``/healthz``) and :data:`page` (the web
page, its model files, the API docs). The app's shared state reaches them as a dependency
(:data:`~fervid.serve.state.StateDep`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from fervid.data.datasets import FERDataError
from fervid.errors import FervidError
from fervid.inference.backends import OnnxExportError
from fervid.serve.guards import ApiError, check_image, require_key, safe_name
from fervid.serve.schemas import BATCH_BODY, ERRORS, PREDICT_BODY, BatchResult, ErrorResponse, Health, PredictResult
from fervid.serve.state import ServeState, StateDep
from fervid.version import __version__

log = logging.getLogger("fervid.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"

api = APIRouter()
"""The REST API: prediction (key-protected when the app has a key), models, health."""
page = APIRouter()
"""The web page, the ONNX files it runs and the API docs (open, like the page itself)."""


# --------------------------------------------------------------------------- uploads and prediction


def multipart_error(detail: str, max_batch: int) -> ApiError:
    """The answer for a multipart body that Starlette's parser refused: one code for a
    malformed body (Starlette answered ``bad_request`` for some and the app ``bad_multipart``
    for others), and the batch limit for too many files (Starlette named its own limit,
    ``max_batch + 1``: "Maximum number of files is 33" for a limit of 32)."""
    if detail.startswith("Too many files"):
        return ApiError(400, "too_many_files", f"at most {max_batch} images per batch")
    return ApiError(400, "bad_multipart", f"malformed multipart body: {detail}")


async def read_uploads(request: Request, state: ServeState, many: bool) -> list[tuple[str, bytes]]:
    """The ``(name, bytes)`` of the request's images (multipart ``file``/``files`` fields, or a
    raw image body when not ``many``), each checked by :func:`~fervid.serve.guards.check_image`."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    items: list[tuple[str, bytes]] = []
    if media == "multipart/form-data":
        try:
            form = await request.form(max_files=state.max_batch + 1, max_fields=16, max_part_size=1024 * 1024)
        except ApiError:  # the body limit (413), raised while the form streams in
            raise
        except StarletteHTTPException as e:  # Starlette's 400 for a MultiPartException
            if e.status_code != 400:
                raise
            raise multipart_error(str(e.detail), state.max_batch) from None
        except Exception as e:  # noqa: BLE001 -- any other malformed body
            raise multipart_error(str(e), state.max_batch) from None
        try:
            for key, value in form.multi_items():
                if key not in ("file", "files"):
                    continue
                if isinstance(value, UploadFile):
                    items.append((safe_name(value.filename, f"upload-{len(items)}"), await value.read()))
                else:
                    # A part without a file name reaches the app as text, decoded with its bytes
                    # replaced where they are not UTF-8: an image sent so is lost, so say why.
                    raise ApiError(
                        400,
                        "not_a_file",
                        f"the multipart field {key!r} holds text, not a file: send the image as a file part "
                        f"with a file name (curl -F '{key}=@photo.jpg')",
                    )
        finally:
            await form.close()
        if not items:
            raise ApiError(400, "missing_file", "no image: send it in a multipart field named 'file'")
        if not many and len(items) > 1:
            raise ApiError(400, "too_many_files", "one image per request here; use /v1/predict/batch for several")
        if len(items) > state.max_batch:
            raise ApiError(400, "too_many_files", f"at most {state.max_batch} images per batch")
    elif many:
        raise ApiError(415, "unsupported_media_type", "send the images as multipart/form-data fields named 'file'")
    elif media in ("", "application/octet-stream") or media.startswith("image/"):
        items.append(("upload", await request.body()))
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {media!r}: send an image (image/*, application/octet-stream) "
            "or a multipart/form-data field named 'file'",
        )
    for name, data in items:
        check_image(name, data, state)
    return items


def predict_sync(state: ServeState, items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The recognizer's JSON for each image, ``path`` being its upload name (blocking)."""
    state.ensure_loaded()
    out = []
    for name, data in items:
        try:
            result = state.recognizer.predict(data)
        except FERDataError as e:  # fervid's ImageLoadError: truncated, corrupt, unsupported
            raise ApiError(415, "not_an_image", f"{name}: the image cannot be decoded ({e})") from None
        d = result.to_dict()
        d["path"] = name
        out.append(d)
    return out


async def predict(state: ServeState, items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """:func:`predict_sync` in a worker thread, at most ``max_concurrency`` at once."""
    return await anyio.to_thread.run_sync(predict_sync, state, items, limiter=state.limiter)


# --------------------------------------------------------------------------- API


@api.post(
    "/v1/predict",
    response_model=PredictResult,
    responses=ERRORS,
    openapi_extra=PREDICT_BODY,
    dependencies=[Depends(require_key)],
    tags=["predict"],
    summary="faces and emotions in one image (same JSON as `fervid predict --json`)",
)
async def predict_one(request: Request, state: StateDep) -> JSONResponse:
    items = await read_uploads(request, state, many=False)
    return JSONResponse((await predict(state, items))[0])


@api.post(
    "/v1/predict/batch",
    response_model=BatchResult,
    responses=ERRORS,
    openapi_extra=BATCH_BODY,
    dependencies=[Depends(require_key)],
    tags=["predict"],
    summary="faces and emotions in several images (multipart fields named `file`)",
)
async def predict_batch(request: Request, state: StateDep) -> JSONResponse:
    items = await read_uploads(request, state, many=True)
    return JSONResponse({"results": await predict(state, items)})


@api.get(
    "/v1/models",
    responses={401: ERRORS[401]},
    dependencies=[Depends(require_key)],
    tags=["models"],
    summary="the service's model and detector, and the models the web page runs",
)
async def models(state: StateDep) -> dict[str, Any]:
    rec = state.recognizer
    if not state.loaded:
        await anyio.to_thread.run_sync(state.ensure_loaded, limiter=state.limiter)
    det = rec.detector
    model = rec.model if isinstance(rec.model, (str, os.PathLike)) else type(rec.model).__name__
    return {
        "service": {
            "model": str(model),
            "detector": str(getattr(det, "name", type(det).__name__)),
            "backend": str(getattr(rec, "backend", "")),
            "labels": list(rec.labels),
            "max_upload_bytes": state.max_bytes,
            "max_pixels": state.max_pixels,
            "max_batch": state.max_batch,
        },
        "browser": page_index(state),
    }


def page_index(state: ServeState) -> dict[str, Any]:
    """What the page offers (:meth:`BrowserModels.index`) and ``service_model``: the server's model
    when the page can run it (a bundled model), else ``None``. The live view starts on it, so
    the camera and the API answer with the same model."""
    model = state.recognizer.model
    name = model if isinstance(model, str) and model in state.browser.names else None
    return {**state.browser.index(), "service_model": name}


@api.get("/healthz", response_model=Health, tags=["service"], summary="liveness")
async def healthz(state: StateDep) -> dict[str, Any]:
    return {
        "status": "ok",
        "model_loaded": state.loaded,
        "version": __version__,
        "auth_required": state.api_key is not None,
    }


# --------------------------------------------------------------------------- the page's files


@page.get(
    "/models/{filename}",
    tags=["web page"],
    responses={404: {"model": ErrorResponse}},
    summary="ONNX models the page runs (yunet.onnx, default.onnx, fast.onnx...), their metadata (NAME.json) "
    "and the list (index.json)",
)
async def model_file(filename: str, state: StateDep) -> Response:
    browser = state.browser
    stem, _, ext = filename.rpartition(".")
    if filename == "index.json":  # what the page offers (open, like the files themselves)
        return JSONResponse(page_index(state))
    if stem == "yunet" and ext == "onnx":
        p = browser.yunet()
        if p is None:
            raise ApiError(404, "not_found", "the YuNet weights are missing or damaged (see the server log)")
        return FileResponse(p, media_type="application/octet-stream")
    if ext not in ("onnx", "json") or stem not in browser.names:
        raise ApiError(
            404,
            "not_found",
            f"no model file {filename!r}; available: index.json, yunet.onnx, "
            + ", ".join(f"{n}.onnx, {n}.json" for n in browser.names),
        )
    try:
        if ext == "json":
            return JSONResponse(await anyio.to_thread.run_sync(browser.metadata, stem))
        path = await anyio.to_thread.run_sync(browser.path, stem)
    except (FervidError, OnnxExportError) as e:  # e.g. an unwritable cache: say what is wrong, not a bare 500
        log.error("cannot serve the model file %s: %s", filename, e)
        raise ApiError(
            500,
            "model_export_failed",
            f"cannot export {stem} for the page: {e} (the server needs a writable cache folder: set FERVID_CACHE)",
        ) from None
    return FileResponse(path, media_type="application/octet-stream")


@page.get("/", include_in_schema=False, name="page")
async def index_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@page.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="fervid API",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
    )
