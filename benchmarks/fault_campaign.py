"""Issue 25's fault campaign, case by case, as a user meets it: ``fervid`` subprocesses, HTTP
requests to a ``fervid serve`` on 127.0.0.1, and API calls, each in its own temporary folder.
Every case is classified ``clean`` / ``traceback`` / ``silently wrong`` / ``data loss`` /
``unclear`` (or ``not run`` where the machine cannot stage it, e.g. no tmpfs without root)
with the evidence; a table and the totals are printed at the end.

    PYTHONPATH=src python benchmarks/fault_campaign.py [--only SUBSTRING ...] [--json FILE] [--src DIR]

The issue's "Checked by" items are cases here, verbatim: a 1 MB tmpfs under ``fervid video
--out`` (``mount -t tmpfs -o size=1m tmpfs DIR``, needs root), ``fervid batch x.parquet.parts
--out x.parquet``, ``fervid serve --api-key ""`` and an undecodable TIFF followed by a good
photo in one ``fervid predict`` call. The photos come from the shared media folder
(``--media``); the hermetic inputs (bad images, videos, packs) from the fault suite's helpers
(``tests/faultkit.py``, ``tests/test_faults_inputs.py``). Exit status 1 when a case is not clean.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fault suite's input makers, not copies of them
SRC = [REPO / "src"]  # the fervid the cases run (--src: another checkout's, for a before/after table)

CLEAN, TRACEBACK, WRONG, LOSS, UNCLEAR, NOT_RUN = (
    "clean",
    "traceback",
    "silently wrong",
    "data loss",
    "unclear",
    "not run",
)
FAST = ["--model", "fast", "--no-progress"]
MEDIA = REPO.parent / "shared" / "data" / "media"


@dataclass
class Verdict:
    kind: str
    evidence: str


@dataclass
class Case:
    id: str
    group: str
    what: str
    run: Callable[[Path], Verdict]


CASES: list[Case] = []


def case(id: str, group: str, what: str) -> Callable[[Callable[[Path], Verdict]], Callable[[Path], Verdict]]:
    def add(fn: Callable[[Path], Verdict]) -> Callable[[Path], Verdict]:
        CASES.append(Case(id, group, what, fn))
        return fn

    return add


# ------------------------------------------------------------------ helpers


def fervid(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> Any:
    """``python -m fervid ARGV`` as the user types it."""
    e = {**os.environ, "PYTHONPATH": str(SRC[0]), "FERVID_CACHE": str(cwd / ".cache"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fervid", *argv], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout
    )


def quiet(err: str) -> str:
    """stderr without OpenCV/FFmpeg's own warning lines."""
    return "\n".join(ln for ln in err.splitlines() if "WARN" not in ln and not ln.startswith("[mov,"))


def last(text: str, n: int = 160) -> str:
    lines = [ln for ln in quiet(text).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:n]


def refused(r: Any, *names: str, short: int = 0) -> Verdict:
    """A case that must end in a one-line error naming ``names``: a traceback, a success (exit
    0: the fault went through) or an error that does not say what is wrong are each named."""
    err = quiet(r.stderr)
    if "Traceback" in err:
        return Verdict(TRACEBACK, last(err))
    if r.returncode == 0:
        return Verdict(WRONG, f"exit 0: {last(r.stdout + r.stderr)}")
    lines = [ln for ln in err.splitlines() if "error" in ln]
    missing = [n for n in names if not any(n in ln for ln in lines)]
    if missing or (short and len(err) > short):
        return Verdict(UNCLEAR, f"exit {r.returncode}, {len(err)} chars, lacks {missing}: {last(err)}")
    shown = next((ln for ln in lines if names and names[0] in ln), last(err))
    return Verdict(CLEAN, f"exit {r.returncode}: {shown[:160]}")


def photo(tmp: Path, name: str = "obama.jpg") -> Path:
    dest = tmp / name
    if (MEDIA / name).is_file():
        shutil.copy(MEDIA / name, dest)
    else:
        from faultkit import write_image

        write_image(dest)
    return dest


def tmpfs(base: Path, size: str) -> Any:
    """``mount -t tmpfs -o size=SIZE tmpfs BASE/small-fs`` (root only; ``None`` otherwise), unmounted after."""
    from faultkit import small_filesystem

    return small_filesystem(base, size)


def no_tmpfs() -> Verdict:
    return Verdict(NOT_RUN, "mounting a tmpfs needs root with mount rights")


def pack(tmp: Path, **kw: Any) -> Path:
    from faultkit import write_pack

    return write_pack(tmp / "faces.npz", **kw)


def train(tmp: Path, *extra: str, config: str | None = None, timeout: float = 600) -> Any:
    argv = ["train", "--data", str(pack(tmp)), "--out", str(tmp / "run"), "--epochs", "1", "--model", "fast_cnn"]
    argv += ["--no-progress", "--device", "cpu", *extra]
    if config is not None:
        (tmp / "recipe.yaml").write_text(config)
        argv += ["--config", str(tmp / "recipe.yaml")]
    return fervid(argv, tmp, timeout=timeout)


def parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist() if path.is_file() else []


def summary(r: Any) -> dict[str, Any]:
    try:
        return dict(json.loads(r.stdout))
    except ValueError:
        return {}


def corpus(tmp: Path) -> Path:
    c = tmp / "corpus"
    c.mkdir()
    for name in ("obama-480p.jpg", "two_people.jpg"):
        photo(c, name)
    return c


# ------------------------------------------------------------------ data loss / silently wrong


@case("D01", "data loss", "`fervid video clip.mp4 --out DIR/a.mp4` on `mount -t tmpfs -o size=1m tmpfs DIR`")
def video_out_full(tmp: Path) -> Verdict:
    import cv2

    from faultkit import write_video

    clip = write_video(tmp / "clip.mp4", frames=90, size=(320, 240))  # ~3 MB of mp4v noise
    with tmpfs(tmp, "1m") as mnt:
        if mnt is None:
            return no_tmpfs()
        r = fervid(["video", "clip.mp4", "--out", "small-fs/a.mp4", *FAST], tmp)
        left = sorted(p.name for p in mnt.iterdir())
        frames = 0
        if (mnt / "a.mp4").is_file():
            cap = cv2.VideoCapture(str(mnt / "a.mp4"))
            while cap.read()[0]:
                frames += 1
            cap.release()
    del clip
    if "Traceback" in r.stderr:
        return Verdict(TRACEBACK, last(r.stderr))
    if r.returncode == 0 or "wrote" in r.stdout:
        return Verdict(LOSS, f"exit {r.returncode}, '{last(r.stdout)}', left {left}, {frames} readable frames")
    if left:
        return Verdict(LOSS, f"exit {r.returncode} but left {left} ({frames} readable frames)")
    v = refused(r, "small-fs/a.mp4")
    return v if v.kind != CLEAN else Verdict(CLEAN, f"exit {r.returncode}, nothing left: {last(r.stderr)}")


@case("D02", "data loss", "`fervid batch x.parquet.parts --out x.parquet` (the input holds a photo and notes)")
def batch_parts_input(tmp: Path) -> Verdict:
    from faultkit import fingerprint

    folder = tmp / "x.parquet.parts"
    folder.mkdir()
    photo(folder)
    (folder / "notes.txt").write_text("my notes")
    before = fingerprint(folder)
    r = fervid(["batch", "x.parquet.parts", "--out", "x.parquet", *FAST], tmp)
    if not folder.is_dir() or fingerprint(folder) != before:
        return Verdict(LOSS, f"exit {r.returncode}; the input folder is {'changed' if folder.is_dir() else 'gone'}")
    if "Traceback" in r.stderr:
        return Verdict(TRACEBACK, last(r.stderr))
    if r.returncode == 0:
        return Verdict(CLEAN, f"exit 0, input intact, {len(parquet_rows(tmp / 'x.parquet'))} rows")
    v = refused(r, "x.parquet.parts")
    return Verdict(v.kind, f"input intact; {v.evidence}")


@case("D03", "data loss", "batch killed -9 after writing its outputs, before removing parts/, then rerun")
def batch_killed_then_rerun(tmp: Path) -> Verdict:
    c = corpus(tmp)
    argv = ["batch", str(c), "--out", "r.parquet", *FAST]
    first = fervid(["batch", str(c / "obama-480p.jpg"), "--out", "r.parquet", *FAST], tmp)
    env = {**os.environ, "PYTHONPATH": str(SRC[0]), "FERVID_CACHE": str(tmp / ".cache")}
    from faultkit import BATCH_KILLED_AFTER_SOURCES

    killed = subprocess.run(
        [sys.executable, "-c", BATCH_KILLED_AFTER_SOURCES, *argv], cwd=tmp, env=env, capture_output=True, text=True
    )
    again = fervid(argv, tmp)
    keys = [(r["source"], r["face"]) for r in parquet_rows(tmp / "r.parquet")]
    ev = f"first {first.returncode}, killed {killed.returncode}, rerun {again.returncode}: {len(keys)} rows"
    if "Traceback" in again.stderr:
        return Verdict(TRACEBACK, last(again.stderr))
    if killed.returncode != -9:
        return Verdict(NOT_RUN, f"the kill point was not reached ({ev})")
    if len(keys) != len(set(keys)):
        return Verdict(WRONG, f"{ev}, {len(keys) - len(set(keys))} twice")
    if again.returncode != 0 or (tmp / "r.parquet.parts").exists():
        return Verdict(UNCLEAR, f"{ev}; {last(again.stderr)}")
    return Verdict(CLEAN, f"{ev}, each once")


