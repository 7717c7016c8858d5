"""The web page in a real browser: Debian's Chromium driven by Playwright, a fake camera fed
from a .y4m made from ../shared/data/media/short_hamilton_clip.mp4, the app served by
uvicorn on 127.0.0.1. Skips with the reason when Chromium or Playwright is absent
(`apt-get install chromium`, `pip install playwright`; never `playwright install`)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = os.environ.get("FERVID_CHROMIUM", "/usr/bin/chromium")
if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
pytest.importorskip("fastapi", reason="fervid serve needs the serve extra: pip install 'fervid[serve]'")
pytest.importorskip("uvicorn", reason="fervid serve needs uvicorn: pip install 'fervid[serve]'")

from fervid import EmotionRecognizer  # noqa: E402
from fervid.detectors import LANDMARK_NAMES  # noqa: E402
from fervid.inference import schema  # noqa: E402
from fervid.serve.app import create_app  # noqa: E402

FACE_TIMEOUT_S = 15.0


def write_y4m(video: Path, out: Path, max_frames: int = 90, size: tuple[int, int] = (640, 360)) -> int:
    """The first frames of ``video`` as an uncompressed YUV4MPEG2 (4:2:0) file, Chromium's fake camera format."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    w, h = size
    n = 0
    try:
        with open(out, "wb") as f:
            f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
            while n < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                if bgr.shape[:2] != (h, w):
                    bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
                f.write(b"FRAME\n")
                f.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
                n += 1
    finally:
        cap.release()
    return n


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def media(data_root: Path) -> Path:
    return data_root / "media"


@pytest.fixture(scope="module")
def camera_file(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("camera") / "hamilton.y4m"
    assert write_y4m(media / "short_hamilton_clip.mp4", out) >= 30
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import httpx
    import uvicorn

    cache = tmp_path_factory.getbasetemp() / "serve-cache"
    app = create_app(EmotionRecognizer("fast"), cache_dir=cache)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.time() + 60
    while not srv.started:
        assert th.is_alive() and time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    # Server-side one-time work first (exporting the page's fast model), so the page's own timing is measured.
    assert httpx.get(f"{base}/models/fast.json", timeout=120).status_code == 200
    yield base
    srv.should_exit = True
    th.join(timeout=10)


@pytest.fixture(scope="module")
def page(server: str, camera_file: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={camera_file}",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        pg.problems = []  # type: ignore[attr-defined]
        pg.on("pageerror", lambda e: pg.problems.append(f"pageerror: {e}"))  # type: ignore[attr-defined]
        pg.on(
            "console",
            lambda m: (
                pg.problems.append(f"console {m.type}: {m.text}")  # type: ignore[attr-defined]
                if m.type == "error"
                else None
            ),
        )
        outside: list[str] = []
        pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith((server, "data:", "blob:")) else None)
        pg.outside = outside  # type: ignore[attr-defined]
        yield pg
        browser.close()


def wait_js(page: Any, expr: str, timeout: float) -> Any:
    """Poll a JS expression until truthy (page.evaluate: works under the page's CSP, no eval)."""
    deadline = time.time() + timeout
    while True:
        value = page.evaluate(expr)
        if value:
            return value
        if time.time() > deadline:
            state = page.evaluate("JSON.stringify(Object.assign({}, window.fervid || {}, {detectImage: undefined}))")
            raise AssertionError(
                f"timed out after {timeout}s waiting for {expr}; window.fervid = {state}; "
                f"problems: {getattr(page, 'problems', [])}"
            )
        time.sleep(0.1)


def keep_screenshot(shot: Path, name: str) -> None:
    """Copy a screenshot where a person looks at it: $FERVID_SCREENSHOT_DIR, else out/screenshots/
    of the checkout (ignored by git; the page as the last test run drew it)."""
    assert shot.stat().st_size > 10_000
    keep = Path(os.environ.get("FERVID_SCREENSHOT_DIR") or Path(__file__).resolve().parents[1] / "out" / "screenshots")
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / name)


