"""The page's static files, the large vendored ones shipped gzip-compressed.

``web/build.sh`` stores the big vendored assets (onnxruntime-web's 14 MB WebAssembly runtime,
the Swagger UI bundle) as ``NAME.gz`` only, the original's sha256 and size recorded in
``static/vendor/precompressed.json``: the wheel and the installed package carry 4 MB instead
of 16. :class:`PrecompressedStaticFiles` serves a request for ``NAME`` from ``NAME.gz``
when ``NAME`` itself is absent:

- to a client whose ``Accept-Encoding`` allows gzip (every browser), the ``.gz`` file as it
  is, with ``Content-Encoding: gzip``, the original's content type and the same ``ETag`` /
  ``Last-Modified`` validation as any static file;
- to any other client, the original bytes, decompressed once per process and kept (a
  different ``ETag``: it is another representation).

Both answers carry ``Vary: Accept-Encoding``, so that a cache never hands one to the other
kind of client; the security headers come from the app's middleware, as for every response.
"""

from __future__ import annotations

import functools
import gzip
import mimetypes
import os
import stat

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope

__all__ = ["PrecompressedStaticFiles", "accepts_gzip"]

VARY = {"Vary": "Accept-Encoding"}


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header value allows gzip (RFC 9110, 12.5.3): ``gzip``
    (or ``x-gzip``), else ``*``, listed with a quality above 0. An empty header asks for
    the identity encoding."""
    quality: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding:
            quality[coding.lower()] = q
    for coding in ("gzip", "x-gzip", "*"):
        if coding in quality:
            return quality[coding] > 0
    return False


@functools.lru_cache(maxsize=8)
def _gunzipped(path: str, mtime_ns: int, size: int) -> bytes:
    """The decompressed content of ``path`` (keyed by its mtime and size too, so that a file
    replaced in place is read again)."""
    with gzip.open(path, "rb") as fh:
        return fh.read()


class PrecompressedStaticFiles(StaticFiles):
    """:class:`starlette.staticfiles.StaticFiles` that also serves ``NAME`` from ``NAME.gz``
    (see the module's docstring)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path.endswith(".gz"):  # how a file is stored, not a URL: its type would be guessed as the original's
            raise HTTPException(status_code=404)
        try:
            return await super().get_response(path, scope)
        except HTTPException as e:
            if e.status_code != 404 or scope["method"] not in ("GET", "HEAD"):
                raise
            not_found = e
        full_path, stat_result = await anyio.to_thread.run_sync(self.lookup_path, path + ".gz")
        if stat_result is None or not stat.S_ISREG(stat_result.st_mode):
            raise not_found
        request_headers = Headers(scope=scope)
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        encoded = FileResponse(
            full_path,
            stat_result=stat_result,
            media_type=media_type,
            headers={"Content-Encoding": "gzip", **VARY},
        )
        response: Response = encoded
        if not accepts_gzip(request_headers.get("accept-encoding", "")):
            body = await anyio.to_thread.run_sync(
                _gunzipped, os.fspath(full_path), stat_result.st_mtime_ns, stat_result.st_size
            )
            etag = encoded.headers["etag"]
            headers = {"ETag": etag[:-1] + '-identity"', "Last-Modified": encoded.headers["last-modified"], **VARY}
            response = Response(body, media_type=media_type, headers=headers)  # the server drops a HEAD's body
        if self.is_not_modified(response.headers, request_headers):
            return NotModifiedResponse(response.headers)
        return response
