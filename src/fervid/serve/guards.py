"""What stands between a request and the recognizer: JSON errors, the body-size and
security-header middleware, the API key, and the image checks made before any pixel is decoded."""

from __future__ import annotations

import hmac
import io
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from PIL import Image
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from fervid.errors import UserValueError
from fervid.inference.config import DEFAULTS
from fervid.serve.state import ServeState, StateDep

log = logging.getLogger("fervid.serve")

DEFAULT_MAX_UPLOAD_MB = 16.0
DEFAULT_MAX_PIXELS = DEFAULTS.max_pixels
"""Largest image accepted, in pixels declared by its header (50 MP: an 8000 x 6000 photo); the
recognizer config's default (:attr:`fervid.inference.config.RecognizerConfig.max_pixels`)."""
DEFAULT_MAX_BATCH = 32
MULTIPART_OVERHEAD = 64 * 1024
"""Bytes allowed on top of ``max_upload_mb`` for multipart boundaries and part headers."""

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}
SECURITY_HEADERS = {
    # Cross-origin isolation: lets onnxruntime-web use WebAssembly threads (SharedArrayBuffer).
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # nothing of the service is meant to be framed (the CSP's frame-ancestors too)
}
PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
    "connect-src 'self' blob: data:; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# The API docs page (Swagger UI) starts itself with an inline script: its own policy, as strict otherwise.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs",)


# --------------------------------------------------------------------------- errors