def start_camera(page: Any) -> None:
    """The camera waits for a click on "Start camera", which says why it asks."""
    wait_js(page, "window.fervid && window.fervid.modelLoaded && window.fervid.detectorLoaded", FACE_TIMEOUT_S)
    time.sleep(0.5)  # time enough for a camera that started by itself to show it
    assert page.evaluate("({camera: fervid.camera, frames: fervid.framesProcessed})") == {"camera": "idle", "frames": 0}
    assert page.evaluate("document.getElementById('video').srcObject") is None
    assert page.inner_text("#camera-btn") == "Start camera"
    why = page.inner_text("#camera-why")
    assert page.is_visible("#camera-why") and "only when you press" in why and "never sent" in why, why
    page.click("#camera-btn")
    wait_js(page, "fervid.camera === 'on'", FACE_TIMEOUT_S)
    assert page.inner_text("#camera-btn") == "Stop camera"


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
    )


def assert_labels_inside(page: Any) -> None:
    """Every label drawn on the live canvas lies inside it and off the other labels, and the
    placement rule keeps a label inside at every edge and off the labels already placed (the
    clip's faces do not reach every edge nor always crowd)."""
    rects, size = page.evaluate("[fervid.labelRects, fervid.canvasSize]")
    for i, r in enumerate(rects):
        assert 0 <= r["x"] and r["x"] + r["w"] <= size["width"] + 1e-6, (r, size)
        assert 0 <= r["y"] and r["y"] + r["h"] <= size["height"] + 1e-6, (r, size)
        assert not any(overlap(r, q) for q in rects[:i]), f"labels drawn over each other: {rects}"
    placed: list[dict[str, float]] = []
    for box in ({"x": 600, "y": 40, "w": 40, "h": 50}, {"x": 0, "y": 0, "w": 60, "h": 80},
                {"x": 590, "y": 300, "w": 50, "h": 60}, {"x": 10, "y": 5, "w": 620, "h": 350},
                {"x": 20, "y": 60, "w": 50, "h": 60}, {"x": 40, "y": 70, "w": 50, "h": 60}):  # fmt: skip
        r = page.evaluate("([b, taken]) => fervid.placeLabel(b, 120, 20, 640, 360, taken)", [box, placed])
        assert 0 <= r["x"] <= 640 - 120 and 0 <= r["y"] <= 360 - 20, (box, r)
        assert not any(overlap(r, q) for q in placed), (box, r, placed)
        placed.append(r)


def test_live_camera_draws_labelled_faces(page: Any, server: str, tmp_path: Path) -> None:
    t0 = time.time()
    page.goto(f"{server}/")
    start_camera(page)
    wait_js(page, "window.fervid.facesDrawn > 0", FACE_TIMEOUT_S)
    first_face_s = time.time() - t0
    state = page.evaluate(
        "({camera: fervid.camera, model: fervid.model, faces: fervid.lastFaces, n: fervid.facesDrawn})"
    )
    assert state["camera"] == "on" and state["model"] == "fast"
    wait_js(page, "fervid.lastFaces.length > 0", 10)
    faces = page.evaluate("fervid.lastFaces")
    allowed = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert all(f["label"] in allowed and 0 < f["confidence"] <= 1 and f["box"]["w"] > 5 for f in faces), faces
    assert all(list(f) == schema.field_names(schema.FACE_FIELDS) for f in faces), faces  # the schema's fields
    aligned = page.evaluate("fervid.lastAligned")
    assert any(aligned), "the live camera should crop faces aligned on their landmarks"
    wait_js(page, "fervid.framesProcessed >= 10", 20)
    assert page.evaluate("fervid.fps") > 0
    # the overlay, bars and timeline are on the page
    assert page.evaluate("document.querySelectorAll('#bars .fill').length") == 7
    # the model switch offers every bundled model the server lists
    offered = [m["name"] for m in page.evaluate("fetch('/models/index.json').then(r => r.json())")["models"]]
    assert {"default", "fast"} <= set(offered)
    assert page.evaluate("[...document.querySelectorAll('input[name=model]')].map(r => r.value)") == offered
    assert page.evaluate("document.querySelector('input[name=model]:checked').value") == "fast"
    assert "fps" in page.inner_text("#fps")
    # the legend says what "?" and the bars mean
    help_text = page.inner_text("#help")
    assert "?" in help_text and "ambiguous" in help_text and "bars" in help_text and "probability" in help_text
    assert page.evaluate("document.querySelectorAll('#legend span').length") == 7
    # the timeline follows one main person, smoothed
    wait_js(page, "fervid.timeline.points >= 10 && fervid.timeline.mainId !== null", 20)
    smoothed = page.evaluate("fervid.timeline.smoothed")
    assert set(smoothed) == allowed and abs(sum(smoothed.values()) - 1.0) < 1e-9 * len(smoothed)
    # a few seconds in, the time axis spans those seconds (10 s at least), not the whole minute
    wait_js(page, "fervid.timeline.spanSeconds !== undefined", 5)
    assert 10 <= page.evaluate("fervid.timeline.spanSeconds") < 60
    assert_labels_inside(page)
    shot = tmp_path / "live.png"
    page.screenshot(path=str(shot))
    keep_screenshot(shot, "serve_live.png")
    assert not page.problems, page.problems
    assert not page.outside, f"requests outside the app: {page.outside}"
    assert first_face_s < FACE_TIMEOUT_S


