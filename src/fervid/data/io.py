"""Image loading for prediction: anything a user is likely to hold -> RGB ``uint8`` array.

:func:`load_image` accepts a path, raw bytes, a PIL image or a numpy array and returns a
contiguous ``H x W x 3`` RGB ``uint8`` array:

- EXIF orientation is applied (a phone portrait comes out upright);
- transparency (RGBA, LA, palette with transparency) is composited onto **white**;
- grey, 16-bit and palette images are converted (16-bit is scaled to the image's own max);
- numpy arrays are taken as **RGB** (like PIL). Pass ``color="bgr"`` for OpenCV frames
  (``cv2.imread``, ``cv2.VideoCapture.read``): channels are then reversed (BGRA too).

Unreadable, truncated or unsupported inputs raise :class:`ImageLoadError` (a
:class:`fervid.data.FERDataError`) naming the file: files and bytes are decoded through the
one image-reading boundary, :func:`fervid.data.imagefile.decode_image`, so no decoder
failure escapes as anything else.
"""

from __future__ import annotations

import io as _io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Union

import numpy as np

from fervid.data.imagefile import ImageLoadError, decode_image
from fervid.errors import UserValueError
from fervid.safety import check_input_path, special_file_kind

if TYPE_CHECKING:
    from PIL import Image as PILImage

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, "PILImage.Image", np.ndarray]
"""What :func:`load_image` (and ``EmotionRecognizer.predict``) accept."""

ColorOrder = Literal["rgb", "bgr"]


__all__ = ["ColorOrder", "ImageInput", "ImageLoadError", "describe_source", "load_image", "rgb_to_gray"]


def describe_source(image: object) -> str:
    """A short human name for an input, used in results and error messages."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<bytes: {len(image)}>"
    if isinstance(image, np.ndarray):
        return f"<array {'x'.join(map(str, image.shape))} {image.dtype}>"
    return f"<{type(image).__name__}>"


def load_image(image: ImageInput, color: ColorOrder = "rgb") -> np.ndarray:
    """Decode ``image`` to a contiguous ``H x W x 3`` RGB ``uint8`` array.

    Args:
        image: a file path, the encoded bytes of an image file, a PIL image, or a numpy
            array (``H x W`` grey, ``H x W x 1``, ``H x W x 3`` or ``H x W x 4``; ``uint8``,
            ``uint16``, ``bool`` or float in ``[0, 1]``).
        color: channel order of a numpy array input: ``"rgb"`` (default, like PIL) or
            ``"bgr"`` (OpenCV). Ignored for files, bytes and PIL images, whose order is known.

    Raises:
        ImageLoadError: unreadable, truncated or unsupported input (the message names the file).
        FileNotFoundError: a path that does not exist.
        ValueError: a path that cannot name a file (empty, a URL, a symbolic-link loop).
    """
    if color not in ("rgb", "bgr"):
        raise UserValueError(f"color must be 'rgb' or 'bgr', not {color!r}")
    if isinstance(image, np.ndarray):
        return _from_array(image, color)
    if isinstance(image, (str, os.PathLike)):
        check_input_path(image)  # before Path(): it turns "http://x" into "http:/x" and "" into "."
        path = Path(image)
        if path.is_dir():
            raise ImageLoadError("is a directory, not an image", path)
        kind = special_file_kind(path)
        if kind is not None:  # opening a FIFO blocks until a writer comes; a device never ends
            raise ImageLoadError(f"is {kind}, not an image file", path)
        return _decode(path, str(path))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(_io.BytesIO(bytes(image)), describe_source(image))
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a hard dependency
        raise
    if isinstance(image, Image.Image):
        name = describe_source(image)
        try:  # a lazily opened PIL image decodes here: the same boundary as files
            return _pil_to_rgb(image, name)
        except ImageLoadError:
            raise
        except Exception as e:  # noqa: BLE001 -- any decoder failure is this image's error
            raise ImageLoadError(f"cannot convert PIL image ({type(e).__name__}: {e})", name) from e
    raise TypeError(
        f"cannot read an image from {type(image).__name__}; pass a path, bytes, a PIL image or a numpy array"
    )


def _decode(src: Path | _io.BytesIO, name: str) -> np.ndarray:
    return decode_image(src, name, lambda im: _pil_to_rgb(im, name, oriented=True))


def _pil_to_rgb(im: PILImage.Image, name: str | None = None, *, oriented: bool = False) -> np.ndarray:
    from PIL import Image, ImageOps

    if not oriented:
        im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        scaled = arr / max(float(arr.max()), 1.0) if im.mode != "F" or arr.max() > 1 else arr
        return _from_array(scaled, "rgb", name)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _warn_clipped(arr: np.ndarray, expected: str, name: str | None) -> None:
    """Clipping changes the picture: say so rather than return a silently different image."""
    if arr.size and (float(arr.min()) < 0 or float(arr.max()) > 255):
        warnings.warn(
            f"{name or describe_source(arr)}: pixel values {float(arr.min()):g}..{float(arr.max()):g} are outside "
            f"the expected {expected} range; clipped to 0..255",
            stacklevel=4,
        )


def _to_uint8(arr: np.ndarray, name: str | None = None) -> np.ndarray:
    """``arr`` as uint8; ``name``: the file it was decoded from (else the array is described)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageLoadError("float image contains NaN or infinity", name or describe_source(arr))
        hi = float(arr.max()) if arr.size else 1.0
        scale = 255.0 if hi <= 1.0 else 1.0  # [0, 1] floats or [0, 255] floats
        _warn_clipped(arr * scale, "[0, 1] or [0, 255]", name)
        return np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        _warn_clipped(arr, "0..255", name)
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise ImageLoadError(f"unsupported array dtype {arr.dtype}", name or describe_source(arr))


def _from_array(arr: np.ndarray, color: ColorOrder, name: str | None = None) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        g = _to_uint8(arr, name)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageLoadError(
            f"expected an H x W, H x W x 3 or H x W x 4 array, got shape {arr.shape}", name or describe_source(arr)
        )
    a = _to_uint8(arr, name)
    if color == "bgr":
        a = a[:, :, [2, 1, 0, 3]] if a.shape[2] == 4 else a[:, :, ::-1]
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        a = (a[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def rgb_to_gray(rgb: np.ndarray, color: ColorOrder = "rgb") -> np.ndarray:
    """``H x W x 3`` RGB (``color="bgr"``: OpenCV's BGR) uint8 -> ``H x W`` grey uint8 (ITU-R 601
    luma, as PIL and OpenCV); a grey image is returned as it is. The one grey conversion of
    photos, video frames and detectors."""
    if rgb.ndim == 2:
        return rgb
    import cv2

    code = cv2.COLOR_BGR2GRAY if color == "bgr" else cv2.COLOR_RGB2GRAY
    return cv2.cvtColor(np.ascontiguousarray(rgb), code)
