"""Property-based tests of the image-reading boundary (issue 25): random bytes and mutations
(byte changes, truncations, insertions) of a valid file of **every format fervid scans for**
never raise anything but the per-file :class:`ImageLoadError`, from the array loader, the
grey reader of image folders, and the service (never a 500). Bounded: a deadline per
example and a fixed number of examples (hypothesis derandomised, so a run is reproducible)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis (the dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fervid.data.imagefile import ImageLoadError, decode_image, image_extensions  # noqa: E402

# A ~1 s deadline would flake on a loaded 2-core CI machine; 5 s still catches a hang.
BOUNDED = settings(
    max_examples=40,
    deadline=5000,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _seeds() -> dict[str, bytes]:
    """One small valid file per format Pillow can write among those the scans read."""
    from PIL import Image

    Image.init()
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    out: dict[str, bytes] = {}
    for ext in sorted(image_extensions()):
        fmt = Image.registered_extensions()[ext]
        if fmt not in Image.SAVE or fmt in out:
            continue
        for mode in ("RGB", "L", "1"):
            b = io.BytesIO()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # IM: deprecated, still read
                    rgb.convert(mode).save(b, fmt)
            except Exception:  # noqa: BLE001,S112 -- this format does not write this mode
                continue
            out[fmt] = b.getvalue()
            break
    return out


SEEDS = _seeds()


def test_the_seeds_cover_the_common_formats_and_decode() -> None:
    from fervid.data.io import load_image

    assert {"PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"} <= set(SEEDS)
    for fmt, data in SEEDS.items():
        assert load_image(data).shape[2] == 3, fmt


def _check(data: bytes) -> None:
    """Decodes to an RGB uint8 array, or raises ImageLoadError: nothing else."""
    from fervid.data.io import load_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # animated/huge/clipped images warn: not the property
        try:
            rgb = load_image(data)
        except ImageLoadError:
            return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.flags.c_contiguous


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed of some format with a few bytes changed, cut short, or with bytes inserted."""
    fmt = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[fmt])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["set", "truncate", "insert"]))
        last = max(0, len(data) - 1)
        # half the time in the first 128 bytes: the headers, where a parsed-but-wrong field
        # (a tag's type, a flags word) sends the decoder down a path it does not guard
        pos = draw(st.integers(0, min(127, last)) | st.integers(0, last))
        if kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@BOUNDED
@given(st.binary(max_size=4096))
def test_random_bytes_are_an_image_or_a_per_file_error(data: bytes) -> None:
    _check(data)


@BOUNDED
@given(st.sampled_from(sorted(SEEDS)).flatmap(lambda f: st.binary(max_size=512).map(lambda tail: SEEDS[f][:16] + tail)))
def test_a_format_header_with_random_data_is_an_image_or_a_per_file_error(data: bytes) -> None:
    _check(data)


@settings(BOUNDED, max_examples=150)
@given(mutated())
def test_mutated_files_of_every_format_are_an_image_or_a_per_file_error(data: bytes) -> None:
    _check(data)


# Formats whose decoding goes through a C library or a many-branched plugin: where a
# parsed-but-wrong header field raised TypeError / NotImplementedError / RuntimeError.
HEADER_FORMATS = sorted({"AVIF", "TIFF", "DDS", "JPEG2000", "WEBP", "ICNS", "SGI"} & set(SEEDS))


@st.composite
def header_mutated(draw: st.DrawFn) -> bytes:
    """1-3 bytes of the first 128 set at random. The positions and values come from a
    drawn seed: hypothesis's own integers favour boundary values (0, 127, 255), which
    miss the fields that matter; a seed spreads them evenly and stays reproducible."""
    data = bytearray(SEEDS[draw(st.sampled_from(HEADER_FORMATS))])
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for _ in range(int(rng.integers(1, 4))):
        data[int(rng.integers(0, min(128, len(data))))] = int(rng.integers(0, 256))
    return bytes(data)


@settings(BOUNDED, max_examples=150)
@given(header_mutated())
def test_header_mutations_are_an_image_or_a_per_file_error(data: bytes) -> None:
    _check(data)


@BOUNDED
@given(data=mutated())
def test_the_grey_reader_of_image_folders_has_the_same_boundary(data: bytes, tmp_path: Path) -> None:
    from fervid.data.datasets import read_image_gray

    path = tmp_path / "img.bin"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            g = read_image_gray(path)
        except ImageLoadError as e:
            assert str(path) in str(e)
            return
    assert g.shape == (48, 48) and g.dtype == np.uint8


def test_a_failing_conversion_is_the_files_error_too() -> None:
    """The boundary covers the caller's conversion, not only Pillow's decoding."""

    def convert(_im: object) -> None:
        raise TypeError("a converter bug on a strange mode")

    with pytest.raises(ImageLoadError, match=r"x\.png: unreadable image \(TypeError"):
        decode_image(io.BytesIO(SEEDS["PNG"]), "x.png", convert)


fastapi = pytest.importorskip("fastapi", reason="the service property needs the serve extra")


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from fervid import EmotionRecognizer
    from fervid.serve.app import create_app

    with TestClient(create_app(EmotionRecognizer("fast", detector="skip", backend="torch"))) as c:
        yield c


@settings(BOUNDED, max_examples=40)
@given(data=mutated())
def test_the_service_answers_an_image_or_a_client_error_never_500(data: bytes, client) -> None:
    r = client.post("/v1/predict", content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code in (200, 400, 413, 415), (r.status_code, r.text)
    if r.status_code != 200:
        assert set(r.json()["error"]) == {"code", "message"}