class _Fixed:
    """A detector that returns the boxes the page found."""

    def __init__(self, boxes: list[Any]):
        self.boxes = boxes

    def detect(self, image: np.ndarray) -> list[Any]:
        return list(self.boxes)


def test_browser_pipeline_matches_python(page: Any, server: str, media: Path) -> None:
    """The page's YuNet decode finds the faces OpenCV's YuNet finds, and its crop +
    preprocessing + temperature give the Python recognizer's probabilities on those boxes."""
    import cv2

    from fervid.models.bundled import weight_file

    if not page.url.startswith(server):
        page.goto(f"{server}/")
    wait_js(page, "window.fervid && window.fervid.modelLoaded && window.fervid.detectorLoaded", FACE_TIMEOUT_S)
    page.evaluate("document.querySelector('input[value=fast]').click()")
    wait_js(page, "fervid.model === 'fast'", 10)
    # the page decodes the photo itself and runs its own detector and model on it
    img_bytes = (media / "two_people.jpg").read_bytes()
    import base64

    url = "data:image/jpeg;base64," + base64.b64encode(img_bytes).decode()
    faces = page_faces(page, url)
    assert len(faces) == 2, faces

    bgr = cv2.imread(str(media / "two_people.jpg"))
    H, W = bgr.shape[:2]
    s = 320 / max(H, W)
    small = cv2.resize(bgr, (round(W * s), round(H * s)))
    det = cv2.FaceDetectorYN.create(
        str(weight_file("yunet", "opencv").path),
        "",
        (small.shape[1], small.shape[0]),
        0.6,
        0.3,
        50,
    )
    _, ref = det.detect(small)
    assert ref is not None and len(ref) == 2
    ref_boxes = sorted(([float(v) / s for v in r[:4]] for r in ref), key=lambda b: b[0])

    def iou(a: list[float], b: dict) -> float:
        x0, y0 = max(a[0], b["x"]), max(a[1], b["y"])
        x1, y1 = min(a[0] + a[2], b["x"] + b["w"]), min(a[1] + a[3], b["y"] + b["h"])
        inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
        return inter / (a[2] * a[3] + b["w"] * b["h"] - inter)

    for r, f in zip(ref_boxes, faces):
        assert iou(r, f["box"]) > 0.85, (r, f["box"])

    # the Python recognizer on the page's boxes and landmarks: both align the faces
    assert all(f["aligned"] for f in faces), faces
    rec = EmotionRecognizer("fast", detector=_Fixed([face_box(f) for f in faces]))
    py = rec.predict(media / "two_people.jpg")
    for pf, jf in zip(py.faces, faces):
        diff = max(abs(pf.probabilities[k] - jf["probabilities"][k]) for k in pf.probabilities)
        assert diff < 0.05, (pf.probabilities, jf["probabilities"])
        assert pf.label == jf["label"] or diff < 0.02


def page_image(page: Any, url: str) -> dict[str, list[dict[str, Any]]]:
    """What the page finds in the image at ``url``, in this browser: ``faces`` (the result
    schema's face objects) and ``crops`` (the page's own grey crop of each face, row-major,
    and whether it was aligned on the landmarks)."""
    return page.evaluate("async (u) => await fervid.detectImage(u)", url)


def page_faces(page: Any, url: str) -> list[dict[str, Any]]:
    """The page's faces in the image at ``url``, each with its crop (``crop``, grey levels,
    row-major) and ``aligned`` added beside the schema's fields."""
    found = page_image(page, url)
    return [{**f, "crop": c["grey"], "aligned": c["aligned"]} for f, c in zip(found["faces"], found["crops"])]


