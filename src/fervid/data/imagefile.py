"""The one image-reading boundary: every image file fervid decodes goes through
:func:`decode_image`, and every folder scan picks files by :func:`image_extensions`.

- :func:`decode_image` opens, fully decodes, EXIF-orients and converts an image; **any**
  failure of the decoder (Pillow's plugins raise ``OSError``, ``SyntaxError``,
  ``ValueError``, but also ``TypeError``, ``NotImplementedError``, ``RuntimeError``,
  ``struct.error``... on files whose header parses and whose data does not) becomes an
  :class:`ImageLoadError` naming the file: a per-file error that callers report and move
  past (``predict``, ``batch``, the service's 415, lenient data loading).
- Pillow's ``DecompressionBombWarning`` (an image over ``PIL.Image.MAX_IMAGE_PIXELS``) is
  re-issued as a warning that names the file.
- :func:`verify_image` reads back an image fervid wrote, through the same decoder.
- :func:`image_extensions` is what a folder scan reads: the extensions of the formats the
  installed Pillow can open and decode (so ``.jfif``, ``.avif``, ``.jp2``... whenever the
  files load when named directly), derived from Pillow's registry, never a hand-kept list.

Thread-safe: Pillow's warnings are caught under a lock; nothing else is shared.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from fervid.data.errors import FERDataError

if TYPE_CHECKING:
    from PIL import Image as PILImage

T = TypeVar("T")

# Formats Pillow identifies but cannot decode into pixels: MPEG (header only; and .mpg
# is a video), and the stub plugins (BUFR, GRIB, HDF5, WMF: need an external handler).
_IDENTIFY_ONLY = frozenset({"MPEG"})
_WARNINGS_LOCK = threading.Lock()


class ImageLoadError(FERDataError):
    """An image could not be read or decoded (unreadable, truncated, not an image)."""


@functools.cache
def image_extensions() -> frozenset[str]:
    """Lower-case extensions (``".jpg"``, ``".jfif"``, ``".avif"``...) of every format the
    installed Pillow can open and decode: what folder scans pick up."""
    from PIL import Image, ImageFile

    Image.init()
    out = set()
    for ext, fmt in Image.registered_extensions().items():
        opener = Image.OPEN.get(fmt)
        if opener is None or fmt in _IDENTIFY_ONLY:
            continue
        factory = opener[0]
        if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
            continue
        if fmt == "EPS":
            from PIL import EpsImagePlugin

            if not EpsImagePlugin.has_ghostscript():  # EPS/PS decode through Ghostscript
                continue
        out.add(ext.lower())
    return frozenset(out)


def _reason(e: BaseException) -> str:
    from PIL import Image, UnidentifiedImageError

    msg = str(e).strip()
    if isinstance(e, UnidentifiedImageError):
        return "not a recognised image file"
    if isinstance(e, Image.DecompressionBombError):
        return f"image too large to decode safely ({msg})"
    if isinstance(e, MemoryError):
        return "not enough memory to decode this image"
    if "truncated" in msg.lower() or "premature end" in msg.lower():
        return f"truncated or corrupt image ({msg})"
    return f"unreadable image ({type(e).__name__}: {msg})" if msg else f"unreadable image ({type(e).__name__})"


def _open(src: str | os.PathLike | IO[bytes], name: str) -> PILImage.Image:
    """``Image.open`` with Pillow's decompression-bomb warning re-issued naming the file."""
    from PIL import Image

    # catch_warnings swaps process-wide state: one thread at a time (only the header parse).
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        im = Image.open(src)
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            warnings.warn(
                f"{name}: a very large image ({im.width}x{im.height} = {im.width * im.height} pixels, over "
                f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); decoding it needs a lot of memory",
                Image.DecompressionBombWarning,
                stacklevel=4,
            )
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return im


def decode_image(src: str | os.PathLike | IO[bytes], name: str, convert: Callable[[PILImage.Image], T]) -> T:
    """Open ``src`` (a path or a binary file object), decode it fully (a truncated file fails
    here, not later), apply its EXIF orientation and return ``convert(image)``.

    Raises:
        ImageLoadError: whatever goes wrong in the decoder or the conversion, naming ``name``.
    """
    from PIL import ImageOps

    try:
        with _open(src, name) as im:
            im.load()
            frames = int(getattr(im, "n_frames", 1) or 1)
            if frames > 1:  # an animated GIF/PNG/WebP: say which picture the result is about
                warnings.warn(
                    f"{name}: an animated image with {frames} frames; using the first frame only", stacklevel=3
                )
            return convert(ImageOps.exif_transpose(im))
    except ImageLoadError:
        raise
    except Exception as e:  # noqa: BLE001 -- the boundary: any decoder failure is this file's error
        raise ImageLoadError(_reason(e), name) from e


def verify_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> None:
    """Decode the image at ``path`` whole through :func:`decode_image` (``ValueError`` when it
    cannot be, whatever the decoder raised, or when its ``(width, height)`` is not ``size``):
    what every image fervid writes (annotated photos, plots, sample grids) must pass before
    it is renamed into place (``atomic_path(..., verify=verify_image)``)."""
    try:
        got = decode_image(path, str(path), lambda im: im.size)
    except ImageLoadError as e:
        raise ValueError(f"the written image does not decode ({e})") from e
    if size is not None and tuple(got) != tuple(size):
        raise ValueError(f"the written image is {got[0]}x{got[1]}, not {size[0]}x{size[1]}")


def scan_folder(
    root: str | os.PathLike, extensions: frozenset[str] | set[str] | None = None
) -> tuple[list[str], list[str]]:
    """The files under ``root`` (recursively; hidden files and folders left out), sorted, as
    ``(picked, skipped)``: ``picked`` have one of ``extensions`` (default
    :func:`image_extensions`), ``skipped`` are the others, for the caller to report."""
    exts = image_extensions() if extensions is None else extensions
    picked: list[str] = []
    skipped: list[str] = []
    base = Path(root)
    for f in sorted(base.rglob("*")):
        if any(part.startswith(".") for part in f.relative_to(base).parts) or not f.is_file():
            continue
        (picked if f.suffix.lower() in exts else skipped).append(str(f))
    return picked, skipped


def describe_skipped(skipped: list[str], what: str = "an image format fervid reads", shown: int = 3) -> str:
    """One line for the files a scan left out: how many, by extension, and the first few."""
    by_ext = Counter(Path(s).suffix.lower() or "(no extension)" for s in skipped)
    kinds = ", ".join(f"{e}: {n}" for e, n in sorted(by_ext.items(), key=lambda kv: (-kv[1], kv[0])))
    first = ", ".join(skipped[:shown]) + (", ..." if len(skipped) > shown else "")
    return f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''} not in {what} ({kinds}): {first}"
