"""Fault campaign, round 3 (issue 25, part B): a second fresh campaign of hostile-but-realistic
cases, weighted on what issue 21 added (RecognizerConfig and its JSON, the shared CLI recognizer
arguments, ensembles ``A+B``, the split service and ``FERVID_SERVE_CONFIG``, the weights
catalogue, the detectors package, the pipeline's tables).

Each case states what a user should get and is classified from what happens:

- ``clean``: the expected answer (a result, or a one-line error naming the field/file at fault);
- ``traceback``: an exception that is not a :class:`fervid.errors.FervidError` (the CLI would
  print a traceback; the service a 500);
- ``silently wrong``: success where an error was due, or a wrong result;
- ``data loss``: an input or earlier output destroyed;
- ``unclear``: an error, but one that does not name what is wrong (or a valid input refused).

Run (about 2-4 minutes on a shared 2-core CPU; needs the ``serve`` and ``batch`` extras and the
real photos of ``../shared/data/media``, or ``$FERVID_DATA/media``)::

    PYTHONPATH=src python benchmarks/fault_campaign2.py [--only PREFIX] [--verbose]

It prints one row per case and the totals per class. Everything it writes goes to a temporary
folder (a copy of the package's weights for the catalogue cases; the repository is never edited).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FERVID_DATA", REPO.parent / "shared" / "data"))
MEDIA = DATA / "media"


@dataclass
class Outcome:
    klass: str
    observed: str


@dataclass
class Case:
    cid: str
    command: str
    expected: str
    run: Callable[[], Outcome]


CASES: list[Case] = []


def short(text: str, n: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _is_user_error(e: BaseException) -> bool:
    from fervid.errors import FervidError

    return isinstance(e, FervidError)


def judge_error(fn: Callable[[], Any], names: tuple[str, ...], type_error_ok: bool = False) -> Outcome:
    """An error is due: a FervidError naming every one of ``names`` (``type_error_ok``: a
    TypeError is the Python answer to an argument of the wrong type, in the API)."""
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001 - classifying is the point
        msg = f"{type(e).__name__}: {e}"
        if not _is_user_error(e) and not (type_error_ok and isinstance(e, TypeError)):
            return Outcome("traceback", short(msg))
        missing = [n for n in names if n.lower() not in str(e).lower()]
        return Outcome("unclear" if missing else "clean", short(msg))
    return Outcome("silently wrong", short(f"accepted: {value!r}"))


def judge_ok(fn: Callable[[], Any], check: Callable[[Any], str | None] | None = None) -> Outcome:
    """Success is due; ``check(value)`` returns a complaint or None."""
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001
        msg = f"{type(e).__name__}: {e}"
        return Outcome("unclear" if _is_user_error(e) else "traceback", short("refused: " + msg))
    complaint = check(value) if check else None
    if complaint:
        return Outcome("silently wrong", short(complaint))
    return Outcome("clean", short(f"ok: {value!r}" if not isinstance(value, str) else value))


class WouldServe(Exception):
    """Raised instead of starting a server: a serve case reached ``uvicorn.run``."""


def _no_server(*args: Any, **kwargs: Any) -> None:
    raise WouldServe(f"uvicorn.run{args[:1]} workers={kwargs.get('workers')}")


def run_cli(argv: list[str]) -> tuple[int, str, str, BaseException | None]:
    """``fervid ARGV`` in-process (a server is never started: ``uvicorn.run`` answers "would serve")."""
    import uvicorn

    from fervid.cli import main

    uvicorn.run = _no_server

    out, err = io.StringIO(), io.StringIO()
    exc: BaseException | None = None
    rc = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = int(e.code or 0) if not isinstance(e.code, str) else 1
        except WouldServe as e:
            rc, _ = 0, print(f"would serve: {e}")
        except Exception as e:  # noqa: BLE001
            exc = e
            rc = -1
    return rc, out.getvalue(), err.getvalue(), exc


def judge_cli(
    argv: list[str], *, error: bool, names: tuple[str, ...] = (), check: Callable[..., str | None] | None = None
) -> Outcome:
    rc, out, err, exc = run_cli(argv)
    if exc is not None:
        return Outcome("traceback", short(f"{type(exc).__name__}: {exc}"))
    if "Traceback" in err:
        return Outcome("traceback", short(err.strip().splitlines()[-1]))
    last = short(err.strip().splitlines()[-1] if err.strip() else out.strip()[-200:])
    if error:
        if rc == 0:
            return Outcome("silently wrong", f"exit 0: {last}")
        missing = [n for n in names if n.lower() not in err.lower()]
        return Outcome("unclear" if missing else "clean", f"exit {rc}: {last}")
    if rc != 0:
        return Outcome("unclear", f"exit {rc}: {last}")
    complaint = check(out, err) if check else None
    return Outcome("silently wrong" if complaint else "clean", short(complaint or f"exit 0: {last}"))


def EmotionRecognizer_(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - the class, imported late
    from fervid import EmotionRecognizer

    return EmotionRecognizer(*args, **kwargs)


def rec_from_config(config: Any) -> Any:
    from fervid import EmotionRecognizer

    return EmotionRecognizer.from_config(config)


def error_case(
    cid: str, command: str, expected: str, fn: Callable[[], Any], names: tuple[str, ...], type_error_ok: bool = False
) -> None:
    """A case whose answer is ``fn()`` raising a user error naming ``names``."""
    CASES.append(Case(cid, command, expected, lambda: judge_error(fn, names, type_error_ok)))


def cli_error_case(cid: str, command: str, expected: str, argv: list[str], names: tuple[str, ...]) -> None:
    """A case whose answer is ``fervid ARGV`` failing with an error line naming ``names``."""
    CASES.append(Case(cid, command, expected, lambda: judge_cli(argv, error=True, names=names)))


def crashed(exc: BaseException | None, err: str) -> Outcome | None:
    """The traceback outcome of a CLI run (an exception escaped, or a traceback on stderr), else None."""
    if exc is not None or "Traceback" in err:
        return Outcome("traceback", short(repr(exc) + err[-200:]))
    return None


def judge_cli_keeps(path: Path, argv: list[str], names: tuple[str, ...]) -> Outcome:
    """:func:`judge_cli` of an error that must also leave ``path`` (an input) as it was."""
    before = _fp(path)
    o = judge_cli(argv, error=True, names=names)
    return o if _fp(path) == before else Outcome("data loss", f"{path.name} was overwritten: {o.observed}")


def _fp(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def case(cid: str, command: str, expected: str) -> Callable[[Callable[[], Outcome]], Callable[[], Outcome]]:
    def deco(fn: Callable[[], Outcome]) -> Callable[[], Outcome]:
        CASES.append(Case(cid, command, expected, fn))
        return fn

    return deco


# --------------------------------------------------------------------------- fixtures

TMP = Path(tempfile.mkdtemp(prefix="fervid-campaign2-"))
FACE = MEDIA / "obama-480p.jpg"


def blank(name: str = "blank.png", shape: tuple[int, ...] = (120, 160, 3), value: int = 128) -> Path:
    from PIL import Image

    p = TMP / name
    Image.fromarray(np.full(shape, value, np.uint8)).save(p)
    return p


def video(name: str, frames: int, size: tuple[int, int] = (160, 120), fps: float = 10.0) -> Path:
    import cv2
    from PIL import Image

    p = TMP / name
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    img = np.asarray(Image.open(FACE).convert("RGB").resize(size))[:, :, ::-1].copy()
    for _ in range(frames):
        w.write(img)
    w.release()
    return p


_SHARED: dict[str, Any] = {}
_A_FILE = TMP / "a-file"
_A_FILE.write_text("a file, not a folder")


def rec_fast() -> Any:
    from fervid import EmotionRecognizer

    if "rec" not in _SHARED:
        _SHARED["rec"] = EmotionRecognizer("fast", backend="onnx")
    return _SHARED["rec"]


def cfg(**kw: Any) -> Any:
    from fervid import RecognizerConfig

    return RecognizerConfig(**kw)


def from_dict(d: Any) -> Any:
    from fervid import RecognizerConfig

    return RecognizerConfig.from_dict(d)


# ---- A. RecognizerConfig and its JSON round trip (API)

_BAD_FIELDS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("A01", {"threshold": float("nan")}, ("threshold",)),
    ("A02", {"threshold": float("inf")}, ("threshold",)),
    ("A03", {"threshold": "0.5"}, ("threshold",)),
    ("A04", {"threshold": True}, ("threshold",)),
    ("A05", {"photo_max_side": -5}, ("photo_max_side",)),
    ("A06", {"photo_max_side": 0}, ("photo_max_side",)),
    ("A07", {"photo_max_side": 640.0}, ("photo_max_side",)),
    ("A08", {"video_max_side": "320"}, ("video_max_side",)),
    ("A09", {"score_threshold": -0.1}, ("score_threshold",)),
    ("A10", {"score_threshold": float("nan")}, ("score_threshold",)),
    ("A11", {"max_pixels": 0}, ("max_pixels",)),
    ("A12", {"max_pixels": 1e9}, ("max_pixels",)),
    ("A13", {"backend": "tensorrt"}, ("backend",)),
    ("A14", {"backend": ["onnx"]}, ("backend",)),
    ("A15", {"device": 0}, ("device",)),
    ("A16", {"device": "gpu"}, ("device",)),
    ("A17", {"device": "cuda:-1"}, ("device",)),
    ("A18", {"detector": ""}, ("detector",)),
    ("A19", {"detector": "retinaface"}, ("detector",)),
    ("A20", {"detector": 5}, ("detector",)),
    ("A21", {"model": 3}, ("model",)),
    ("A22", {"model": ["default"]}, ("model",)),
    ("A23", {"detector_options": [("max_side", 5)]}, ("detector_options",)),
    ("A24", {"detector_options": {"": 1}}, ("detector_options",)),
    ("A25", {"detector_options": {"max_side": 640}, "photo_max_side": 320}, ("photo_max_side", "max_side")),
]

for _cid, _kw, _names in _BAD_FIELDS:

    def _mk(kw: dict[str, Any] = _kw, names: tuple[str, ...] = _names) -> Outcome:
        from fervid import EmotionRecognizer

        return judge_error(lambda: EmotionRecognizer.from_config(cfg(**kw)), names)

    case(_cid, f"EmotionRecognizer.from_config(RecognizerConfig(**{_kw!r}))", f"UserValueError naming {_names}")(_mk)


error_case(
    "A26",
    "RecognizerConfig.from_dict(json.loads('{\"threshold\": NaN}'))",
    "UserValueError naming threshold",
    lambda: from_dict(json.loads('{"threshold": NaN}')),
    ("threshold",),
)


error_case(
    "A27",
    "from_dict({'thresold': 0.5}) (typo)",
    "error naming 'thresold' and the known keys",
    lambda: from_dict({"thresold": 0.5}),
    ("thresold", "threshold"),
)


error_case(
    "A28",
    "from_dict({1: 2, 'model': 'fast'}) (non-string key)",
    "error naming the key",
    lambda: from_dict({1: 2, "model": "fast"}),
    ("1",),
)


error_case(
    "A29",
    "from_dict(['model', 'fast'])",
    "error: a JSON object is needed",
    lambda: from_dict(["model", "fast"]),
    ("object",),
)


@case("A30", "from_dict(cfg.to_dict()) round trip with detector_options and every field", "equal config")
def _a30() -> Outcome:
    c = cfg(
        model="fast",
        detector="haar",
        photo_max_side=900,
        video_max_side=300,
        threshold=0.2,
        backend="onnx",
        device="cpu",
        max_pixels=1234,
        detector_options={"min_neighbors": 6},
    )
    back = from_dict(json.loads(json.dumps(c.to_dict())))
    return judge_ok(lambda: back, lambda b: None if b == c else f"round trip changed it: {b!r}")


@case("A31", "from_dict({'model': 'fast', 'detector_options': None})", "defaults (no options) or a clear error")
def _a31() -> Outcome:
    try:
        v = from_dict({"model": "fast", "detector_options": None})
    except Exception as e:  # noqa: BLE001
        return Outcome(
            "clean" if _is_user_error(e) and "detector_options" in str(e) else "traceback",
            short(f"{type(e).__name__}: {e}"),
        )
    return Outcome("clean", short(repr(v)))


error_case(
    "A32",
    "from_dict(newer config with 'schema_version': 2, 'tta': 'flip')",
    "error naming the unknown keys",
    lambda: from_dict({"model": "fast", "schema_version": 2, "tta": "flip"}),
    ("schema_version", "tta"),
)


error_case(
    "A33",
    "RecognizerConfig(model='fast', detector_options={'max_side': -5}) then EmotionRecognizer",
    "error naming max_side",
    lambda: rec_from_config(cfg(model="fast", detector_options={"max_side": -5})),
    ("max_side",),
)


error_case(
    "A34",
    "RecognizerConfig(detector='haar', score_threshold=0.5) -> recognizer",
    "error: haar has no score_threshold",
    lambda: rec_from_config(cfg(model="fast", detector="haar", score_threshold=0.5)),
    ("score_threshold",),
)


error_case(
    "A35",
    "RecognizerConfig(model='/nonexistent/m.pt')",
    "error naming the path",
    lambda: EmotionRecognizer_(model="/nonexistent/m.pt").predict(str(FACE)),
    ("/nonexistent/m.pt",),
)


error_case(
    "A36",
    "RecognizerConfig(model='Fast') (wrong case)",
    "error naming the model and the bundled names",
    lambda: EmotionRecognizer_(model="Fast", backend="onnx").predict(str(FACE)),
    ("Fast", "fast"),
)


@case("A37", "config.to_dict() of a recognizer with a detector object", "error naming detector")
def _a37() -> Outcome:
    class D:
        def detect(self, image: Any) -> list[Any]:
            return []

    return judge_error(lambda: cfg(model="fast", detector=D()).to_dict(), ("detector",))


error_case(
    "A38",
    "dataclasses.replace(cfg, threshold=2)",
    "error naming threshold",
    lambda: cfg(model="fast").replace(threshold=2),
    ("threshold",),
)


error_case(
    "A39",
    "RecognizerConfig(model='fast', detector='yunet', detector_options={'coarse_side': 'big'})",
    "error naming coarse_side",
    lambda: rec_from_config(cfg(model="fast", detector_options={"coarse_side": "big"})),
    ("coarse_side",),
)


error_case(
    "A40",
    "EmotionRecognizer('fast', detector='haar', detector_options={'equalize': 'no'})",
    "error naming equalize (a string is not a bool)",
    lambda: EmotionRecognizer_("fast", detector="haar", detector_options={"equalize": "no"}),
    ("equalize",),
)


error_case(
    "A41",
    "EmotionRecognizer('fast', detector='haar', detector_options={'cascade': 'nope.xml'}).predict(photo)",
    "error naming the cascade",
    lambda: EmotionRecognizer_(
        "fast", detector="haar", backend="onnx", detector_options={"cascade": "nope.xml"}
    ).predict(str(FACE)),
    ("nope.xml",),
)


error_case(
    "A42",
    "EmotionRecognizer('fast', detector_options={'model': '/tmp/missing.onnx'}).predict(photo)",
    "error naming the file",
    lambda: EmotionRecognizer_("fast", backend="onnx", detector_options={"model": "/tmp/missing.onnx"}).predict(
        str(FACE)
    ),
    ("missing.onnx",),
)


error_case(
    "A43",
    "EmotionRecognizer('fast', detector='haar', detector_options={'profile': 'yes'})",
    "error naming profile",
    lambda: EmotionRecognizer_("fast", detector="haar", detector_options={"profile": "yes"}),
    ("profile",),
)


error_case(
    "A44",
    "EmotionRecognizer('fast', detector='yunet', detector_options={'backend': 'cuda'})",
    "error naming the backend",
    lambda: EmotionRecognizer_("fast", detector_options={"backend": "cuda"}),
    ("backend",),
)


@case("A45", "EmotionRecognizer('fast', threshold=1.0) on a face", "ok: labels_above may be empty, no error")
def _a45() -> Outcome:
    from fervid import EmotionRecognizer

    return judge_ok(
        lambda: EmotionRecognizer("fast", backend="onnx", threshold=1.0).predict(str(FACE)),
        lambda r: None if len(r.faces) == 1 else f"{len(r.faces)} faces",
    )


@case("A46", "RecognizerConfig(model='fast', photo_max_side=10**9) -> predict(photo)", "ok (1 face) or a clear error")
def _a46() -> Outcome:
    from fervid import EmotionRecognizer

    def go() -> Any:
        return EmotionRecognizer.from_config(cfg(model="fast", backend="onnx", photo_max_side=10**9)).predict(str(FACE))

    try:
        r = go()
    except Exception as e:  # noqa: BLE001
        return Outcome(
            "clean" if _is_user_error(e) and "max_side" in str(e) else "traceback", short(f"{type(e).__name__}: {e}")
        )
    return Outcome("clean" if len(r.faces) == 1 else "silently wrong", f"{len(r.faces)} faces")


error_case(
    "A47",
    "RecognizerConfig(model='fast', detector_options={'max_side': True})",
    "error naming max_side",
    lambda: rec_from_config(cfg(model="fast", detector_options={"max_side": True})),
    ("max_side",),
)


error_case(
    "A48",
    "RecognizerConfig(model='fast', detector='skip', detector_options={'max_side': 100})",
    "error: skip has no options",
    lambda: rec_from_config(cfg(model="fast", detector="skip", detector_options={"max_side": 100})),
    ("max_side",),
)


error_case(
    "A49",
    "RecognizerConfig(model='fast', detector='skip', photo_max_side=100)",
    "error: skip has no max_side",
    lambda: rec_from_config(cfg(model="fast", detector="skip", photo_max_side=100)),
    ("max_side",),
)


@case("A51", "EmotionRecognizer(model=<a folder>).predict(photo)", "error naming the folder")
def _a51() -> Outcome:
    from fervid import EmotionRecognizer

    (TMP / "a51").mkdir(exist_ok=True)
    return judge_error(
        lambda: EmotionRecognizer(model=str(TMP / "a51"), backend="torch", device="cpu").predict(str(FACE)), ("a51",)
    )


cli_error_case(
    "A52",
    "fervid serve --workers 2 --device gpu (checked before the workers start)",
    "exit != 0 naming the device",
    ["serve", "--workers", "2", "--device", "gpu", "--port", "0"],
    ("gpu",),
)


@case(
    "A53",
    "fervid serve --workers 2 --model fast --threshold 0.2 -> the workers' FERVID_SERVE_CONFIG",
    "would serve, and the env config rebuilds the same recognizer",
)
def _a53() -> Outcome:
    from fervid.serve.app import ENV_CONFIG

    old = os.environ.pop(ENV_CONFIG, None)
    try:
        rc, out, err, exc = run_cli(["serve", "--workers", "2", "--model", "fast", "--threshold", "0.2", "--port", "0"])
        text = os.environ.get(ENV_CONFIG, "")
    finally:
        os.environ.pop(ENV_CONFIG, None)
        if old is not None:
            os.environ[ENV_CONFIG] = old
    if (crash := crashed(exc, err)) is not None:
        return crash
    if "would serve" not in out:
        return Outcome("unclear", short(f"exit {rc} {err}"))
    data = json.loads(text)
    ok = data.get("model") == "fast" and data.get("threshold") == 0.2
    return Outcome("clean" if ok else "silently wrong", short(text))


error_case(
    "A54",
    "EmotionRecognizer('fast', detector='haar-profile', detector_options={'profile': False})",
    "error: haar-profile has no option profile (found by the property test)",
    lambda: EmotionRecognizer_("fast", detector="haar-profile", detector_options={"profile": False}),
    ("profile",),
)


@case(
    "A50", "RecognizerConfig(model='fast', video_max_side=2) -> stream a video", "error naming video_max_side/max_side"
)
def _a50() -> Outcome:
    from fervid import EmotionRecognizer

    v = video("a50.mp4", 3)
    return judge_error(
        lambda: list(EmotionRecognizer.from_config(cfg(model="fast", backend="onnx", video_max_side=2)).stream(str(v))),
        ("max_side",),
    )


# ---- B. ensembles "A+B" on every entry point

_ENSEMBLE_BAD: list[tuple[str, str, tuple[str, ...]]] = [
    ("B01", "default+nope", ("nope",)),
    ("B02", "default+", ("default+",)),
    ("B03", "+", ("+",)),
    ("B04", "+fast", ("+fast",)),
    ("B05", "fast++default", ("fast++default",)),
    ("B06", "./x.onnx+fast", ("x.onnx",)),
    ("B07", "default+ferplus", ("ferplus",)),
]

for _cid, _spec, _names in _ENSEMBLE_BAD:

    def _mk_api(spec: str = _spec, names: tuple[str, ...] = _names) -> Outcome:
        from fervid import EmotionRecognizer

        return judge_error(lambda: EmotionRecognizer(spec, backend="onnx").predict(str(FACE)), names)

    case(_cid, f"EmotionRecognizer({_spec!r}).predict(photo)", f"error naming {_names}")(_mk_api)


@case(
    "B08",
    "EmotionRecognizer('fast + default').predict(photo) (spaces)",
    "an error naming it, or the answer of 'fast+default'",
)
def _b08() -> Outcome:
    from fervid import EmotionRecognizer

    try:
        r = EmotionRecognizer("fast + default", backend="onnx").predict(str(FACE))
    except Exception as e:  # noqa: BLE001
        return Outcome(
            "clean" if _is_user_error(e) and "fast + default" in str(e) else "traceback",
            short(f"{type(e).__name__}: {e}"),
        )
    ref = EmotionRecognizer("fast+default", backend="onnx").predict(str(FACE))
    a, b = r.faces[0].probabilities, ref.faces[0].probabilities
    same = all(abs(a[k] - b[k]) < 1e-6 for k in a)
    return Outcome("clean" if same else "silently wrong", f"accepted, equal to fast+default: {same}")


error_case(
    "B20",
    "EmotionRecognizer('fast+fast-cnn-fer2013') (a model and its alias)",
    "error: the same model twice",
    lambda: EmotionRecognizer_("fast+fast-cnn-fer2013", backend="onnx").predict(str(FACE)),
    ("fast-cnn-fer2013",),
)


cli_error_case(
    "B21",
    "fervid evaluate fast fast-cnn-fer2013 --data test --max-images 20",
    "exit 1: the same model twice",
    [
        "evaluate",
        "fast",
        "fast-cnn-fer2013",
        "--data",
        str(DATA / "fer2013-images" / "test"),
        "--max-images",
        "20",
        "--no-progress",
        "--no-report",
    ],
    ("fast-cnn-fer2013",),
)


@case("B22", "EmotionRecognizer('./fast.safetensors-copy+' + abs path of the same file)", "error: one file twice")
def _b22() -> Outcome:
    from fervid import EmotionRecognizer
    from fervid.models.bundled import weight_file

    p = TMP / "b22.safetensors"
    shutil.copy(weight_file("fast", "torch").path, p)
    rel = os.path.relpath(p)
    return judge_error(
        lambda: EmotionRecognizer(f"{rel}+{p}", backend="torch", device="cpu").predict(str(FACE)), ("b22.safetensors",)
    )


@case(
    "B09",
    "EmotionRecognizer('fast+fast').predict(photo) (duplicate member)",
    "error naming the duplicate, or the same answer as 'fast'",
)
def _b09() -> Outcome:
    from fervid import EmotionRecognizer

    try:
        r = EmotionRecognizer("fast+fast", backend="onnx").predict(str(FACE))
    except Exception as e:  # noqa: BLE001
        ok = _is_user_error(e) and "fast" in str(e)
        return Outcome("clean" if ok else "traceback", short(f"{type(e).__name__}: {e}"))
    single = rec_fast().predict(str(FACE))
    a, b = r.faces[0].probabilities, single.faces[0].probabilities
    same = a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-5 for k in a)
    return Outcome("clean" if same else "silently wrong", f"accepted, same as fast: {same}")


@case("B10", "EmotionRecognizer('default+fast').predict(photo)", "ok: 1 face, probabilities sum to 1")
def _b10() -> Outcome:
    from fervid import EmotionRecognizer

    def chk(r: Any) -> str | None:
        if len(r.faces) != 1:
            return f"{len(r.faces)} faces"
        s = sum(r.faces[0].probabilities.values())
        return None if abs(s - 1) < 1e-4 else f"sum {s}"

    return judge_ok(lambda: EmotionRecognizer("default+fast", backend="onnx").predict(str(FACE)), chk)


cli_error_case(
    "B11",
    "fervid predict photo --model default+nope",
    "exit 1 naming nope",
    ["predict", str(FACE), "--model", "default+nope", "--no-progress"],
    ("nope",),
)


cli_error_case(
    "B12",
    "fervid predict photo --model default+ferplus",
    "exit 1 naming ferplus and the labels",
    ["predict", str(FACE), "--model", "default+ferplus", "--backend", "onnx", "--no-progress"],
    ("ferplus",),
)


@case("B13", "fervid video clip --model + --csv out.csv", "exit 1 naming '+'")
def _b13() -> Outcome:
    v = video("b13.mp4", 3)
    return judge_cli(
        ["video", str(v), "--model", "+", "--csv", str(TMP / "b13.csv"), "--no-progress"], error=True, names=("+",)
    )


@case("B14", "fervid batch photo --model default+ --out b14.parquet", "exit 1 naming 'default+', nothing written")
def _b14() -> Outcome:
    o = judge_cli(
        ["batch", str(FACE), "--model", "default+", "--out", str(TMP / "b14.parquet"), "--no-progress"],
        error=True,
        names=("default+",),
    )
    if o.klass == "clean" and any(TMP.glob("b14*")):
        return Outcome("silently wrong", f"left {sorted(p.name for p in TMP.glob('b14*'))}")
    return o


cli_error_case(
    "B15",
    "fervid evaluate default+nope --data fer2013-images/test --max-images 20",
    "exit 1 naming nope",
    [
        "evaluate",
        "default+nope",
        "--data",
        str(DATA / "fer2013-images" / "test"),
        "--max-images",
        "20",
        "--no-progress",
        "--no-report",
    ],
    ("nope",),
)


cli_error_case(
    "B16",
    "fervid evaluate default+ --data fer2013-images/test --max-images 20",
    "exit 1 naming the empty member",
    [
        "evaluate",
        "default+",
        "--data",
        str(DATA / "fer2013-images" / "test"),
        "--max-images",
        "20",
        "--no-progress",
        "--no-report",
    ],
    ("default+",),
)


cli_error_case(
    "B17",
    "fervid serve --model default+nope (checked before binding)",
    "exit 1 naming nope",
    ["serve", "--model", "default+nope", "--port", "0"],
    ("nope",),
)


cli_error_case(
    "B18",
    "fervid export default+fast --out e.onnx",
    "exit 1: an ensemble cannot be exported as one file (named)",
    ["export", "default+fast", "--out", str(TMP / "b18.onnx"), "--no-check", "--no-progress"],
    ("default+fast",),
)


@case("B19", "EmotionRecognizer('default+fast', backend='torch').predict_faces(crop)", "ok, 1 result")
def _b19() -> Outcome:
    from fervid import EmotionRecognizer

    crop = np.full((48, 48), 120, np.uint8)
    return judge_ok(
        lambda: EmotionRecognizer("default+fast", backend="torch", device="cpu").predict_faces(crop),
        lambda r: None if len(r) == 1 else f"{len(r)}",
    )


# ---- C. the shared CLI recognizer arguments on predict / video / batch / serve

_CLI_BAD: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("C01", ["--detector-option", "max_side=-5"], ("max_side",)),
    ("C02", ["--detector-option", "max_side"], ("max_side",)),
    ("C03", ["--detector-option", "=5"], ("=5",)),
    ("C04", ["--detector-option", "min_neighbors=8"], ("min_neighbors",)),  # yunet has none
    ("C05", ["--detector-option", "max_side=640", "--detector-option", "max_side=320"], ("max_side",)),
    ("C06", ["--detector-option", "max_side=640", "--photo-max-side", "320"], ("max_side",)),
    ("C07", ["--detector", "retina"], ("retina",)),
    ("C08", ["--device", "tpu"], ("tpu",)),
    ("C09", ["--threshold", "nan"], ("threshold",)),
    ("C10", ["--score-threshold", "1.5"], ("score-threshold",)),
    ("C11", ["--photo-max-side", "0"], ("photo-max-side",)),
    ("C12", ["--detector-option", "score_threshold=NaN"], ("score_threshold",)),
    ("C13", ["--detector-option", "max_side=Infinity"], ("max_side",)),
    ("C14", ["--detector-option", "max_side=1e400"], ("max_side",)),
    ("C15", ["--detector", "haar", "--score-threshold", "0.5"], ("score_threshold",)),
    ("C16", ["--detector-option", "top_k=0"], ("top_k",)),
    ("C17", ["--device", ""], ("device",)),
    ("C18", ["--detector-option", "threads=-1"], ("threads",)),
]

for _cid, _extra, _names in _CLI_BAD:

    def _mk_cli(extra: list[str] = _extra, names: tuple[str, ...] = _names) -> Outcome:
        return judge_cli(
            ["predict", str(FACE), "--model", "fast", "--backend", "onnx", "--no-progress", *extra],
            error=True,
            names=names,
        )

    case(_cid, f"fervid predict photo {' '.join(_extra)}", f"exit != 0 naming {_names}")(_mk_cli)


@case("C19", "fervid video clip --detector-option max_side=-5 --csv c.csv", "exit != 0 naming max_side, no CSV")
def _c19() -> Outcome:
    v = video("c19.mp4", 3)
    return judge_cli(
        [
            "video",
            str(v),
            "--model",
            "fast",
            "--detector-option",
            "max_side=-5",
            "--csv",
            str(TMP / "c19.csv"),
            "--no-progress",
        ],
        error=True,
        names=("max_side",),
    )


cli_error_case(
    "C20",
    "fervid batch photo --detector-option nope=1 --out c20.parquet",
    "exit != 0 naming nope",
    [
        "batch",
        str(FACE),
        "--model",
        "fast",
        "--detector-option",
        "nope=1",
        "--out",
        str(TMP / "c20.parquet"),
        "--no-progress",
    ],
    ("nope",),
)


cli_error_case(
    "C21",
    "fervid serve --detector-option nope=1",
    "exit != 0 naming nope (before binding)",
    ["serve", "--model", "fast", "--detector-option", "nope=1", "--port", "0"],
    ("nope",),
)


cli_error_case(
    "C22",
    "fervid serve --threshold 2",
    "exit != 0 naming threshold",
    ["serve", "--threshold", "2", "--port", "0"],
    ("threshold",),
)


cli_error_case(
    "C23",
    "fervid serve --max-pixels 0",
    "exit != 0 naming max-pixels",
    ["serve", "--max-pixels", "0", "--port", "0"],
    ("max",),
)


cli_error_case(
    "C24",
    "fervid serve --workers 0",
    "exit != 0 naming workers",
    ["serve", "--workers", "0", "--port", "0"],
    ("workers",),
)


cli_error_case(
    "C25",
    "fervid serve --workers -2",
    "exit != 0 naming workers",
    ["serve", "--workers", "-2", "--port", "0"],
    ("workers",),
)


cli_error_case(
    "C26",
    "fervid serve --port 70000",
    "exit != 0 naming the port",
    ["serve", "--port", "70000", "--model", "fast"],
    ("port",),
)


cli_error_case(
    "C27",
    "fervid serve --max-upload-mb nan",
    "exit != 0 naming max-upload-mb",
    ["serve", "--max-upload-mb", "nan", "--port", "0"],
    ("max-upload-mb",),
)


cli_error_case(
    "C28",
    "fervid serve --max-upload-mb -1",
    "exit != 0 naming max-upload-mb",
    ["serve", "--max-upload-mb", "-1", "--port", "0"],
    ("max-upload-mb",),
)


@case(
    "C29",
    "fervid predict photo --detector-option 'max_side=640' --json (valid option)",
    "exit 0, one JSON line with 1 face",
)
def _c29() -> Outcome:
    def chk(out: str, err: str) -> str | None:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        return None if len(lines) == 1 and len(json.loads(lines[0])["faces"]) == 1 else f"got {out[:100]}"

    return judge_cli(
        [
            "predict",
            str(FACE),
            "--model",
            "fast",
            "--backend",
            "onnx",
            "--json",
            "--no-progress",
            "--detector-option",
            "max_side=640",
        ],
        error=False,
        check=chk,
    )


cli_error_case(
    "C30",
    "fervid predict photo --detector-size 5",
    "exit != 0 naming the size",
    ["predict", str(FACE), "--model", "fast", "--backend", "onnx", "--no-progress", "--detector-size", "5"],
    ("max_side",),
)


# ---- D. the service after the split


def client(**kw: Any) -> Any:
    from fastapi.testclient import TestClient

    from fervid.serve.app import create_app

    key = json.dumps(kw, sort_keys=True, default=str)
    if key not in _SHARED:
        app = create_app(rec_fast(), cache_dir=TMP / "cache", **kw)
        c = TestClient(app)
        c.__enter__()
        _SHARED[key] = c
    return _SHARED[key]


def judge_http(resp: Any, status: int, *names: str) -> Outcome:
    body = resp.text
    if resp.status_code == 500:
        return Outcome("traceback", f"500 {short(body)}")
    if resp.status_code != status:
        klass = "silently wrong" if resp.status_code < 400 <= status else "unclear"
        return Outcome(klass, f"{resp.status_code} (expected {status}) {short(body)}")
    missing = [n for n in names if n.lower() not in body.lower()]
    return Outcome("unclear" if missing else "clean", f"{resp.status_code} {short(body)}")


def env_app(value: str | None) -> Any:
    from fervid.serve.app import ENV_CONFIG, app_from_env

    old = os.environ.get(ENV_CONFIG)
    try:
        if value is None:
            os.environ.pop(ENV_CONFIG, None)
        else:
            os.environ[ENV_CONFIG] = value
        return app_from_env()
    finally:
        if old is None:
            os.environ.pop(ENV_CONFIG, None)
        else:
            os.environ[ENV_CONFIG] = old


_ENV_BAD: list[tuple[str, str, tuple[str, ...]]] = [
    ("D01", "{model: fast}", ("FERVID_SERVE_CONFIG",)),
    ("D02", '{"model": "fast",}', ("FERVID_SERVE_CONFIG",)),
    ("D03", '"fast"', ("FERVID_SERVE_CONFIG",)),
    ("D04", '{"model": "fast", "max_upload_mb": "big"}', ("max_upload_mb",)),
    ("D05", '{"model": "fast", "max_upload_mb": -1}', ("max_upload_mb",)),
    ("D06", '{"model": "fast", "max_upload_mb": NaN}', ("max_upload_mb",)),
    ("D07", '{"model": "fast", "api_key": ""}', ("api_key",)),
    ("D08", '{"model": "fast", "api_key": 1234}', ("API key",)),
    ("D09", '{"model": "fast", "treshold": 0.4}', ("treshold",)),
    ("D10", '{"model": "fast", "threshold": 7}', ("threshold",)),
    ("D11", '{"model": "fast", "max_upload_mb": true}', ("max_upload_mb",)),
    ("D12", '{"model": "fast", "max_upload_mb": 1e308}', ("max_upload_mb",)),
]

for _cid, _val, _names in _ENV_BAD:

    def _mk_env(val: str = _val, names: tuple[str, ...] = _names) -> Outcome:
        return judge_error(lambda: env_app(val), names)

    case(_cid, f"FERVID_SERVE_CONFIG='{_val}' app_from_env()", f"error naming {_names}")(_mk_env)


@case("D13", "FERVID_SERVE_CONFIG unset -> app_from_env()", "an app with the defaults")
def _d13() -> Outcome:
    return judge_ok(lambda: type(env_app(None)).__name__)


@case(
    "D14",
    "FERVID_SERVE_CONFIG=serve_config(RecognizerConfig(model='fast', threshold=0.2)) round trip",
    "app whose recognizer has threshold 0.2",
)
def _d14() -> Outcome:
    from fervid.serve.app import serve_config

    val = json.dumps(serve_config(cfg(model="fast", threshold=0.2), "k3y", 4.0))

    def chk(app: Any) -> str | None:
        st = app.state.fervid
        return (
            None
            if st.recognizer.config.threshold == 0.2 and st.api_key == "k3y" and st.max_bytes == 4 * 2**20
            else "settings lost"
        )

    return judge_ok(lambda: env_app(val), chk)


@case("D15", "POST /v1/predict with a JSON body", "415 naming the content type")
def _d15() -> Outcome:
    return judge_http(client().post("/v1/predict", json={"image": "x"}), 415, "multipart")


@case("D16", "POST /v1/predict raw body of 0 bytes (image/jpeg)", "400 empty")
def _d16() -> Outcome:
    return judge_http(client().post("/v1/predict", content=b"", headers={"content-type": "image/jpeg"}), 400, "empty")


@case("D17", "POST /v1/predict raw PNG header + garbage", "415 not an image")
def _d17() -> Outcome:
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(200)
    return judge_http(client().post("/v1/predict", content=data, headers={"content-type": "image/png"}), 415)


@case("D18", "POST /v1/predict a real photo as raw bytes, text/plain content type", "415 (or 200)")
def _d18() -> Outcome:
    r = client().post("/v1/predict", content=FACE.read_bytes(), headers={"content-type": "text/plain"})
    return Outcome(
        "clean" if r.status_code in (200, 415) else ("traceback" if r.status_code == 500 else "unclear"),
        f"{r.status_code} {short(r.text)}",
    )


@case("D19", "POST /v1/predict multipart with 'file' holding a 1x1 PNG", "200, 0 faces")
def _d19() -> Outcome:
    p = blank("d19.png", (1, 1, 3))
    r = client().post("/v1/predict", files={"file": ("d19.png", p.read_bytes(), "image/png")})
    return judge_http(r, 200, '"faces":[]')


@case("D20", "POST /v1/predict multipart with a unicode filename 'фото 😀.jpg'", "200, path echoes the name")
def _d20() -> Outcome:
    r = client().post("/v1/predict", files={"file": ("фото 😀.jpg", FACE.read_bytes(), "image/jpeg")})
    if r.status_code != 200:
        return judge_http(r, 200)
    return Outcome(
        "clean" if r.json().get("path") == "фото 😀.jpg" else "silently wrong", short(str(r.json().get("path")))
    )


@case("D21", "POST /v1/predict/batch with 0 files", "400 no image")
def _d21() -> Outcome:
    r = client().post("/v1/predict/batch", files={"other": ("x.txt", b"hi", "text/plain")})
    return judge_http(r, 400)


@case("D22", "POST /v1/predict/batch with 33 tiny images (limit 32)", "400 naming the limit")
def _d22() -> Outcome:
    p = blank("d22.png", (8, 8, 3)).read_bytes()
    r = client().post("/v1/predict/batch", files=[("files", (f"{i}.png", p, "image/png")) for i in range(33)])
    return judge_http(r, 400, "32")


@case("D23", "POST /v1/predict/batch good photo + undecodable file", "415 naming the bad file (or per-file error)")
def _d23() -> Outcome:
    r = client().post(
        "/v1/predict/batch",
        files=[
            ("files", ("good.jpg", FACE.read_bytes(), "image/jpeg")),
            ("files", ("bad.jpg", b"\xff\xd8\xff" + b"\0" * 50, "image/jpeg")),
        ],
    )
    if r.status_code == 200:
        return Outcome("clean" if "bad.jpg" in r.text else "silently wrong", short(r.text))
    return judge_http(r, 415, "bad.jpg")


@case("D24", "GET /v1/models", "200 with labels and model name")
def _d24() -> Outcome:
    return judge_http(client().get("/v1/models"), 200, "fast", "happy")


@case("D25", "GET /models/nope.onnx", "404")
def _d25() -> Outcome:
    return judge_http(client().get("/models/nope.onnx"), 404)


@case("D26", "GET /models/..%2F..%2Fweights%2Fmanifest.json", "404")
def _d26() -> Outcome:
    return judge_http(client().get("/models/..%2F..%2Fweights%2Fmanifest.json"), 404)


@case("D27", "GET /models/default+fast.onnx (an ensemble as a page model)", "404 naming it")
def _d27() -> Outcome:
    return judge_http(client().get("/models/default+fast.onnx"), 404)


@case("D28", "GET /models/index.json", "200, lists yunet/fast")
def _d28() -> Outcome:
    return judge_http(client().get("/models/index.json"), 200, "fast")


@case("D29", "GET /docs has its CSP", "200 + Content-Security-Policy")
def _d29() -> Outcome:
    r = client().get("/docs")
    return Outcome(
        "clean" if r.status_code == 200 and "content-security-policy" in r.headers else "silently wrong",
        f"{r.status_code} csp={r.headers.get('content-security-policy', '')[:40]}",
    )


@case("D30", "GET /openapi.json carries X-Content-Type-Options", "200 + nosniff")
def _d30() -> Outcome:
    r = client().get("/openapi.json")
    return Outcome(
        "clean" if r.status_code == 200 and r.headers.get("x-content-type-options") == "nosniff" else "silently wrong",
        f"{r.status_code} {dict(r.headers).get('x-content-type-options')}",
    )


@case("D31", "GET /static/ (the folder)", "404 with security headers, no listing")
def _d31() -> Outcome:
    r = client().get("/static/")
    ok = r.status_code == 404 and r.headers.get("x-frame-options") == "DENY"
    return Outcome(
        "clean" if ok else ("traceback" if r.status_code == 500 else "silently wrong"),
        f"{r.status_code} xfo={r.headers.get('x-frame-options')}",
    )


@case(
    "D32", "api_key='s3cret': POST /v1/predict with 'Authorization: Bearer  s3cret ' (padded)", "401 or 200, never 500"
)
def _d32() -> Outcome:
    r = client(api_key="s3cret").post(
        "/v1/predict",
        files={"file": ("a.jpg", FACE.read_bytes(), "image/jpeg")},
        headers={"authorization": "Bearer  s3cret "},
    )
    return Outcome("clean" if r.status_code in (200, 401) else "traceback", f"{r.status_code}")


@case("D33", "api_key='s3cret': X-API-Key with a non-latin-1 value", "401, never 500")
def _d33() -> Outcome:
    r = client(api_key="s3cret").post(
        "/v1/predict",
        files={"file": ("a.jpg", FACE.read_bytes(), "image/jpeg")},
        headers={"x-api-key": "ключ".encode()},
    )
    return judge_http(r, 401)


@case("D34", "api_key='s3cret': GET /v1/models without the key", "401")
def _d34() -> Outcome:
    return judge_http(client(api_key="s3cret").get("/v1/models"), 401)


@case("D35", "create_app(rec, max_upload_mb=float('nan'))", "error naming max_upload_mb")
def _d35() -> Outcome:
    from fervid.serve.app import create_app

    return judge_error(lambda: create_app(rec_fast(), max_upload_mb=float("nan"), load=False), ("max_upload_mb",))


@case("D36", "create_app(rec, max_concurrency=1.5)", "error naming max_concurrency")
def _d36() -> Outcome:
    from fervid.serve.app import create_app

    return judge_error(lambda: create_app(rec_fast(), max_concurrency=1.5, load=False), ("max_concurrency",))


@case("D37", "create_app(rec, max_upload_mb=0)", "UserValueError naming max_upload_mb")
def _d37() -> Outcome:
    from fervid.serve.app import create_app

    return judge_error(lambda: create_app(rec_fast(), max_upload_mb=0, load=False), ("max_upload_mb",))


@case("D38", "POST /v1/predict multipart with two 'file' parts", "400 naming batch")
def _d38() -> Outcome:
    b = FACE.read_bytes()
    return judge_http(
        client().post(
            "/v1/predict", files=[("file", ("a.jpg", b, "image/jpeg")), ("file", ("b.jpg", b, "image/jpeg"))]
        ),
        400,
        "batch",
    )


@case("D39", "PUT /v1/predict", "405 JSON error")
def _d39() -> Outcome:
    return judge_http(client().put("/v1/predict", content=b"x"), 405)


@case("D40", "POST /v1/predict a 16-bit grey PNG", "200")
def _d40() -> Outcome:
    from PIL import Image

    p = TMP / "d40.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 65535).astype(np.uint16)).save(p)
    return judge_http(client().post("/v1/predict", files={"file": ("d40.png", p.read_bytes(), "image/png")}), 200)


@case(
    "D41",
    "POST /v1/predict a photo in multipart field 'file' with filename ''",
    "200, or 400 saying the part is not a file upload",
)
def _d41() -> Outcome:
    r = client().post("/v1/predict", files={"file": ("", FACE.read_bytes(), "image/jpeg")})
    if r.status_code == 200:
        return Outcome("clean", "200")
    return judge_http(r, 400, "file")


@case("D42", "concurrent: 6 threads predicting while the app's page model files are fetched", "every answer 200")
def _d42() -> Outcome:
    from concurrent.futures import ThreadPoolExecutor

    c = client()
    b = FACE.read_bytes()

    def one(i: int) -> int:
        if i % 2:
            return c.get("/models/fast.json").status_code
        return c.post("/v1/predict", files={"file": ("a.jpg", b, "image/jpeg")}).status_code

    with ThreadPoolExecutor(6) as ex:
        codes = list(ex.map(one, range(12)))
    return Outcome(
        "clean" if set(codes) == {200} else ("traceback" if 500 in codes else "silently wrong"), str(Counter(codes))
    )


# ---- E. the weights catalogue, on a copy of the package's weights


@contextlib.contextmanager
def weights_copy(edit: Callable[[Path], None]) -> Any:
    import fervid.models.bundled as bundled

    src = bundled.WEIGHTS_DIR
    dst = TMP / "weights"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    edit(dst)
    import fervid.models.checkpoint as checkpoint

    old = bundled.WEIGHTS_DIR
    bundled.WEIGHTS_DIR = checkpoint.WEIGHTS_DIR = dst
    try:
        yield dst
    finally:
        bundled.WEIGHTS_DIR = checkpoint.WEIGHTS_DIR = old


def _manifest(d: Path) -> dict[str, Any]:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, data: Any) -> None:
    (d / "manifest.json").write_text(json.dumps(data))


def _truncate(d: Path, name: str) -> None:
    p = d / name
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _set(d: Path, model: str, key: str, value: Any) -> None:
    m = _manifest(d)
    for e in m["models"]:
        if e["name"] == model:
            e[key] = value
    _write_manifest(d, m)


def _fix_sha(d: Path, name: str) -> None:
    """The user 'repairs' the manifest: its sha256 now matches the damaged file."""
    from fervid.models.bundled import file_sha256

    m = _manifest(d)
    for e in m["models"]:
        if e.get("onnx") == name:
            e["onnx_sha256"] = file_sha256(d / name)
        if e.get("file") == name:
            e["sha256"] = file_sha256(d / name)
    _write_manifest(d, m)


def _yunet_file() -> str:
    from fervid.models.bundled import weight_file

    return weight_file("yunet", "onnxruntime").file


_CATALOGUE: list[tuple[str, str, Callable[[Path], None], str, tuple[str, ...]]] = [
    ("E01", "manifest.json deleted", lambda d: (d / "manifest.json").unlink(), "onnx", ("fast",)),
    ("E02", "manifest.json truncated", lambda d: _truncate(d, "manifest.json"), "onnx", ("manifest.json",)),
    ("E03", "manifest.json is []", lambda d: _write_manifest(d, []), "onnx", ("manifest.json",)),
    (
        "E04",
        "manifest.json is not UTF-8",
        lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe{\x00"),
        "onnx",
        ("manifest.json",),
    ),
    (
        "E05",
        "a model entry without sha256",
        lambda d: _set(d, "fast", "sha256", None) or _manifest(d),
        "torch",
        ("fast",),
    ),
    (
        "E08",
        "fast.safetensors truncated (torch)",
        lambda d: _truncate(d, "fast.safetensors"),
        "torch",
        ("fast.safetensors",),
    ),
    (
        "E09",
        "fast.safetensors replaced by fast.onnx's bytes and sha256 'fixed'",
        lambda d: (shutil.copy(d / "fast.onnx", d / "fast.safetensors"), _fix_sha(d, "fast.safetensors")),
        "torch",
        ("fast.safetensors",),
    ),
    (
        "E10",
        "fast.safetensors truncated and sha256 'fixed'",
        lambda d: (_truncate(d, "fast.safetensors"), _fix_sha(d, "fast.safetensors")),
        "torch",
        ("fast.safetensors",),
    ),
    (
        "E11",
        "fast.safetensors replaced by a folder",
        lambda d: ((d / "fast.safetensors").unlink(), (d / "fast.safetensors").mkdir()),
        "torch",
        ("fast.safetensors",),
    ),
    (
        "E12",
        "alias pointing at a missing model",
        lambda d: _write_manifest(d, {**_manifest(d), "aliases": {"quick": "nope"}}),
        "onnx",
        ("nope",),
    ),
    ("E15", "yunet's onnxruntime file truncated", lambda d: _truncate(d, _yunet_file()), "onnx", ("yunet",)),
    ("E16", "models entry 'name': 7 (not a string)", lambda d: _set(d, "fast", "name", 7), "onnx", ("fast",)),
]

for _cid, _what, _edit, _backend, _names in _CATALOGUE:

    def _mk_cat(
        edit: Callable[[Path], None] = _edit, backend: str = _backend, names: tuple[str, ...] = _names
    ) -> Outcome:
        from fervid import EmotionRecognizer
        from fervid.detectors import yunet

        yunet._VERIFIED.clear()  # a fresh process would check the detector's file again
        with weights_copy(edit):
            return judge_error(
                lambda: EmotionRecognizer("fast", backend=backend, device="cpu").predict(str(FACE)), names
            )

    case(
        _cid,
        f"weights copy: {_what}; EmotionRecognizer('fast', backend={_backend!r}).predict(photo)",
        f"error naming {_names}",
    )(_mk_cat)


@case(
    "E06",
    "weights copy: fast.onnx truncated; GET /models/fast.onnx",
    "an error naming fast, or a valid ONNX, never the damaged bytes",
)
def _e06() -> Outcome:
    return _page_onnx(lambda d: _truncate(d, "fast.onnx"), "e06")


@case("E07", "weights copy: fast.onnx deleted; GET /models/fast.onnx", "an error naming fast, or a valid ONNX")
def _e07() -> Outcome:
    return _page_onnx(lambda d: (d / "fast.onnx").unlink(), "e07")


def _page_onnx(edit: Callable[[Path], None], tag: str) -> Outcome:
    from fastapi.testclient import TestClient

    from fervid.serve.app import create_app

    with weights_copy(edit):
        app = create_app(rec_fast(), load=False, cache_dir=TMP / f"cache-{tag}")
        with TestClient(app) as c:
            r = c.get("/models/fast.onnx")
    if r.status_code == 200:
        import onnx

        onnx.load_from_string(r.content)  # a valid export made from the safetensors is fine
        return Outcome("clean", f"200, a fresh export ({len(r.content)} bytes)")
    return judge_http(r, r.status_code if r.status_code != 500 else 404, "fast")


@case(
    "E13",
    "weights copy: the manifest says fast is 'resnet18_fer'; predict with fast (torch)",
    "1 face: the weights file's own metadata decides the architecture",
)
def _e13() -> Outcome:
    from fervid import EmotionRecognizer

    with weights_copy(lambda d: _set(d, "fast", "architecture", "resnet18_fer")):
        return judge_ok(
            lambda: EmotionRecognizer("fast", backend="torch", device="cpu").predict(str(FACE)),
            lambda r: None if len(r.faces) == 1 else f"{len(r.faces)} faces",
        )


@case(
    "E14",
    "weights copy: fast.safetensors deleted; fervid predict photo --model fast --backend torch",
    "exit 1 naming fast.safetensors",
)
def _e14() -> Outcome:
    with weights_copy(lambda d: (d / "fast.safetensors").unlink()):
        return judge_cli(
            ["predict", str(FACE), "--model", "fast", "--backend", "torch", "--device", "cpu", "--no-progress"],
            error=True,
            names=("fast.safetensors",),
        )


@case("E17", "weights copy: manifest truncated; fervid models", "exit 1 naming manifest.json")
def _e17() -> Outcome:
    with weights_copy(lambda d: _truncate(d, "manifest.json")):
        return judge_cli(["models"], error=True, names=("manifest.json",))


@case("E18", "weights copy: manifest truncated; GET /models/index.json", "a JSON error (not a bare 500)")
def _e18() -> Outcome:
    from fastapi.testclient import TestClient

    from fervid.serve.app import create_app

    with weights_copy(lambda d: _truncate(d, "manifest.json")):
        try:
            app = create_app(rec_fast(), load=False, cache_dir=TMP / "cache18")
        except Exception as e:  # noqa: BLE001 - refusing to start, naming the file, is an answer
            ok = _is_user_error(e) and "manifest.json" in str(e)
            return Outcome("clean" if ok else "traceback", short(f"create_app: {type(e).__name__}: {e}"))
        with TestClient(app) as c:
            r = c.get("/models/index.json")
    if r.status_code == 500 and "manifest" not in r.text:
        return Outcome("unclear", f"500 {short(r.text)}")
    return Outcome("clean" if r.status_code >= 400 else "silently wrong", f"{r.status_code} {short(r.text)}")


# ---- F. the detectors package: odd images, per detector

_ARRAYS: list[tuple[str, str, Callable[[], Any], str]] = [
    ("F01", "1x1 RGB", lambda: np.zeros((1, 1, 3), np.uint8), "0"),
    ("F02", "10000x10 RGB", lambda: np.full((10000, 10, 3), 90, np.uint8), "0"),
    ("F03", "10x10000 RGB", lambda: np.full((10, 10000, 3), 90, np.uint8), "0"),
    ("F04", "2x2 grey", lambda: np.zeros((2, 2), np.uint8), "0"),
    ("F05", "(0, 0, 3) empty", lambda: np.zeros((0, 0, 3), np.uint8), "error"),
    ("F06", "(h, w, 2) two channels", lambda: np.zeros((50, 50, 2), np.uint8), "error"),
    ("F07", "(h, w, 3, 1) four axes", lambda: np.zeros((50, 50, 3, 1), np.uint8), "error"),
    ("F08", "float64 with NaN", lambda: np.full((60, 60, 3), np.nan), "error"),
    ("F09", "float32 in [0, 255] (not [0, 1])", lambda: np.full((60, 60, 3), 200.0, np.float32), "0"),
    ("F10", "int64 0..255", lambda: np.full((60, 60, 3), 100, np.int64), "any"),
    ("F11", "int8 negative (a warning names the range)", lambda: np.full((60, 60, 3), -5, np.int8), "0"),
    ("F12", "complex", lambda: np.zeros((20, 20, 3), np.complex64), "error"),
    ("F13", "object array", lambda: np.array([[None]], dtype=object), "error"),
    ("F14", "a list of lists", lambda: [[0, 0], [0, 0]], "error"),
    ("F15", "None", lambda: None, "error"),
    ("F16", "b'' (no bytes)", lambda: b"", "error"),
    ("F17", "random bytes", lambda: os.urandom(512), "error"),
    (
        "F18",
        "uint16 RGB of the face (x257)",
        lambda: np.asarray(__import__("PIL.Image").Image.open(FACE).convert("RGB")).astype(np.uint16) * 257,
        "1",
    ),
    (
        "F19",
        "RGBA array of the face",
        lambda: np.asarray(__import__("PIL.Image").Image.open(FACE).convert("RGBA")),
        "1",
    ),
    (
        "F20",
        "non-contiguous view (every 2nd column) of the face",
        lambda: np.asarray(__import__("PIL.Image").Image.open(FACE).convert("RGB"))[:, ::2],
        "any",
    ),
    (
        "F21",
        "PIL image mode 'I;16'",
        lambda: __import__("PIL.Image").Image.open(FACE).convert("L").convert("I;16"),
        "any",
    ),
    ("F22", "PIL image mode 'CMYK' of the face", lambda: __import__("PIL.Image").Image.open(FACE).convert("CMYK"), "1"),
    ("F23", "PIL image mode 'P' of the face", lambda: __import__("PIL.Image").Image.open(FACE).convert("P"), "1"),
    ("F24", "PIL image mode 'F' (float)", lambda: __import__("PIL.Image").Image.open(FACE).convert("F"), "any"),
    ("F25", "PIL image mode '1' (bilevel)", lambda: __import__("PIL.Image").Image.open(FACE).convert("1"), "any"),
]


def _faces_judge(get: Callable[[], Any], want: str, detector: str = "yunet", color: str = "rgb") -> Outcome:
    from fervid import EmotionRecognizer

    rec = rec_fast() if detector == "yunet" else EmotionRecognizer("fast", detector=detector, backend="onnx")
    if want == "error":
        return judge_error(lambda: rec.predict(get(), color=color), (), type_error_ok=True)

    def chk(r: Any) -> str | None:
        if want == "any":
            return None
        return None if len(r.faces) == int(want) else f"{len(r.faces)} faces, expected {want}"

    return judge_ok(lambda: rec.predict(get(), color=color), chk)


for _cid, _what, _get, _want in _ARRAYS:

    def _mk_arr(get: Callable[[], Any] = _get, want: str = _want) -> Outcome:
        return _faces_judge(get, want)

    case(
        _cid, f"rec.predict({_what})", {"error": "clear error", "any": "a result", "0": "0 faces", "1": "1 face"}[_want]
    )(_mk_arr)

for _i, (_det, _what, _get, _want) in enumerate(
    [
        ("haar", "1x1", lambda: np.zeros((1, 1, 3), np.uint8), "0"),
        ("haar", "10000x10", lambda: np.full((10000, 10, 3), 90, np.uint8), "0"),
        ("haar-profile", "10x10000", lambda: np.full((10, 10000, 3), 90, np.uint8), "0"),
        ("skip", "1x1", lambda: np.zeros((1, 1, 3), np.uint8), "1"),
        ("skip", "10000x10", lambda: np.full((10000, 10, 3), 90, np.uint8), "1"),
        (
            "haar",
            "RGBA array of the face",
            lambda: np.asarray(__import__("PIL.Image").Image.open(FACE).convert("RGBA")),
            "1",
        ),
        (
            "haar",
            "uint16 grey of the face",
            lambda: np.asarray(__import__("PIL.Image").Image.open(FACE).convert("L")).astype(np.uint16) * 257,
            "1",
        ),
    ]
):

    def _mk_det(det: str = _det, get: Callable[[], Any] = _get, want: str = _want) -> Outcome:
        return _faces_judge(get, want, detector=det)

    case(f"F{26 + _i}", f"EmotionRecognizer('fast', detector={_det!r}).predict({_what})", f"{_want} face(s)")(_mk_det)


error_case(
    "F33",
    "rec.predict(face, color='BGR') (upper case)",
    "error naming color, or the BGR answer",
    lambda: rec_fast().predict(np.zeros((9, 9, 3), np.uint8), color="BGR"),
    ("color",),
)


error_case(
    "F34", "rec.predict(pathlib.Path(folder))", "error: a directory", lambda: rec_fast().predict(TMP), ("directory",)
)


error_case(
    "F35",
    "rec.predict('https://example.com/a.jpg')",
    "error: URLs are not read",
    lambda: rec_fast().predict("https://example.com/a.jpg"),
    ("https://example.com/a.jpg",),
)


@case("F36", "rec.predict_faces([]) (no crops)", "[]")
def _f36() -> Outcome:
    return judge_ok(lambda: rec_fast().predict_faces([]), lambda r: None if r == [] else repr(r))


@case("F37", "rec.predict_faces(np.zeros((0, 48, 48), uint8))", "[]")
def _f37() -> Outcome:
    return judge_ok(
        lambda: rec_fast().predict_faces(np.zeros((0, 48, 48), np.uint8)), lambda r: None if r == [] else repr(r)
    )


@case("F38", "rec.predict_faces(np.zeros((5, 48, 48), uint8)) (a stack of crops)", "5 results")
def _f38() -> Outcome:
    return judge_ok(
        lambda: rec_fast().predict_faces(np.zeros((5, 48, 48), np.uint8)), lambda r: None if len(r) == 5 else repr(r)
    )


error_case(
    "F39",
    "rec.predict_batch([face, 'missing.jpg'])",
    "error naming missing.jpg",
    lambda: rec_fast().predict_batch([str(FACE), str(TMP / "missing.jpg")]),
    ("missing.jpg",),
)


@case("F40", "rec.predict_batch([]) ", "[]")
def _f40() -> Outcome:
    return judge_ok(lambda: rec_fast().predict_batch([]), lambda r: None if r == [] else repr(r))


# ---- G. the pipeline's tables: photos and videos with 0 faces, unicode names, 0/1-frame videos


@case("G01", "fervid predict blank.png --json (0 faces)", "one JSON line with faces []")
def _g01() -> Outcome:
    p = blank("g01.png")

    def chk(out: str, err: str) -> str | None:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        return None if len(lines) == 1 and json.loads(lines[0])["faces"] == [] else f"got {out[:120]!r}"

    return judge_cli(
        ["predict", str(p), "--model", "fast", "--backend", "onnx", "--json", "--no-progress"], error=False, check=chk
    )


@case("G02", "fervid predict 'фото 😀 #1.jpg' --json", "path echoes the unicode name, 1 face")
def _g02() -> Outcome:
    p = TMP / "фото 😀 #1.jpg"
    shutil.copy(FACE, p)

    def chk(out: str, err: str) -> str | None:
        d = json.loads(out.splitlines()[0])
        return None if d["path"].endswith("фото 😀 #1.jpg") and len(d["faces"]) == 1 else f"got {out[:120]!r}"

    return judge_cli(
        ["predict", str(p), "--model", "fast", "--backend", "onnx", "--json", "--no-progress"], error=False, check=chk
    )


@case(
    "G03",
    "fervid video zero-frames.mp4 --csv z.csv",
    "exit != 0 naming the file (no frames), or an empty CSV with a header",
)
def _g03() -> Outcome:
    v = video("g03.mp4", 0)
    rc, out, err, exc = run_cli(
        ["video", str(v), "--model", "fast", "--backend", "onnx", "--csv", str(TMP / "g03.csv"), "--no-progress"]
    )
    if exc is not None or "Traceback" in err:
        return Outcome("traceback", short(f"{exc!r} {err[-200:]}"))
    if rc != 0:
        return Outcome("clean" if "g03.mp4" in err else "unclear", short(err))
    csv = TMP / "g03.csv"
    return Outcome(
        "clean" if csv.is_file() and csv.read_text().count("\n") <= 1 else "silently wrong",
        short(f"exit 0 {err[-100:]}"),
    )


@case("G04", "fervid video one-frame.mp4 --csv one.csv --summary one.json", "exit 0, 1 frame's row, a summary")
def _g04() -> Outcome:
    v = video("g04.mp4", 1)
    csv, summ = TMP / "g04.csv", TMP / "g04.json"

    def chk(out: str, err: str) -> str | None:
        if not csv.is_file() or not summ.is_file():
            return "outputs missing"
        json.loads(summ.read_text())
        return None

    return judge_cli(
        [
            "video",
            str(v),
            "--model",
            "fast",
            "--backend",
            "onnx",
            "--csv",
            str(csv),
            "--summary",
            str(summ),
            "--no-progress",
        ],
        error=False,
        check=chk,
    )


@case("G05", "fervid video clip.mp4 --csv clip.mp4 (the input itself)", "refused, input intact")
def _g05() -> Outcome:
    v = video("g05.mp4", 3)
    argv = ["video", str(v), "--model", "fast", "--backend", "onnx", "--csv", str(v), "--no-progress"]
    return judge_cli_keeps(v, argv, ("g05.mp4",))


@case("G06", "fervid video clip.mp4 --out clip.mp4 (the input itself)", "refused, input intact")
def _g06() -> Outcome:
    v = video("g06.mp4", 3)
    argv = ["video", str(v), "--model", "fast", "--backend", "onnx", "--out", str(v), "--no-progress"]
    return judge_cli_keeps(v, argv, ("g06.mp4",))


@case("G07", "fervid video clip.mp4 --summary clip.mp4 --csv c.csv", "refused, input intact")
def _g07() -> Outcome:
    v = video("g07.mp4", 3)
    argv = ["video", str(v), "--model", "fast", "--backend", "onnx", "--csv", str(TMP / "g07.csv"), "--summary", str(v)]
    return judge_cli_keeps(v, [*argv, "--no-progress"], ("g07.mp4",))


@case("G08", "fervid video clip.mp4 --csv same.csv --summary same.csv", "refused: two outputs, one file")
def _g08() -> Outcome:
    v = video("g08.mp4", 3)
    return judge_cli(
        [
            "video",
            str(v),
            "--model",
            "fast",
            "--backend",
            "onnx",
            "--csv",
            str(TMP / "g08.csv"),
            "--summary",
            str(TMP / "g08.csv"),
            "--no-progress",
        ],
        error=True,
        names=("g08.csv",),
    )


@case("G09", "fervid predict folder --out folder (annotated copies over the originals?)", "refused or originals intact")
def _g09() -> Outcome:
    d = TMP / "g09"
    d.mkdir()
    shutil.copy(FACE, d / "a.jpg")
    before = _fp(d / "a.jpg")
    rc, out, err, exc = run_cli(
        ["predict", str(d), "--model", "fast", "--backend", "onnx", "--out", str(d), "--no-progress"]
    )
    if (crash := crashed(exc, err)) is not None:
        return crash
    if _fp(d / "a.jpg") != before:
        return Outcome("data loss", f"exit {rc}: a.jpg overwritten by its annotated copy")
    return Outcome("clean", short(f"exit {rc}: {err.strip()[-120:]}"))


@case("G10", "fervid video clip.mp4 --out out.mkv", "exit != 0 naming the extension (or a verified .mkv)")
def _g10() -> Outcome:
    v = video("g10.mp4", 3)
    out = TMP / "g10.mkv"
    rc, o, err, exc = run_cli(
        ["video", str(v), "--model", "fast", "--backend", "onnx", "--out", str(out), "--no-progress"]
    )
    if (crash := crashed(exc, err)) is not None:
        return crash
    if rc == 0:
        import cv2

        cap = cv2.VideoCapture(str(out))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        return Outcome("clean" if n >= 1 else "silently wrong", f"exit 0, {n} readable frames")
    return Outcome("clean" if ".mkv" in err or "g10.mkv" in err else "unclear", short(err))


@case("G11", "fervid video clip.mp4 --csv existing_folder/", "exit != 0 naming the folder")
def _g11() -> Outcome:
    v = video("g11.mp4", 3)
    (TMP / "g11dir").mkdir()
    return judge_cli(
        ["video", str(v), "--model", "fast", "--backend", "onnx", "--csv", str(TMP / "g11dir"), "--no-progress"],
        error=True,
        names=("g11dir",),
    )


_VIDEO_ARGS: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("G12", ["--every", "0"], ("every",)),
    ("G13", ["--smooth", "0"], ("smooth",)),
    ("G14", ["--smooth", "nan"], ("smooth",)),
    ("G15", ["--max-seconds", "-1"], ("max-seconds",)),
    ("G16", ["--max-seconds", "nan"], ("max-seconds",)),
    ("G17", ["--detect-every", "0"], ("detect-every",)),
    ("G18", ["--max-seconds", "inf"], ("max-seconds",)),
]

for _cid, _extra, _names in _VIDEO_ARGS:

    def _mk_vid(extra: list[str] = _extra, names: tuple[str, ...] = _names) -> Outcome:
        v = video("gv.mp4", 2)
        return judge_cli(
            [
                "video",
                str(v),
                "--model",
                "fast",
                "--backend",
                "onnx",
                "--csv",
                str(TMP / "gv.csv"),
                "--no-progress",
                *extra,
            ],
            error=True,
            names=names,
        )

    case(_cid, f"fervid video clip.mp4 --csv c.csv {' '.join(_extra)}", f"exit != 0 naming {_names}")(_mk_vid)


@case(
    "G19",
    "fervid video clip.mp4 (no output at all)",
    "a clear error or a printed summary, never silent work thrown away",
)
def _g19() -> Outcome:
    v = video("g19.mp4", 2)
    rc, out, err, exc = run_cli(["video", str(v), "--model", "fast", "--backend", "onnx", "--no-progress"])
    if (crash := crashed(exc, err)) is not None:
        return crash
    if rc != 0:
        return Outcome("clean" if "--" in err else "unclear", short(err))
    return Outcome("clean" if out.strip() else "silently wrong", short(f"exit 0 stdout={out.strip()[:80]!r}"))


def _batch(argv: list[str]) -> tuple[int, str, str, BaseException | None]:
    return run_cli(["batch", *argv, "--model", "fast", "--backend", "onnx", "--no-progress"])


@case("G20", "fervid batch folder-with-unicode-names --out r.parquet", "rows whose path is the unicode name")
def _g20() -> Outcome:
    import pyarrow.parquet as pq

    d = TMP / "g20"
    d.mkdir()
    shutil.copy(FACE, d / "ünï çødé 😀.jpg")
    rc, out, err, exc = _batch([str(d), "--out", str(TMP / "g20.parquet")])
    if (crash := crashed(exc, err)) is not None:
        return crash
    if rc != 0:
        return Outcome("unclear", short(err))
    t = pq.read_table(TMP / "g20.parquet").to_pylist()
    ok = t and all("ünï çødé 😀.jpg" in str(r.get("source", r.get("path"))) for r in t)
    return Outcome("clean" if ok else "silently wrong", f"{len(t)} rows")


@case("G21", "fervid batch blank.png (0 faces) --out r.parquet; run again", "source done, 0 rows; rerun skips it")
def _g21() -> Outcome:
    import pyarrow.parquet as pq

    p = blank("g21.png")
    o = TMP / "g21.parquet"
    rc, out, err, exc = _batch([str(p), "--out", str(o)])
    if (crash := crashed(exc, err)) is not None:
        return crash
    rc2, out2, err2, exc2 = _batch([str(p), "--out", str(o)])
    if (crash := crashed(exc2, err2)) is not None:
        return crash
    rows = pq.read_table(o).num_rows
    return Outcome(
        "clean" if rc == 0 and rc2 == 0 and rows == 0 else "silently wrong",
        short(f"exit {rc},{rc2}; {rows} rows; {err2.strip()[-80:]}"),
    )


@case(
    "G22",
    "fervid batch zero-frames.mp4 good.jpg --out r.parquet",
    "exit 1, the video in the errors table, the photo done",
)
def _g22() -> Outcome:
    import pyarrow.parquet as pq

    v = video("g22.mp4", 0)
    o = TMP / "g22.parquet"
    rc, out, err, exc = _batch([str(v), str(FACE), "--out", str(o)])
    if (crash := crashed(exc, err)) is not None:
        return crash
    errors = [p for p in TMP.glob("g22*err*")]
    rows = pq.read_table(o).num_rows if o.is_file() else -1
    if rc == 0:
        return Outcome(
            "clean" if rows >= 1 else "silently wrong", f"exit 0, {rows} rows (a 0-frame video with no rows)"
        )
    return Outcome(
        "clean" if rows >= 1 and errors else "unclear", f"exit {rc}, {rows} rows, errors={[p.name for p in errors]}"
    )


for _cid, _extra, _names in [
    ("G23", ["--video-every", "0"], ("video-every",)),
    ("G24", ["--chunk-size", "0"], ("chunk-size",)),
    ("G25", ["--flush-every", "-1"], ("flush-every",)),
    ("G26", ["--workers", "0"], ("workers",)),
    ("G27", ["--threads-per-worker", "0"], ("threads-per-worker",)),
]:

    def _mk_b(extra: list[str] = _extra, names: tuple[str, ...] = _names) -> Outcome:
        return judge_cli(
            ["batch", str(FACE), "--out", str(TMP / "gb.parquet"), "--model", "fast", "--no-progress", *extra],
            error=True,
            names=names,
        )

    case(_cid, f"fervid batch photo --out r.parquet {' '.join(_extra)}", f"exit != 0 naming {_names}")(_mk_b)


@case("G28", "fervid batch photo --out photo.jpg (the output is the input)", "refused, photo intact")
def _g28() -> Outcome:
    p = TMP / "g28.jpg"
    shutil.copy(FACE, p)
    return judge_cli_keeps(p, ["batch", str(p), "--out", str(p), "--model", "fast", "--no-progress"], ("g28.jpg",))


@case("G29", "fervid batch manifest.csv --out manifest.csv", "refused, manifest intact")
def _g29() -> Outcome:
    m = TMP / "g29.csv"
    m.write_text(f"path\n{FACE}\n")
    return judge_cli_keeps(m, ["batch", str(m), "--out", str(m), "--model", "fast", "--no-progress"], ("g29.csv",))


@case("G30", "fervid batch r.parquet --out r.parquet (its own earlier results as manifest)", "refused, results intact")
def _g30() -> Outcome:
    o = TMP / "g30.parquet"
    _batch([str(FACE), "--out", str(o)])
    if not o.is_file():
        return Outcome("campaign error", "first batch wrote nothing")
    return judge_cli_keeps(o, ["batch", str(o), "--out", str(o), "--model", "fast", "--no-progress"], ("g30.parquet",))


@case("G31", "results_to_dataframe([]) and ImageResult of 0 faces .to_dataframe()", "empty frames with the columns")
def _g31() -> Outcome:
    from fervid.inference.schema import results_to_dataframe

    def go() -> Any:
        a = results_to_dataframe([])
        b = rec_fast().predict(str(blank("g31.png"))).to_dataframe()
        return a, b

    return judge_ok(
        go,
        lambda ab: (
            None if len(ab[0]) == 0 and len(ab[1]) == 0 and len(ab[1].columns) > 3 else f"columns {list(ab[1].columns)}"
        ),
    )


# ---- H. anything else: evaluate, export, data, models, calibrate

TEST_IMAGES = DATA / "fer2013-images" / "test"

_MISC: list[tuple[str, list[str], tuple[str, ...]]] = [
    (
        "H01",
        ["evaluate", "fast", "--data", str(TEST_IMAGES), "--split", "Nope", "--no-progress", "--no-report"],
        ("Nope",),
    ),
    (
        "H02",
        ["evaluate", "fast", "--data", str(TEST_IMAGES), "--max-images", "0", "--no-progress", "--no-report"],
        ("max-images",),
    ),
    (
        "H03",
        ["evaluate", "fast", "--data", str(TEST_IMAGES), "--max-images", "-3", "--no-progress", "--no-report"],
        ("max-images",),
    ),
    (
        "H04",
        ["evaluate", "fast", "--data", "/nonexistent/fer.csv", "--no-progress", "--no-report"],
        ("/nonexistent/fer.csv",),
    ),
    (
        "H05",
        ["evaluate", "fast", "--data", str(TEST_IMAGES), "--batch-size", "0", "--no-progress", "--no-report"],
        ("batch-size",),
    ),
    (
        "H06",
        ["evaluate", "fast", "fast", "--data", str(TEST_IMAGES), "--max-images", "20", "--no-progress", "--no-report"],
        ("fast",),
    ),
    ("H07", ["export", "fast", "--out", str(_A_FILE / "x.onnx"), "--no-check", "--no-progress"], ("a-file",)),
    (
        "H08",
        ["export", "fast", "--out", str(Path(tempfile.gettempdir()) / "fervid-h08.txt"), "--no-check", "--no-progress"],
        (".onnx",),
    ),
    (
        "H09",
        [
            "export",
            "nope",
            "--out",
            str(Path(tempfile.gettempdir()) / "fervid-h09.onnx"),
            "--no-check",
            "--no-progress",
        ],
        ("nope",),
    ),
    (
        "H10",
        [
            "export",
            "fast",
            "--out",
            str(Path(tempfile.gettempdir()) / "fervid-h10.onnx"),
            "--int8",
            "--n-calibration",
            "0",
            "--no-progress",
        ],
        ("n-calibration",),
    ),
    (
        "H11",
        [
            "export",
            "fast",
            "--out",
            str(Path(tempfile.gettempdir()) / "fervid-h11.onnx"),
            "--int8",
            "--fp32-tail",
            "1.5",
            "--no-progress",
        ],
        ("fp32-tail",),
    ),
    (
        "H12",
        [
            "export",
            "fast",
            "--out",
            str(Path(tempfile.gettempdir()) / "fervid-h12.onnx"),
            "--int8",
            "--min-agreement",
            "nan",
            "--no-progress",
        ],
        ("min-agreement",),
    ),
    ("H13", ["data", "info", "/nonexistent/fer2013.csv"], ("/nonexistent/fer2013.csv",)),
    ("H14", ["predict", "/nonexistent/*.jpg", "--model", "fast", "--no-progress"], ("/nonexistent/*.jpg",)),
    ("H15", ["predict", "--model", "fast", "--no-progress"], ("PATH",)),
    (
        "H16",
        [
            "evaluate",
            "default+",
            "fast",
            "--data",
            str(TEST_IMAGES),
            "--max-images",
            "20",
            "--no-progress",
            "--no-report",
        ],
        ("default+",),
    ),
    (
        "H17",
        [
            "evaluate",
            str(Path(tempfile.gettempdir()) / "nope.pt"),
            "--data",
            str(TEST_IMAGES),
            "--max-images",
            "20",
            "--no-progress",
            "--no-report",
        ],
        ("nope.pt",),
    ),
    (
        "H18",
        [
            "export",
            str(Path(tempfile.gettempdir()) / "nope.pt"),
            "--out",
            str(Path(tempfile.gettempdir()) / "fervid-h18.onnx"),
            "--no-check",
            "--no-progress",
        ],
        ("nope.pt",),
    ),
]

for _cid, _argv, _names in _MISC:

    def _mk_misc(argv: list[str] = _argv, names: tuple[str, ...] = _names) -> Outcome:
        return judge_cli(argv, error=True, names=names)

    case(_cid, "fervid " + " ".join(a.replace(str(DATA), "$DATA") for a in _argv), f"exit != 0 naming {_names}")(
        _mk_misc
    )


@case(
    "H19",
    "fervid evaluate fast.onnx (a page-exported ONNX) --data test --max-images 20",
    "exit 0 with an accuracy, or a clear error",
)
def _h19() -> Outcome:
    from fervid.models.bundled import bundled_onnx

    onnx = bundled_onnx("fast")
    rc, out, err, exc = run_cli(
        ["evaluate", str(onnx), "--data", str(TEST_IMAGES), "--max-images", "20", "--no-progress", "--no-report"]
    )
    if (crash := crashed(exc, err)) is not None:
        return crash
    return Outcome(
        "clean" if rc == 0 or ("onnx" in err.lower()) else "unclear",
        short(f"exit {rc} {err.strip()[-120:] or out.strip()[-120:]}"),
    )


@case("H20", "fervid models --json (or plain)", "exit 0 listing fast")
def _h20() -> Outcome:
    return judge_cli(["models"], error=False, check=lambda out, err: None if "fast" in out else out[:100])


cli_error_case(
    "H21",
    "fervid predict photo --adabn --backend onnx",
    "exit != 0 naming adabn/torch (AdaBN needs torch)",
    ["predict", str(FACE), "--model", "fast", "--backend", "onnx", "--adabn", "--no-progress"],
    ("adabn",),
)


@case(
    "H22",
    "fervid predict photo --adabn --model default+fast --backend torch",
    "exit 0 or a clear error naming the ensemble",
)
def _h22() -> Outcome:
    rc, out, err, exc = run_cli(
        [
            "predict",
            str(FACE),
            "--model",
            "default+fast",
            "--backend",
            "torch",
            "--device",
            "cpu",
            "--adabn",
            "--no-progress",
        ]
    )
    if (crash := crashed(exc, err)) is not None:
        return crash
    return Outcome(
        "clean" if rc == 0 or "default+fast" in err or "ensemble" in err else "unclear",
        short(f"exit {rc} {err.strip()[-120:]}"),
    )


@case("H23", "fervid data info fer2013-images/test --json", "exit 0, JSON")
def _h23() -> Outcome:
    return judge_cli(
        ["data", "info", str(TEST_IMAGES), "--json"],
        error=False,
        check=lambda out, err: None if json.loads(out) else "no JSON",
    )


@case("H24", "fervid predict photo --device cuda (no GPU here)", "exit != 0 naming cuda, or a CPU run said so")
def _h24() -> Outcome:
    import torch

    if torch.cuda.is_available():
        return Outcome("clean", "skipped: a GPU is present")
    return judge_cli(
        ["predict", str(FACE), "--model", "fast", "--backend", "torch", "--device", "cuda", "--no-progress"],
        error=True,
        names=("cuda",),
    )


cli_error_case(
    "H25",
    "fervid predict photo --device cuda --backend onnx (no GPU)",
    "exit != 0 naming cuda",
    ["predict", str(FACE), "--model", "fast", "--backend", "onnx", "--device", "cuda", "--no-progress"],
    ("cuda",),
)


# ---- I. training-side verbs: calibrate, bench, finetune, study, train, data sample

_T = str(DATA / "fer2013-images" / "test")
_OUT = TMP / "out"

for _cid, _argv, _names in [
    ("I01", ["calibrate", "default+fast", "--data", _T, "--out", str(_OUT / "i01.pt")], ("default+fast",)),
    ("I03", ["calibrate", "fast", "--data", _T, "--split", "Nope", "--out", str(_OUT / "i03.pt")], ("Nope",)),
    ("I04", ["calibrate", "fast", "--data", _T, "--device", "gpu", "--out", str(_OUT / "i04.pt")], ("gpu",)),
    ("I05", ["bench", "--repeats", "0", "--no-progress"], ("repeats",)),
    ("I06", ["bench", "--threads", "0", "--no-progress"], ("threads",)),
    ("I07", ["bench", "--what", "nope", "--no-progress"], ("nope",)),
    ("I08", ["bench", "--models", "default+nope", "--what", "classifier", "--no-progress"], ("nope",)),
    ("I09", ["finetune", "fast", "--data", _T, "--epochs", "0", "--out", str(_OUT / "i09")], ("epochs",)),
    ("I10", ["finetune", "fast", "--data", _T, "--val-fraction", "1.5", "--out", str(_OUT / "i10")], ("val-fraction",)),
    ("I11", ["finetune", "fast", "--data", _T, "--lr", "nan", "--out", str(_OUT / "i11")], ("lr",)),
    ("I12", ["finetune", "fast", "--data", _T, "--device", "gpu", "--out", str(_OUT / "i12")], ("gpu",)),
    ("I13", ["finetune", "default+fast", "--data", _T, "--out", str(_OUT / "i13")], ("default+fast",)),
    (
        "I14",
        ["study", "--data", _T, "--models", "nope_arch", "--epochs", "1", "--out", str(_OUT / "i14")],
        ("nope_arch",),
    ),
    ("I15", ["study", "--data", _T, "--epochs", "0", "--out", str(_OUT / "i15")], ("epochs",)),
    ("I16", ["train", "--data", _T, "--set", "device=gpu", "--out", str(_OUT / "i16")], ("device",)),
    ("I17", ["train", "--data", _T, "--set", "model=default+fast", "--out", str(_OUT / "i17")], ("model",)),
    ("I18", ["data", "show", _T, "--out", str(_OUT / "i18.png"), "--per-class", "0"], ("per-class",)),
    ("I19", ["data", "show", _T, "--out", str(_OUT / "i19.png"), "--split", "Nope"], ("Nope",)),
    ("I21", ["evaluate", "fast", "--data", _T, "--device", "gpu", "--max-images", "20", "--no-progress"], ("gpu",)),
    (
        "I22",
        ["export", "fast", "--out", str(_OUT / "i22.onnx"), "--int8", "--calibration-data", "/nonexistent.csv"],
        ("/nonexistent.csv",),
    ),
]:
    cli_error_case(
        _cid,
        "fervid " + " ".join(a.replace(str(DATA), "$DATA") for a in _argv),
        f"exit != 0 naming {_names}",
        _argv,
        _names,
    )


@case(
    "I02",
    "fervid calibrate fast --data test --out i02.txt (not .pt / .safetensors)",
    "refused naming .txt, or a checkpoint that loads as --model",
)
def _i02() -> Outcome:
    out = _OUT / "i02.txt"
    rc, o, err, exc = run_cli(["calibrate", "fast", "--data", _T, "--out", str(out)])
    if (crash := crashed(exc, err)) is not None:
        return crash
    if rc != 0:
        return Outcome("clean" if "i02.txt" in err else "unclear", short(err))
    return judge_ok(
        lambda: EmotionRecognizer_(str(out), backend="torch", device="cpu").predict(str(FACE)),
        lambda r: None if len(r.faces) == 1 else f"{len(r.faces)} faces",
    )


@case("I20", "fervid data show folder --out folder/happy/a.jpg (an input image)", "refused, the image intact")
def _i20() -> Outcome:
    d = TMP / "i20"
    for label in ("angry", "happy"):
        (d / label).mkdir(parents=True)
        for k in range(3):
            blank(f"i20-{label}-{k}.png", (48, 48), 40 * k + 20)
            shutil.copy(TMP / f"i20-{label}-{k}.png", d / label / f"{k}.png")
    target = d / "happy" / "0.png"
    return judge_cli_keeps(target, ["data", "show", str(d), "--out", str(target)], ("0.png",))


@case("G32", "fervid video tiny-16x16.mp4 --csv t.csv", "exit 0, 0 people")
def _g32() -> Outcome:
    v = video("g32.mp4", 4, size=(16, 16))
    argv = ["video", str(v), "--model", "fast", "--backend", "onnx", "--csv", str(TMP / "g32.csv"), "--no-progress"]
    return judge_cli(argv, error=False, check=lambda out, err: None if (TMP / "g32.csv").is_file() else "no CSV")


@case("G33", "fervid predict clip.mp4 (a video given to predict)", "exit 1 naming the file (use fervid video)")
def _g33() -> Outcome:
    v = video("g33.mp4", 2)
    return judge_cli(
        ["predict", str(v), "--model", "fast", "--backend", "onnx", "--no-progress"], error=True, names=("g33.mp4",)
    )


@case(
    "G34",
    "fervid video photo.jpg --csv p.csv (a photo given to video)",
    "exit != 0 naming the file, or a 1-frame result",
)
def _g34() -> Outcome:
    rc, out, err, exc = run_cli(
        ["video", str(FACE), "--model", "fast", "--backend", "onnx", "--csv", str(TMP / "g34.csv"), "--no-progress"]
    )
    if (crash := crashed(exc, err)) is not None:
        return crash
    if rc != 0:
        return Outcome("clean" if FACE.name in err else "unclear", short(err))
    return Outcome("clean" if (TMP / "g34.csv").is_file() else "silently wrong", short(out))


@case("G35", "fervid video clip.mp4 --every 1000 --csv e.csv (more than the frames)", "exit 0: the first frame only")
def _g35() -> Outcome:
    v = video("g35.mp4", 5)
    argv = [
        "video",
        str(v),
        "--model",
        "fast",
        "--backend",
        "onnx",
        "--every",
        "1000",
        "--csv",
        str(TMP / "g35.csv"),
        "--no-progress",
    ]
    return judge_cli(
        argv, error=False, check=lambda out, err: None if "1 frames" in out or "1 frame" in out else out[:100]
    )


def _data_fingerprint() -> dict[str, str]:
    """The real photos' digests: the campaign must never write into the data it reads."""
    return {p.name: _fp(p) for p in sorted(MEDIA.iterdir()) if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run the cases whose id starts with this")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of unexpected errors")
    args = ap.parse_args()
    if not FACE.is_file():
        print(f"needs the real photos: {MEDIA} is missing", file=sys.stderr)
        return 2
    data_before = _data_fingerprint()
    counts: Counter[str] = Counter()
    rows = []
    for c in CASES:
        if not c.cid.startswith(args.only):
            continue
        try:
            o = c.run()
        except Exception as e:  # noqa: BLE001 - a case's own set-up failing is reported, not hidden
            if args.verbose:
                traceback.print_exc()
            o = Outcome("campaign error", short(f"{type(e).__name__}: {e}"))
        counts[o.klass] += 1
        rows.append((c, o))
        print(f"{c.cid:<7} {o.klass:<15} {short(c.command, 70):<70} | {o.observed}", flush=True)
    if _data_fingerprint() != data_before:
        print(f"the campaign changed files in {MEDIA}: restore them", file=sys.stderr)
        counts["campaign error"] += 1
    print()
    print(f"{len(rows)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    shutil.rmtree(TMP, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