def landmark_points(landmarks: dict[str, list[float]] | None) -> list[list[float]] | None:
    """The schema's ``{right_eye: [x, y], ...}`` as ``[[x, y] x 5]`` in LANDMARK_NAMES order."""
    return None if landmarks is None else [landmarks[n] for n in LANDMARK_NAMES]


def face_box(face: dict[str, Any]) -> Any:
    from fervid.detectors import FaceBox

    b = face["box"]
    points = landmark_points(face["landmarks"])
    lm = None if points is None else tuple((float(x), float(y)) for x, y in points)
    return FaceBox(b["x"], b["y"], b["w"], b["h"], float(face.get("score", 1.0)), lm)


def png_url(rgb: np.ndarray) -> str:
    """A lossless data URL of an RGB frame: the page decodes exactly the pixels Python has."""
    import base64

    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def video_frames(video: Path, indices: list[int]) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames = []
    try:
        for i in indices:
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, bgr = cap.read()
            assert ok, f"frame {i} of {video}"
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    return frames


def crop_agreement(js: list[int], py: np.ndarray) -> tuple[float, int]:
    """Share of pixels within 2 grey levels, and the largest difference."""
    d = np.abs(np.asarray(js, np.int16).reshape(py.shape) - py.astype(np.int16))
    return float((d <= 2).mean()), int(d.max())


def test_aligned_crop_matches_python_on_video_frames(page: Any, server: str, media: Path) -> None:
    """On real frames of the clip, the page's landmark-aligned crop is crop_face's aligned
    crop (same landmarks, same box) up to rounding, and the probabilities match."""
    from fervid.data.io import rgb_to_gray
    from fervid.inference.crop import align_face, box_crop, crop_face

    if not page.url.startswith(server):
        page.goto(f"{server}/")
    wait_js(page, "window.fervid && window.fervid.modelLoaded && window.fervid.detectorLoaded", FACE_TIMEOUT_S)
    page.evaluate("document.querySelector('input[value=fast]').click()")
    wait_js(page, "fervid.model === 'fast'", 10)
    fixed = _Fixed([])
    rec = EmotionRecognizer("fast", detector=fixed)
    size, margin = int(rec.classifier.preprocess.input_size), float(rec.classifier.preprocess.face_margin)
    assert size == 48

    shares, worst, prob_diffs, n_aligned = [], 0, [], 0
    for rgb in video_frames(media / "short_hamilton_clip.mp4", [0, 45, 90, 135, 180, 225, 270]):
        faces = page_faces(page, png_url(rgb))
        if not faces:
            continue
        gray = rgb_to_gray(rgb)
        for f in faces:
            fb = face_box(f)
            ref = crop_face(gray, fb.box, margin, size, landmarks=fb.landmarks)
            if not f["aligned"]:
                # the page fell back to the box crop: so must Python have
                assert np.array_equal(ref, box_crop(gray, fb.box, margin, size))
                continue
            n_aligned += 1
            # crop_face really took the aligned path (and it is not the box crop)
            assert np.array_equal(ref, align_face(gray, fb.landmarks, size))
            share, big = crop_agreement(f["crop"], ref)
            shares.append(share)
            worst = max(worst, big)
            js = np.asarray(f["crop"], np.float64).reshape(ref.shape)
            box = box_crop(gray, fb.box, margin, size)
            assert np.abs(js - ref).mean() < np.abs(js - box).mean(), "the page's crop is nearer the box crop"
            assert share >= 0.95, (share, big, f["box"], f["landmarks"])
        fixed.boxes = [face_box(f) for f in faces]
        py = rec.predict(rgb)
        for pf, jf in zip(py.faces, faces):
            diff = max(abs(pf.probabilities[k] - jf["probabilities"][k]) for k in pf.probabilities)
            prob_diffs.append(diff)
            assert diff < 0.05, (pf.probabilities, jf["probabilities"])
    assert n_aligned >= 5, f"only {n_aligned} aligned faces on the clip's frames"
    print(
        f"aligned-crop parity on {n_aligned} faces: pixels within +-2 grey levels min {min(shares):.4f} "
        f"mean {np.mean(shares):.4f}, max |diff| {worst}; max probability diff {max(prob_diffs):.4f}"
    )