class ApiError(StarletteHTTPException):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, "payload_too_large", f"request body over the limit of {fmt_bytes(limit)}")


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**16 else f"{n:g} bytes"


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Exception handler: every HTTP error (ours, routing's 404/405) as the JSON error body."""
    code = getattr(exc, "code", None) or STATUS_CODES.get(exc.status_code, "http_error")
    headers = getattr(exc, "headers", None)
    return error_response(exc.status_code, code, str(exc.detail), dict(headers) if headers else None)


async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """Exception handler: a request FastAPI could not validate, as a 422 JSON error naming the fields."""
    msgs = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
    return error_response(422, "invalid_request", msgs or "invalid request")


# --------------------------------------------------------------------------- the guard middleware

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class Guard:
    """Pure ASGI middleware: body size limit (``Content-Length`` and while streaming),
    security headers, and a JSON 500 instead of any traceback.

    Security headers: every response gets :data:`SECURITY_HEADERS`; every HTML response
    (the page at ``/``, the same file at ``/static/index.html``, any other page a route
    or the static mount serves) also gets the page's Content-Security-Policy, decided by
    what is sent (``Content-Type: text/html``), not by a list of routes that can miss one.
    ``/docs`` gets its own policy (Swagger UI needs its inline script).

    ``HEAD``: every route that answers ``GET`` answers ``HEAD`` with the same status and
    headers and no body (RFC 9110; FastAPI's routes take only the methods they name, so
    ``curl -I /healthz`` or an uptime monitor's HEAD check got 405 from a healthy server)."""

    def __init__(self, app: ASGIApp, max_body: int, limit: int):
        self.app = app
        self.max_body = max_body  # the limit plus room for multipart boundaries and part headers
        self.limit = limit  # what the error message names

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope.get("method") == "HEAD"
        if head:  # served as GET; send_wrapper drops the body and keeps Content-Length
            scope = {**scope, "method": "GET"}
        started = False
        csp = DOCS_CSP if scope.get("path") in DOCS_PATHS else PAGE_CSP

        async def send_wrapper(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
                if headers.get("content-type", "").lower().startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", csp)
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            elif head and message["type"] == "http.response.pathsend":  # a file sent by the server itself
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await error_response(400, "bad_request", "invalid Content-Length header")(scope, receive, send_wrapper)
                return
            if n > self.max_body:
                await error_response(413, "payload_too_large", BodyTooLarge(self.limit).detail)(
                    scope, receive, send_wrapper
                )
                return
        received = 0

        async def receive_wrapper() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.limit)
            return message

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception as e:  # anything the app did not turn into a response
            if started:
                log.exception("error after the response started: %s %s", scope.get("method"), scope.get("path"))
                raise
            if isinstance(e, ApiError):
                resp = error_response(e.status_code, e.code, str(e.detail), dict(e.headers) if e.headers else None)
            else:
                log.exception("internal error: %s %s", scope.get("method"), scope.get("path"))
                resp = error_response(500, "internal_error", "internal server error (see the server log)")
            await resp(scope, receive, send_wrapper)


# --------------------------------------------------------------------------- authentication


def check_api_key(api_key: str | None) -> None:
    """Refuse a key that would leave the API open or can never be sent: empty or blank
    (``--api-key "$KEY"`` with ``KEY`` unset must not silently turn authentication off),
    with spaces at its ends (HTTP trims them from header values), or with control
    characters (not allowed in a header). ``None`` means no authentication."""
    if api_key is None:
        return
    if not isinstance(api_key, str):
        raise UserValueError(f"the API key must be a string, got {type(api_key).__name__}")
    if not api_key.strip():
        raise UserValueError(
            "the API key is empty: authentication would be off; give a non-empty key, "
            "or leave --api-key (and FERVID_API_KEY) out to serve without one"
        )
    if api_key != api_key.strip():
        raise UserValueError("the API key starts or ends with spaces, which HTTP drops from headers: remove them")
    if any(ord(c) < 32 or ord(c) == 127 for c in api_key):
        raise UserValueError("the API key contains control characters, which cannot be sent in a header")


def key_matches(given: str, key: str) -> bool:
    """Constant-time comparison of the UTF-8 bytes of the key. Header values reach the app
    as Latin-1 text (ASGI): their raw bytes are what the client sent, so a non-ASCII key
    sent as UTF-8 matches (and one typed as Latin-1 by a client does not)."""
    try:
        sent = given.encode("latin-1")
    except UnicodeEncodeError:  # not from a header: compare its UTF-8 form
        sent = given.encode("utf-8")
    return hmac.compare_digest(sent, key.encode("utf-8"))


# The two ways to send the key, as OpenAPI security schemes (the docs page's "Authorize").
key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the key given to `fervid serve --api-key`")
bearer = HTTPBearer(auto_error=False, description="the same key as a Bearer token")


async def require_key(
    key: Annotated[str | None, Depends(key_header)],
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    state: StateDep,
) -> None:
    """Dependency of the ``/v1`` endpoints: 401 unless the app has no key or the request sends it."""
    if state.api_key is None:
        return
    given = key if key is not None else (token.credentials if token is not None else None)
    if given is None:
        raise ApiError(
            401,
            "unauthorized",
            "API key required: X-API-Key header or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not key_matches(given, state.api_key):
        raise ApiError(401, "unauthorized", "wrong API key", headers={"WWW-Authenticate": "Bearer"})


# --------------------------------------------------------------------------- uploads


def check_image(name: str, data: bytes, state: ServeState) -> None:
    """Refuse, before any pixel is decoded: empty (400), too many bytes or pixels (413),
    not an image (415). Only the header is read here."""
    if not data:
        raise ApiError(400, "empty", f"{name}: the image is empty")
    if len(data) > state.max_bytes:
        raise ApiError(
            413, "payload_too_large", f"{name}: {len(data)} bytes, over the limit of {fmt_bytes(state.max_bytes)}"
        )
    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: parses the header, decodes nothing
            w, h = im.size
    except Image.DecompressionBombError as e:
        raise ApiError(413, "image_too_large", f"{name}: refused as a decompression bomb ({e})") from None
    except Exception:  # noqa: BLE001 -- whatever PIL cannot parse is "not an image" to the client
        raise ApiError(
            415, "not_an_image", f"{name}: not an image fervid can read (JPEG, PNG, BMP, TIFF, WebP, GIF...)"
        ) from None
    if w * h > state.max_pixels:
        raise ApiError(
            413,
            "image_too_large",
            f"{name}: {w}x{h} = {w * h} pixels, over the limit of {state.max_pixels} (decompression bomb guard)",
        )


def safe_name(name: str | None, default: str) -> str:
    """An uploaded file's name without any folder part (it is echoed back as ``path``)."""
    base = os.path.basename((name or "").replace("\\", "/")).strip()
    return base[:255] or default