def _spelled_again(tmp: Path, spelling: list[str], manifest: bool) -> Verdict:
    """``fervid batch corpus`` from ``tmp``, then the same files spelled otherwise from
    ``tmp/work``: the second run must process nothing and add no row."""
    c = corpus(tmp)
    work = tmp / "work"
    work.mkdir()
    first = fervid(["batch", "corpus", "--out", "r.parquet", *FAST], tmp)
    n = len(parquet_rows(tmp / "r.parquet"))
    argv = spelling
    if manifest:
        (work / "list.csv").write_text("\n".join(spelling) + "\n")
        argv = ["list.csv"]
    again = fervid(["batch", *argv, "--out", str(tmp / "r.parquet"), *FAST], work)
    del c
    if "Traceback" in first.stderr + again.stderr:
        return Verdict(TRACEBACK, last(first.stderr + again.stderr))
    s = summary(again)
    keys = [(r["source"], r["face"]) for r in parquet_rows(tmp / "r.parquet")]
    ev = f"rows {n} -> {len(keys)}, second run processed {s.get('processed')} done earlier {s.get('done_earlier')}"
    if again.returncode != 0 or first.returncode != 0:
        return Verdict(UNCLEAR, f"exit {first.returncode}/{again.returncode}: {last(again.stderr)}")
    if len(keys) != len(set(keys)) or len(keys) != n:
        return Verdict(WRONG, ev)
    if s.get("processed") != 0:
        return Verdict(WRONG, f"processed again: {ev}")
    return Verdict(CLEAN, ev)


@case("D04", "silently wrong", "`fervid batch corpus` then `fervid batch $PWD/corpus`")
def spelled_absolute_folder(tmp: Path) -> Verdict:
    return _spelled_again(tmp, [str(tmp / "corpus")], manifest=False)


@case("D05", "silently wrong", "then a manifest listing `../corpus/a.jpg`")
def spelled_relative(tmp: Path) -> Verdict:
    return _spelled_again(tmp, ["../corpus/obama-480p.jpg"], manifest=True)


@case("D06", "silently wrong", "then a manifest listing `../corpus/./a.jpg`")
def spelled_dot(tmp: Path) -> Verdict:
    return _spelled_again(tmp, ["../corpus/./obama-480p.jpg"], manifest=True)


@case("D07", "silently wrong", "then the file by its absolute path")
def spelled_absolute_file(tmp: Path) -> Verdict:
    return _spelled_again(tmp, [str(tmp / "corpus" / "two_people.jpg")], manifest=False)


def _manifest(tmp: Path, text: str) -> Verdict:
    c = corpus(tmp)
    (tmp / "m.csv").write_text(text)
    r = fervid(["batch", "m.csv", "--out", "r.parquet", *FAST], tmp)
    if "Traceback" in r.stderr:
        return Verdict(TRACEBACK, last(r.stderr))
    import pyarrow.parquet as pq

    srcs = pq.read_table(tmp / "r.sources.parquet").column("source").to_pylist() if r.returncode == 0 else []
    want = sorted(str((c / n).resolve()) for n in ("obama-480p.jpg", "two_people.jpg"))
    if r.returncode != 0:
        return Verdict(UNCLEAR, last(r.stderr))
    if sorted(srcs) != want:
        return Verdict(WRONG, f"sources {[Path(s).name for s in srcs]}")
    return Verdict(CLEAN, f"both sources read: {[Path(s).name for s in srcs]}")


@case("D08", "data loss", "a manifest without a header (its first path)")
def manifest_no_header(tmp: Path) -> Verdict:
    return _manifest(tmp, "corpus/obama-480p.jpg\ncorpus/two_people.jpg\n")


@case("D09", "silently wrong", "a manifest column named `Path`")
def manifest_path_column(tmp: Path) -> Verdict:
    return _manifest(tmp, "id,Path\n1,corpus/obama-480p.jpg\n2,corpus/two_people.jpg\n")


SCAN_FORMATS = {".jfif": "JPEG", ".avif": "AVIF", ".jp2": "JPEG2000"}


def _scan(tmp: Path, verb: str, ext: str) -> Verdict:
    from PIL import Image, features

    if ext == ".avif" and not features.check("avif"):
        return Verdict(NOT_RUN, "this Pillow has no AVIF")
    folder = tmp / "photos"
    folder.mkdir()
    Image.open(photo(tmp)).save(folder / f"face{ext}", SCAN_FORMATS[ext])
    if verb == "predict":
        r = fervid(["predict", "photos", "--json", *FAST], tmp)
        seen = [json.loads(ln)["path"] for ln in r.stdout.splitlines() if ln.startswith("{")]
    else:
        r = fervid(["batch", "photos", "--out", "r.parquet", *FAST], tmp)
        seen = [s["source"] for s in parquet_rows(tmp / "r.sources.parquet")]
    if "Traceback" in r.stderr:
        return Verdict(TRACEBACK, last(r.stderr))
    if not any(s.endswith(f"face{ext}") for s in seen):
        return Verdict(WRONG, f"exit {r.returncode}, face{ext} skipped: {last(r.stderr) or 'no report'}")
    return Verdict(CLEAN, f"exit {r.returncode}, face{ext} read")


for _verb in ("predict", "batch"):
    for _i, _ext in enumerate(SCAN_FORMATS):
        case(f"D{10 + 3 * (_verb == 'batch') + _i}", "silently wrong", f"`{_verb}` folder scan with a {_ext}")(
            lambda tmp, v=_verb, e=_ext: _scan(tmp, v, e)
        )