def test_page_crop_falls_back_like_python(page: Any, server: str, media: Path) -> None:
    """No landmarks, degenerate landmarks, or landmarks that disagree with the box 3x: the
    page takes the box crop, as crop_face does, and the crops agree."""
    from fervid.data.io import rgb_to_gray
    from fervid.inference.crop import align_face, crop_face

    if not page.url.startswith(server):
        page.goto(f"{server}/")
    wait_js(page, "window.fervid && window.fervid.modelLoaded && window.fervid.detectorLoaded", FACE_TIMEOUT_S)
    page.evaluate("document.querySelector('input[value=fast]').click()")
    wait_js(page, "fervid.model === 'fast'", 10)
    rgb = video_frames(media / "short_hamilton_clip.mp4", [0])[0]
    url = png_url(rgb)
    faces = page_faces(page, url)
    assert faces and faces[0]["aligned"], faces
    f = faces[0]
    lm = np.asarray(landmark_points(f["landmarks"]), np.float64)
    centre = lm.mean(0)
    variants = {
        "none": None,
        "one point": np.repeat(centre[None], 5, 0),
        # the real face's landmarks passed the 1/3..3 check, so these two cannot
        "10x too small": centre + (lm - centre) / 10,
        "10x too large": centre + (lm - centre) * 10,
        "2x small": centre + (lm - centre) / 2,
        "rotated 30 degrees": centre
        + (lm - centre) @ np.array([[np.cos(0.52), np.sin(0.52)], [-np.sin(0.52), np.cos(0.52)]]),
    }
    asked = [{"box": f["box"], "landmarks": None if v is None else v.tolist()} for v in variants.values()]
    got = page.evaluate("async ([u, faces]) => fervid.cropImage(u, faces)", [url, asked])
    gray = rgb_to_gray(rgb)
    size, margin = 48, float(EmotionRecognizer("fast").classifier.preprocess.face_margin)
    b = f["box"]
    assert [g["aligned"] for g in got][:4] == [False] * 4 and got[5]["aligned"], got
    for (name, v), g in zip(variants.items(), got):
        ref = crop_face(gray, (b["x"], b["y"], b["w"], b["h"]), margin, size, landmarks=v)
        python_aligned = v is not None and name != "one point" and np.array_equal(ref, align_face(gray, v, size))
        assert g["aligned"] == python_aligned, name
        share, big = crop_agreement(g["grey"], ref)
        assert share >= 0.95, (name, share, big)


def test_photo_upload_in_the_page(page: Any, server: str, media: Path, tmp_path: Path) -> None:
    if not page.url.startswith(server):
        page.goto(f"{server}/")
    page.set_input_files("#file-input", str(media / "two_people.jpg"))
    wait_js(page, "fervid.upload.status === 'done' || fervid.upload.status === 'error'", 30)
    up = page.evaluate("fervid.upload")
    assert up["status"] == "done" and up["faces"] == 2, up
    assert page.is_visible("#upload-canvas")
    assert page.locator("#upload-faces li").count() == 2
    page.locator("#upload").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "upload.png"))
    keep_screenshot(tmp_path / "upload.png", "serve_upload.png")
    # drag and drop: a real drop event carrying the file
    import base64

    b64 = base64.b64encode((media / "obama.jpg").read_bytes()).decode()
    transfer = page.evaluate_handle(
        """(b64) => {
        const bin = atob(b64), bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "obama.jpg", {type: "image/jpeg"}));
        return dt;
    }""",
        b64,
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    wait_js(
        page,
        "fervid.upload.status !== 'sending' && fervid.upload.result && fervid.upload.result.path === 'obama.jpg'",
        30,
    )
    assert page.evaluate("fervid.upload.faces") == 1
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    page.set_input_files("#file-input", str(notes))
    wait_js(page, "fervid.upload.status === 'error'", 30)
    assert "415" in page.evaluate("fervid.upload.error")
    status = page.inner_text("#upload-status")
    assert "415" in status and status.count("notes.txt") == 1, status  # the file is named once
    # the error replaces the previous photo's result
    assert not page.is_visible("#upload-canvas") and page.locator("#upload-faces li").count() == 0
    page.locator("#upload").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "upload_error.png"))
    keep_screenshot(tmp_path / "upload_error.png", "serve_upload_error.png")
    expected = (
        "console error: Failed to load resource: the server responded with a status of 415 (Unsupported Media Type)"
    )
    assert page.problems == [expected], page.problems
    page.problems.clear()  # that 415 was the point


def test_model_switch_to_default(page: Any, server: str) -> None:
    page.goto(f"{server}/")
    start_camera(page)
    wait_js(page, "fervid.timeline.points >= 5", 30)
    before = page.evaluate("fervid.timeline")
    page.click("input[value=default]")
    wait_js(page, "fervid.model === 'default'", 180)  # first use exports the default model on the server
    n = page.evaluate("fervid.framesProcessed")
    wait_js(page, f"fervid.framesProcessed > {n + 5} && fervid.lastFaces.length > 0", 30)
    after = page.evaluate("fervid.timeline")
    # the timeline survives the switch: same first point, more points, the switch marked on it
    assert after["first"] == before["first"] and after["points"] > before["points"], (before, after)
    assert after["switches"] == ["default"]
    assert not page.problems, page.problems


def test_the_live_view_starts_on_the_servers_model(page: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Issue 21: a server started on `default` opens the page's live view on `default` (the page
    read index.json's service_model), not on `fast`."""
    import uvicorn

    cache = tmp_path_factory.getbasetemp() / "serve-cache"
    app = create_app(EmotionRecognizer("default"), load=False, cache_dir=cache)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    try:
        deadline = time.time() + 60
        while not srv.started:
            assert th.is_alive() and time.time() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        page.goto(f"http://127.0.0.1:{port}/")
        wait_js(page, "window.fervid && window.fervid.modelLoaded", 180)  # first use exports default on the server
        assert page.evaluate("fervid.model") == "default"
        assert page.evaluate("document.querySelector('input[name=model]:checked').value") == "default"
    finally:
        srv.should_exit = True
        th.join(timeout=10)


def test_phone_layout(page: Any, server: str, media: Path, tmp_path: Path) -> None:
    """At 390x844 the camera waits for the click too, labels stay inside the frame, and an
    uploaded photo is shown full width with labels about 14 CSS pixels high."""
    phone = page.context.browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    pg = phone.new_page()
    try:
        pg.goto(f"{server}/")
        start_camera(pg)
        wait_js(pg, "fervid.facesDrawn > 0 && fervid.timeline.points >= 5", 30)
        assert_labels_inside(pg)
        shot = tmp_path / "phone_live.png"
        pg.screenshot(path=str(shot))
        keep_screenshot(shot, "serve_phone_live.png")
        pg.set_input_files("#file-input", str(media / "two_people.jpg"))
        wait_js(pg, "fervid.upload.status === 'done' || fervid.upload.status === 'error'", 30)
        up = pg.evaluate("fervid.upload")
        assert up["status"] == "done" and up["faces"] == 2, up
        shown = pg.evaluate("document.getElementById('upload-canvas').getBoundingClientRect().width")
        card = pg.evaluate("document.getElementById('upload').clientWidth")
        assert shown >= 0.85 * card and shown >= 300, (shown, card)  # full width, not a thumbnail
        assert 12 <= up["fontCssPx"] <= 16, up["fontCssPx"]  # readable labels at that width
        for r in up["labelRects"]:
            assert 0 <= r["x"] <= 1126 - r["w"] and 0 <= r["y"] <= 661 - r["h"], r
        pg.locator("#upload").scroll_into_view_if_needed()
        shot = tmp_path / "phone_upload.png"
        pg.screenshot(path=str(shot))
        keep_screenshot(shot, "serve_phone_upload.png")
    finally:
        phone.close()


# --------------------------------------------------------------------------- the page and the schema (issue 21)


@pytest.fixture(scope="module")
def onnx_fast() -> EmotionRecognizer:
    """The Python recognizer on the onnx backend with the model the page runs (``fast``)."""
    return EmotionRecognizer("fast", backend="onnx", device="cpu").load()


def check_page_is_python(page: Any, server: str, url: str, rec: EmotionRecognizer) -> dict[str, float]:
    """The page's faces in the image at ``url`` against the Python pipeline on the page's own
    crops and boxes: the schema's fields exactly, the probabilities of ``rec``'s classifier
    (onnxruntime) on those crops within :func:`tolerances.parity_bound`, the same label, and
    the other emotion fields as the Python pipeline computes them from the page's
    probabilities. Returns the largest probability difference and the largest bound."""
    from fervid.models.checkpoint import load_model
    from tolerances import U64, gamma, parity_bound

    if not page.url.startswith(server):
        page.goto(f"{server}/")
    wait_js(page, "window.fervid && window.fervid.modelLoaded && window.fervid.detectorLoaded", FACE_TIMEOUT_S)
    page.evaluate("document.querySelector('input[value=fast]').click()")
    wait_js(page, "fervid.model === 'fast'", 10)
    found = page_image(page, url)
    faces, crops = found["faces"], found["crops"]
    assert faces, "the page found no face"

    # the schema's fields, names and order: a face of /v1/predict, FaceResult.to_dict()
    fields = schema.field_names(schema.FACE_FIELDS)
    for f in faces:
        assert list(f) == fields, (list(f), fields)
        assert list(f["box"]) == list(schema.BOX_COLUMNS) and all(isinstance(v, int) for v in f["box"].values())
        assert list(f["landmarks"]) == list(LANDMARK_NAMES), f["landmarks"]
        assert all(len(p) == 2 for p in f["landmarks"].values())

    # the Python classifier (onnx backend) on the page's own crops
    pipe = rec.pipeline
    labels = list(pipe.labels)
    size = pipe.size
    stack = np.stack([np.asarray(c["grey"], np.uint8).reshape(size, size) for c in crops])
    # the page's input tensor is Python's, bit for bit (fervid.data.preprocess.to_array)
    from fervid.data.preprocess import to_array

    x = to_array(stack, rec.classifier.preprocess)
    page_x = np.asarray(page.evaluate("(c) => fervid.modelInput(c)", [c["grey"] for c in crops]), np.float32)
    assert np.array_equal(page_x, x.ravel()), np.abs(page_x - x.ravel()).max()
    py = pipe.probabilities(stack)
    js = np.array([[f["probabilities"][lab] for lab in labels] for f in faces], np.float64)
    assert all(list(f["probabilities"]) == labels for f in faces)
    # two float32 evaluations of one network (onnxruntime-web's WebAssembly kernels, onnxruntime's
    # native ones) on the same input tensor: each within logit_error_bound of the exact logits
    bound = parity_bound(load_model("fast"), stack, py, js)
    diff = np.abs(js - py)
    assert (diff <= bound).all(), (diff.max(), bound.min(), diff - bound)

    # the same label: no face here is a near-tie, so the label cannot move within the bound
    ours = pipe.results([face_box(f) for f in faces], js)  # the Python pipeline's fields of the page's faces
    for f, p, q, r, b in zip(faces, py, js, ours, bound):
        top = np.sort(p)[::-1]
        assert top[0] - top[1] > 2 * b.max(), "a near-tie: the label is not determined by the bound"
        assert f["label"] == labels[int(np.argmax(p))] == r.label
        # the emotion fields, computed from the page's probabilities as the pipeline does (float64
        # both sides, a dozen operations on numbers of magnitude <= 1 + sum |p log p|)
        eps = 2 * gamma(4 * len(labels), U64) * (1 + float(-(q * np.log(q)).sum()))
        assert abs(f["confidence"] - r.confidence) <= eps
        assert abs(f["ambiguity"] - r.ambiguity) <= eps
        assert abs(f["top2_margin"] - r.top2_margin) <= eps
        assert f["ambiguous"] == r.ambiguous and f["labels_above"] == list(r.labels_above)
        assert f["score"] == r.score and tuple(f["box"].values()) == r.box
        # the whole face: the keys of FaceResult.to_dict()
        assert list(r.to_dict()) == list(f)
    return {"max_diff": float(diff.max()), "max_bound": float(bound.max()), "min_bound": float(bound.min())}


def test_page_photo_faces_are_the_schema_and_pythons(page: Any, server: str, media: Path, onnx_fast) -> None:
    """Issue 21: two_people.jpg in the page gives faces with exactly the schema's fields and,
    on the page's own crops, the Python classifier's probabilities and labels."""
    import base64

    url = "data:image/jpeg;base64," + base64.b64encode((media / "two_people.jpg").read_bytes()).decode()
    measured = check_page_is_python(page, server, url, onnx_fast)
    n = len(page_image(page, url)["faces"])
    assert n == 2, n
    print(f"page vs Python on two_people.jpg: {measured}")
    assert not page.problems, page.problems


def test_page_video_frame_faces_are_the_schema_and_pythons(page: Any, server: str, clip: Path, onnx_fast) -> None:
    """Issue 21: one frame of the clip (given to the page losslessly, as PNG) likewise."""
    rgb = video_frames(clip, [45])[0]
    measured = check_page_is_python(page, server, png_url(rgb), onnx_fast)
    print(f"page vs Python on frame 45 of the clip: {measured}")
    assert not page.problems, page.problems