@case("D16", "silently wrong", "`imbalance: effective` with `cb_beta: 1.0` (NaN training)")
def cb_beta_one(tmp: Path) -> Verdict:
    r = train(tmp, "--set", "imbalance=effective", "cb_beta=1.0")
    v = refused(r, "cb_beta")
    saved = [p.name for p in (tmp / "run").glob("*.pt")] if (tmp / "run").is_dir() else []
    return Verdict(LOSS if saved and v.kind == WRONG else v.kind, f"{v.evidence}; checkpoints {saved}")


@case("D17", "silently wrong", "`grad_clip: -1` (reverses the gradients)")
def grad_clip_negative(tmp: Path) -> Verdict:
    return refused(train(tmp, config="grad_clip: -1\n"), "grad_clip")


def _epochs_run(tmp: Path) -> int:
    m = tmp / "run" / "metrics.jsonl"
    return len(m.read_text().splitlines()) if m.is_file() else 0


@case("D18", "silently wrong", "`epochs: 1` with `time_budget_minutes: -5`")
def budget_negative(tmp: Path) -> Verdict:
    r = train(tmp, config="epochs: 1\nwarmup_epochs: 0\ntime_budget_minutes: -5\n")
    if r.returncode == 0 and "Traceback" not in r.stderr:
        n = _epochs_run(tmp)
        return Verdict(CLEAN if n == 1 else WRONG, f"exit 0, {n} epoch(s) run")
    return refused(r, "time_budget_minutes")


@case("D19", "silently wrong", "`epochs: 1` with `time_budget_minutes: 10`")
def budget_positive(tmp: Path) -> Verdict:
    r = train(tmp, config="epochs: 1\nwarmup_epochs: 0\ntime_budget_minutes: 10\n")
    if "Traceback" in r.stderr or r.returncode != 0:
        return Verdict(TRACEBACK if "Traceback" in r.stderr else UNCLEAR, last(r.stderr))
    n = _epochs_run(tmp)
    return Verdict(CLEAN if n == 1 else WRONG, f"exit 0, {n} epoch(s) run")


@case("D20", "silently wrong", "a duplicate YAML key (`epochs: 1` twice)")
def duplicate_key(tmp: Path) -> Verdict:
    return refused(train(tmp, config="epochs: 1\nlr: 0.01\nepochs: 2\n"), "epochs")


@case("D21", "silently wrong", "a 1000 fps file's timestamps (`fervid video --csv`)")
def thousand_fps(tmp: Path) -> Verdict:
    from faultkit import write_video

    write_video(tmp / "fast.mp4", frames=40, fps=1000.0)
    r = fervid(["video", "fast.mp4", "--csv", "t.csv", "--detector", "skip", *FAST], tmp)
    if r.returncode != 0:
        return Verdict(TRACEBACK if "Traceback" in r.stderr else UNCLEAR, last(r.stderr))
    with open(tmp / "t.csv", newline="") as f:
        times = {int(row["frame"]): float(row["time"]) for row in csv.DictReader(f)}
    t29 = times.get(29)
    ok = t29 is not None and abs(t29 - 0.029) <= 0.5e-3  # the container's ms resolution
    return Verdict(CLEAN if ok else WRONG, f"frame 29 at {t29} s (want 0.029)")


@case("D22", "silently wrong", 'API `detector_options={"max_side": -5}` on a clear face')
def max_side_negative(tmp: Path) -> Verdict:
    from fervid import EmotionRecognizer

    try:
        res = EmotionRecognizer("fast", detector="yunet", detector_options={"max_side": -5}).predict(photo(tmp))
    except (ValueError, TypeError) as e:  # a named refusal (FervidError is a ValueError)
        ok = "max_side" in str(e)
        return Verdict(CLEAN if ok else UNCLEAR, f"{type(e).__name__}: {str(e)[:140]}")
    except Exception as e:  # noqa: BLE001 -- the campaign classifies it
        return Verdict(TRACEBACK, f"{type(e).__name__}: {str(e)[:140]}")
    return Verdict(WRONG, f"accepted: {len(res.faces)} face(s)")


@case("D23", "silently wrong", '`EmotionRecognizer(detector="haar")` shared by 8 threads, 6 calls each')
def haar_threads(tmp: Path) -> Verdict:
    from concurrent.futures import ThreadPoolExecutor

    from fervid import EmotionRecognizer
    from fervid.data.io import load_image

    names = ["obama.jpg", "two_people.jpg", "obama_and_biden.jpg", "obama-480p.jpg", "lin-manuel-miranda.png"]
    if not all((MEDIA / n).is_file() for n in names):
        return Verdict(NOT_RUN, f"needs the media photos in {MEDIA}")
    images = [load_image(MEDIA / n) for n in names]
    rec = EmotionRecognizer("fast", detector="haar").load()
    reference = [rec.predict(im).to_dict() for im in images]

    def calls(k: int) -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = []
        for j in range(6):
            i = (k + j) % len(images)
            try:
                out.append((i, rec.predict(images[i]).to_dict()))
            except Exception as e:  # noqa: BLE001 -- counted
                out.append((i, e))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(calls, range(8)) for r in rs]
    errors = sum(isinstance(d, Exception) for _, d in results)
    equal = sum(d == reference[i] for i, d in results)
    ev = f"{equal}/48 equal to one thread, {errors} errors"
    return Verdict(CLEAN if equal == 48 else TRACEBACK if errors else WRONG, ev)


# ------------------------------------------------------------------ security and the service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``fervid serve`` on 127.0.0.1 (model fast, no detector), stopped after; yields its base
    URL and process (which may have exited: the caller looks)."""
    import httpx

    port = free_port()
    e = {**os.environ, "PYTHONPATH": str(SRC[0]), "FERVID_CACHE": str(tmp / ".cache"), **(env or {})}
    argv = [sys.executable, "-m", "fervid", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--model", "fast", "--detector", "skip", *extra],
        cwd=tmp,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    try:
        while proc.poll() is None and time.time() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).json().get("model_loaded"):
                    break
            time.sleep(0.3)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def png(size: int = 48) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(b, "PNG")
    return b.getvalue()


@case("S01", "security", '`fervid serve --api-key ""` (KEY unset)')
def empty_api_key(tmp: Path) -> Verdict:
    import httpx

    with serve(tmp, "--api-key", "") as (base, proc):
        if proc.poll() is None:
            r = httpx.post(f"{base}/v1/predict", content=png(), headers={"Content-Type": "image/png"}, timeout=60)
            return Verdict(WRONG, f"started with authentication off: POST without a key -> {r.status_code}")
        out = proc.stdout.read() if proc.stdout else ""
    if "Traceback" in out:
        return Verdict(TRACEBACK, last(out))
    ok = proc.returncode != 0 and "empty" in out and "error" in out
    return Verdict(CLEAN if ok else UNCLEAR, f"exit {proc.returncode}: {last(out)}")


SERVICE_CASES = ("S02", "S03", "T05")


def _service(tmp: Path) -> dict[str, Verdict]:
    """One server with a non-ASCII key for S02, S03 and T05."""
    import httpx

    from test_faults_inputs import BAD_IMAGES

    key = "clé-🔑-ü"
    out: dict[str, Verdict] = {}
    with serve(tmp, "--api-key", key) as (base, proc):
        if proc.poll() is not None:
            text = proc.stdout.read() if proc.stdout else ""
            return dict.fromkeys(SERVICE_CASES, Verdict(TRACEBACK if "Traceback" in text else UNCLEAR, last(text)))

        def post(body: bytes, **headers: Any) -> httpx.Response:
            return httpx.post(f"{base}/v1/predict", content=body, headers=headers, timeout=60)

        right = post(png(), **{"X-API-Key": key.encode("utf-8"), "Content-Type": "image/png"}).status_code
        wrong = post(png(), **{"X-API-Key": "cle-u", "Content-Type": "image/png"}).status_code
        none = post(png(), **{"Content-Type": "image/png"}).status_code
        out["S02"] = Verdict(
            CLEAN if (right, wrong, none) == (200, 401, 401) else WRONG,
            f"right key as UTF-8 -> {right}, wrong -> {wrong}, none -> {none}",
        )
        page, static = httpx.get(base + "/", timeout=30), httpx.get(base + "/static/index.html", timeout=30)
        wanted = ("content-security-policy", "x-frame-options", "x-content-type-options")
        diff = [h for h in wanted if not page.headers.get(h) or static.headers.get(h) != page.headers.get(h)]
        same = static.status_code == 200 and static.text == page.text
        out["S03"] = Verdict(
            CLEAN if not diff or static.status_code != 200 else WRONG,
            f"/static/index.html {static.status_code}, same page {same}, headers missing or different: {diff}",
        )
        codes = {}
        for name, (make, _) in BAD_IMAGES.items():
            try:
                data = make()
            except BaseException:  # noqa: BLE001 -- pytest.skip: this Pillow cannot make the case
                continue
            r = post(data, **{"X-API-Key": key.encode("utf-8"), "Content-Type": "application/octet-stream"})
            codes[name] = r.status_code
        bad = {k: v for k, v in codes.items() if v != 415}
        out["T05"] = Verdict(TRACEBACK if 500 in bad.values() else UNCLEAR if bad else CLEAN, f"status {codes}")
    return out


_SERVICE_MEMO: dict[str, Verdict] = {}


def _service_case(tmp: Path, id: str) -> Verdict:
    if not _SERVICE_MEMO:
        _SERVICE_MEMO.update(_service(tmp))
    return _SERVICE_MEMO[id]


case("S02", "security", "a non-ASCII key sent as UTF-8")(lambda tmp: _service_case(tmp, "S02"))
case("S03", "security", "`/static/index.html` carries the page's CSP and X-Frame-Options")(
    lambda tmp: _service_case(tmp, "S03")
)


# ------------------------------------------------------------------ tracebacks


def _bad(tmp: Path, name: str) -> Path | None:
    from test_faults_inputs import BAD_IMAGES

    try:
        data = BAD_IMAGES[name][0]()
    except BaseException:  # noqa: BLE001 -- pytest.skip: this Pillow/libavif cannot make it
        return None
    (tmp / name).write_bytes(data)
    return tmp / name


def _bad_then_good(tmp: Path, name: str) -> Verdict:
    bad = _bad(tmp, name)
    if bad is None:
        return Verdict(NOT_RUN, f"no {name} can be made with this Pillow")
    photo(tmp)
    r = fervid(["predict", name, "obama.jpg", "--json", *FAST], tmp)
    if "Traceback" in r.stderr:
        return Verdict(TRACEBACK, last(r.stderr))
    done = [json.loads(ln)["path"] for ln in r.stdout.splitlines() if ln.startswith("{")]
    if done != ["obama.jpg"]:
        return Verdict(LOSS, f"exit {r.returncode}, the good photo {'not ' if not done else ''}processed: {done}")
    named = [ln for ln in r.stderr.splitlines() if name in ln and "error" in ln]
    ok = r.returncode == 1 and bool(named)
    shown = named[0][:120] if named else last(r.stderr)
    return Verdict(CLEAN if ok else UNCLEAR, f"exit {r.returncode}, obama.jpg processed; {shown}")


case("T01", "traceback", "an undecodable TIFF (RATIONAL StripOffsets) followed by a good photo, one `fervid predict`")(
    lambda tmp: _bad_then_good(tmp, "strip.tif")
)
case("T02", "traceback", "a DDS with pixel-format flags 0 followed by a good photo")(
    lambda tmp: _bad_then_good(tmp, "flags.dds")
)
case("T03", "traceback", "a fuzzed AVIF followed by a good photo")(lambda tmp: _bad_then_good(tmp, "fuzzed.avif"))


@case("T04", "traceback", "`fervid data info --lenient` on a folder with the bad TIFF and DDS")
def data_info_lenient(tmp: Path) -> Verdict:
    from faultkit import write_image

    cls = tmp / "faces" / "happy"
    cls.mkdir(parents=True)
    for i in range(3):
        write_image(cls / f"ok{i}.png", size=48, seed=i)
    _bad(cls, "strip.tif")
    _bad(cls, "flags.dds")
    r = fervid(["data", "info", "faces", "--lenient"], tmp)
    if "Traceback" in r.stderr or r.returncode != 0:
        return Verdict(TRACEBACK if "Traceback" in r.stderr else UNCLEAR, last(r.stderr))
    ok = "strip.tif" in r.stdout and "flags.dds" in r.stdout and "3 images" in r.stdout
    return Verdict(CLEAN if ok else WRONG, "exit 0, both named in the report" if ok else last(r.stdout, 300))


case("T05", "traceback", "the service on the three undecodable images (415, not 500)")(
    lambda tmp: _service_case(tmp, "T05")
)


def _corrupt_onnx(tmp: Path, verb: str) -> Verdict:
    (tmp / "bad.onnx").write_bytes(os.urandom(2000))
    if verb == "predict":
        src = photo(tmp).name
    else:
        from faultkit import write_video

        src = write_video(tmp / "clip.mp4", frames=10).name
    return refused(fervid([verb, src, "--model", "bad.onnx", "--no-progress"], tmp), "bad.onnx")


case("T06", "traceback", "a corrupt `.onnx` as `--model` in predict")(lambda tmp: _corrupt_onnx(tmp, "predict"))
case("T07", "traceback", "a corrupt `.onnx` as `--model` in video")(lambda tmp: _corrupt_onnx(tmp, "video"))

RECIPES = [
    ("T08", "config keys of mixed types (`1: 2` beside `foo: 3`)", "1: 2\nfoo: 3\n", "1"),
    ("T09", "a `null:` key", "null: 3\nepochs: 1\n", "None"),
    ("T10", "unknown `model_args` key", "model_args:\n  nope: 1\n", "nope"),
    ("T11", "`seed: -1`", "seed: -1\n", "seed"),
    ("T12", "`label_smoothing: 2`", "label_smoothing: 2\n", "label_smoothing"),
    ("T13", "`weight_decay: .nan`", "weight_decay: .nan\n", "weight_decay"),
    ("T14", "`momentum: -3`", "momentum: -3\n", "momentum"),
]
for _id, _what, _text, _key in RECIPES:
    case(_id, "traceback", f"train recipe with {_what}")(
        lambda tmp, t=_text, k=_key: refused(train(tmp, config=t), k, short=400)
    )


@case("T15", "traceback", "`--set 'epochs=[1,'` (a YAML ParserError)")
def set_parser_error(tmp: Path) -> Verdict:
    return refused(train(tmp, "--set", "epochs=[1,"), "epochs", short=400)


# ------------------------------------------------------------------ unclear messages


@case("U01", "unclear", "a full disk during `fervid video --csv` (8 KB tmpfs)")
def video_csv_full(tmp: Path) -> Verdict:
    from faultkit import write_video

    write_video(tmp / "clip.mp4", frames=200, size=(160, 120))
    with tmpfs(tmp, "8k") as mnt:
        if mnt is None:
            return no_tmpfs()
        r = fervid(["video", "clip.mp4", "--csv", "small-fs/t.csv", "--detector", "skip", *FAST], tmp)
    return refused(r, "small-fs/t.csv")


@case("U02", "unclear", "a full disk during `fervid batch` (12 KB tmpfs), then the same command with room")
def batch_full(tmp: Path) -> Verdict:
    from faultkit import write_image

    src = tmp / "in"
    src.mkdir()
    for i in range(3):
        write_image(src / f"p{i}.png", seed=i)
    with tmpfs(tmp, "12k") as mnt:
        if mnt is None:
            return no_tmpfs()
        r = fervid(["batch", "in", "--out", "small-fs/r.parquet", *FAST], tmp)
        v = refused(r, "small-fs/r.parquet")
        subprocess.run(["mount", "-o", "remount,size=10m", str(mnt)])
        again = fervid(["batch", "in", "--out", "small-fs/r.parquet", *FAST], tmp)
        rows = len(parquet_rows(mnt / "r.sources.parquet"))
    ev = f"{v.evidence}; with room: exit {again.returncode}, {rows} sources, {summary(again).get('done_earlier')} kept"
    if v.kind == CLEAN and (again.returncode != 0 or rows != 3):
        return Verdict(LOSS, ev)
    return Verdict(v.kind, ev)


@case("U03", "unclear", "`fervid serve --host 999.1.1.1`")
def bad_host(tmp: Path) -> Verdict:
    return refused(
        fervid(["serve", "--host", "999.1.1.1", "--port", "0", "--model", "fast"], tmp, timeout=180), "999.1.1.1"
    )


@case("U04", "unclear", "a 100 MP image in `fervid predict` (PIL's DecompressionBombWarning)")
def hundred_megapixels(tmp: Path) -> Verdict:
    from PIL import Image

    Image.new("L", (10000, 10000), 128).save(tmp / "huge.png")
    r = fervid(["predict", "huge.png", "--detector", "skip", *FAST], tmp)
    if "Traceback" in r.stderr:
        return Verdict(TRACEBACK, last(r.stderr))
    lines = [ln for ln in r.stderr.splitlines() if "pixels" in ln or "DecompressionBomb" in ln or "error" in ln]
    named = bool(lines) and all("huge.png" in ln for ln in lines)
    return Verdict(CLEAN if named else UNCLEAR, f"exit {r.returncode}: {lines[0][:160] if lines else 'no message'}")


@case("U05", "unclear", "a float TIFF's clipping warning")
def float_tiff(tmp: Path) -> Verdict:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.linspace(-50, 400, 64 * 64, dtype=np.float32).reshape(64, 64), mode="F").save(tmp / "f.tif")
    r = fervid(["predict", "f.tif", "--detector", "skip", *FAST], tmp)
    if "Traceback" in r.stderr:
        return Verdict(TRACEBACK, last(r.stderr))
    lines = [ln for ln in r.stderr.splitlines() if "clip" in ln or "pixel values" in ln]
    ok = bool(lines) and all("f.tif" in ln and "<array" not in ln for ln in lines)
    return Verdict(CLEAN if ok else UNCLEAR, f"exit {r.returncode}: {lines[0][:160] if lines else 'no warning'}")


def _said(tmp: Path, argv: list[str], said: str, unsaid: tuple[str, ...]) -> Verdict:
    r = fervid(argv, tmp)
    v = refused(r, said)
    wrong = [u for u in unsaid if u in r.stderr]
    return Verdict(UNCLEAR, f"says {wrong}: {last(r.stderr)}") if v.kind == CLEAN and wrong else v


@case("U06", "unclear", "a symlink loop in `fervid predict`")
def symlink_loop(tmp: Path) -> Verdict:
    (tmp / "loop1").symlink_to(tmp / "loop2")
    (tmp / "loop2").symlink_to(tmp / "loop1")
    return _said(tmp, ["predict", "loop1", *FAST], "loop of symbolic links", ("no such file",))


@case("U07", "unclear", "`fervid predict /dev/zero`")
def dev_zero(tmp: Path) -> Verdict:
    if not os.path.exists("/dev/zero"):
        return Verdict(NOT_RUN, "no /dev/zero")
    return _said(tmp, ["predict", "/dev/zero", *FAST], "character device", ("empty",))


@case("U08", "unclear", "`fervid predict http://example.com/photo.jpg`")
def url(tmp: Path) -> Verdict:
    return _said(tmp, ["predict", "http://example.com/photo.jpg", *FAST], "URL", ("http:/e", "no such file"))


@case("U09", "unclear", 'API `predict("")`')
def empty_path(tmp: Path) -> Verdict:
    from fervid import EmotionRecognizer

    try:
        EmotionRecognizer("fast", detector="skip").predict("")
    except (ValueError, OSError) as e:
        ok = "empty path" in str(e) and "directory" not in str(e)
        return Verdict(CLEAN if ok else UNCLEAR, f"{type(e).__name__}: {str(e)[:140]}")
    except Exception as e:  # noqa: BLE001 -- classified
        return Verdict(TRACEBACK, f"{type(e).__name__}: {str(e)[:140]}")
    return Verdict(WRONG, "accepted")


@case("U10", "unclear", "a header-less FER CSV in `fervid data info`")
def headerless_csv(tmp: Path) -> Verdict:
    rows = [f"{i % 7},{' '.join(str((i * 7 + k) % 256) for k in range(2304))},Training" for i in range(3)]
    (tmp / "noheader.csv").write_text("\n".join(rows) + "\n")
    return refused(fervid(["data", "info", "noheader.csv"], tmp), "noheader.csv", short=300)


@case("U11", "unclear", "a train killed before its first checkpoint, then rerun / --resume")
def train_killed_early(tmp: Path) -> Verdict:
    data = pack(tmp, n_train=6000, n_val=600)
    argv = ["train", "--data", str(data), "--out", "run", "--epochs", "1", "--model", "fast_cnn", "--no-progress"]
    argv += ["--device", "cpu"]
    e = {**os.environ, "PYTHONPATH": str(SRC[0]), "FERVID_CACHE": str(tmp / ".cache")}
    proc = subprocess.Popen([sys.executable, "-m", "fervid", *argv], cwd=tmp, env=e, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (tmp / "run" / "config.json").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    if (tmp / "run" / "last.pt").exists() or not (tmp / "run" / "config.json").is_file():
        return Verdict(NOT_RUN, "the kill came after the first checkpoint (or before the run folder)")
    shutil.copytree(tmp / "run", tmp / "run2")
    again = fervid(argv, tmp)
    resumed = fervid([*argv[:4], "run2", *argv[5:], "--resume"], tmp)
    ev = f"rerun exit {again.returncode}, --resume exit {resumed.returncode}"
    if "Traceback" in again.stderr + resumed.stderr:
        return Verdict(TRACEBACK, f"{ev}: {last(again.stderr + resumed.stderr)}")
    ok = again.returncode == resumed.returncode == 0
    ok = ok and (tmp / "run" / "best.pt").is_file() and (tmp / "run2" / "best.pt").is_file()
    return Verdict(CLEAN if ok else UNCLEAR, ev if ok else f"{ev}: {last(again.stderr)} | {last(resumed.stderr)}")


@case("U12", "unclear", "an unwritable cache: `/models/*` answers")
def unwritable_cache(tmp: Path) -> Verdict:
    import httpx

    blocker = tmp / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with serve(tmp, env={"FERVID_CACHE": str(blocker / "cache")}) as (base, proc):
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            ok = "Traceback" not in out and str(blocker) in out
            return Verdict(CLEAN if ok else TRACEBACK if "Traceback" in out else UNCLEAR, f"refused: {last(out)}")
        r = httpx.get(f"{base}/models/fast.onnx", timeout=120)
    try:
        msg = r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return Verdict(UNCLEAR, f"{r.status_code}: {r.text[:120]}")
    ok = str(blocker) in msg
    return Verdict(CLEAN if ok else UNCLEAR, f"{r.status_code}: {msg[:160]}")


# ------------------------------------------------------------------ the run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", help="run the cases whose id or text holds one of these")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--src", type=Path, default=SRC[0], help="the fervid source folder to run (default: this one)")
    args = ap.parse_args()
    SRC[0] = args.src.resolve()
    sys.path.insert(0, str(SRC[0]))  # the API cases too
    import fervid

    print(f"fervid from {Path(fervid.__file__).parent}", file=sys.stderr)
    chosen = [c for c in CASES if not args.only or any(o in c.id or o in c.what for o in args.only)]
    results = []
    for c in chosen:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"fervid-{c.id}-") as d:
            try:
                v = c.run(Path(d))
            except Exception as e:  # noqa: BLE001 -- the campaign's own failure, reported as such
                v = Verdict("campaign error", f"{type(e).__name__}: {e}"[:200])
        results.append({"id": c.id, "group": c.group, "case": c.what, "verdict": v.kind, "evidence": v.evidence})
        print(f"{c.id} {v.kind:14s} {time.perf_counter() - t0:6.1f}s  {v.evidence}", file=sys.stderr, flush=True)
    print("| id | issue's class | case | verdict | evidence |\n|---|---|---|---|---|")
    for r in results:
        ev, what = (r[k].replace("|", "\\|").replace("\n", " ") for k in ("evidence", "case"))
        print(f"| {r['id']} | {r['group']} | {what} | {r['verdict']} | {ev} |")
    totals: dict[str, int] = {}
    for r in results:
        totals[r["verdict"]] = totals.get(r["verdict"], 0) + 1
    print("\ntotals: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())) + f" (of {len(results)})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["verdict"] in (CLEAN, NOT_RUN) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
