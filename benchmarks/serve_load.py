"""Load on loopback for `fervid serve`, and the live page's fps in headless Chromium.

    .venv/bin/python benchmarks/serve_load.py --model default --clients 1 16 --seconds 15 --max-requests 3000 --browser

1. Starts `fervid serve --model MODEL` (a separate process, 127.0.0.1, a free port) and waits
   until its model is loaded.
2. For each concurrency level N: N client threads (one httpx connection each) post a real
   640x480 photo with one face (../shared/data/media/obama-480p.jpg centre-cropped to 640x480,
   JPEG q90) to /v1/predict for T seconds or until --max-requests, whichever comes first.
   Prints p50/p99 latency, throughput, errors (any non-200 or transport error), the server
   process's CPU time per request (user + system, all threads: a figure that other load on
   the machine barely changes, unlike latency) and its peak RSS (VmHWM).
3. --browser: opens the page in Debian's Chromium (headless, fake camera from the Hamilton clip
   as a 640x360 .y4m) with the fast and the default model and reports the page's fps (frames
   analysed per second, capped by the 30 fps camera) and ms per frame (detector + crops +
   emotion model, in WebAssembly), averaged over --browser-seconds after warm-up.

Client threads and the server share the machine's cores: on a 2-core CPU the load generator
itself costs throughput. Bounded: at most --max-requests per level and --seconds each.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    env = os.environ.get("FERVID_DATA")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data", REPO / "shared" / "data"]:
        if (c / "media").is_dir():
            return c
    sys.exit("serve_load: ../shared/data/media not found (set FERVID_DATA)")


def photo_640x480(path: Path) -> bytes:
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    scale = max(640 / w, 480 / h)
    im = im.resize((round(w * scale), round(h * scale)), Image.LANCZOS)
    w, h = im.size
    left, top = (w - 640) // 2, (h - 480) // 2
    buf = io.BytesIO()
    im.crop((left, top, left + 640, top + 480)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(model: str, port: int, cache: str | None, workers: int, detector: str | None) -> subprocess.Popen:
    import httpx

    env = dict(os.environ)
    if cache:
        env["FERVID_CACHE"] = cache
    log_path = Path(tempfile.gettempdir()) / f"fervid-serve-{port}.log"
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        cmd = [
            sys.executable,
            "-m",
            "fervid",
            "serve",
            "--port",
            str(port),
            "--model",
            model,
            "--workers",
            str(workers),
        ]
        proc = subprocess.Popen(
            cmd + (["--detector", detector] if detector else []), stdout=log, stderr=subprocess.STDOUT, env=env
        )
    deadline = time.time() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()["model_loaded"]:
                return proc
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            sys.exit(f"serve_load: the server did not start (log: {log_path})")
        time.sleep(0.2)


def in_process_ms(model: str, detector: str | None, body: bytes, n: int = 20) -> float:
    """Median time of EmotionRecognizer.predict on the same photo in this process (no HTTP)."""
    from fervid import EmotionRecognizer

    rec = EmotionRecognizer(model, **({"detector": detector} if detector else {})).load()
    for _ in range(3):
        rec.predict(body)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        rec.predict(body)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def load(base: str, body: bytes, clients: int, seconds: float, max_requests: int, expect: int) -> dict:
    import httpx

    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    count = [0]
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            while time.perf_counter() < stop_at:
                with lock:
                    if count[0] >= max_requests:
                        return
                    count[0] += 1
                t = time.perf_counter()
                try:
                    r = c.post("/v1/predict", files={"file": ("obama-640x480.jpg", body, "image/jpeg")})
                    ok = r.status_code == 200 and (expect < 0 or len(r.json()["faces"]) == expect)
                    err = None if ok else f"{r.status_code}: {r.text[:120]}"
                except httpx.HTTPError as e:
                    err = f"{type(e).__name__}: {e}"
                dt = time.perf_counter() - t
                with lock:
                    (errors.append(err) if err else lat.append(dt))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat.sort()

    def q(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {
        "clients": clients,
        "requests": len(lat) + len(errors),
        "ok": len(lat),
        "errors": len(errors),
        "error_examples": errors[:3],
        "seconds": round(wall, 2),
        "p50_ms": round(q(0.50), 1),
        "p99_ms": round(q(0.99), 1),
        "mean_ms": round(1000 * statistics.fmean(lat), 1) if lat else None,
        "throughput_rps": round(len(lat) / wall, 1),
    }


def write_y4m(video: Path, out: Path, max_frames: int = 150) -> None:
    import cv2

    cap = cv2.VideoCapture(str(video))
    with open(out, "wb") as f:
        f.write(b"YUV4MPEG2 W640 H360 F30:1 Ip A1:1 C420jpeg\n")
        for _ in range(max_frames):
            ok, bgr = cap.read()
            if not ok:
                break
            bgr = cv2.resize(bgr, (640, 360), interpolation=cv2.INTER_AREA)
            f.write(b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
    cap.release()


def browser_fps(base: str, media: Path, models: list[str], seconds: float, chromium: str) -> list[dict]:
    from playwright.sync_api import sync_playwright

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        y4m = Path(tmp) / "cam.y4m"
        write_y4m(media / "short_hamilton_clip.mp4", y4m)
        with sync_playwright() as p:
            b = p.chromium.launch(
                executable_path=chromium,
                args=[
                    "--no-sandbox",
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-video-capture={y4m}",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            for model in models:
                page = b.new_page()
                page.goto(f"{base}/?model={model}")
                deadline = time.time() + 180
                while not page.evaluate("!!(window.fervid && fervid.facesDrawn > 0)"):
                    if time.time() > deadline:
                        sys.exit(
                            f"serve_load: the page showed no face with {model}: "
                            f"{page.evaluate('JSON.stringify(window.fervid || {})')}"
                        )
                    time.sleep(0.2)
                time.sleep(2.0)  # warm-up
                a = page.evaluate("({n: fervid.framesProcessed, f: fervid.facesDrawn, t: performance.now()})")
                time.sleep(seconds)
                z = page.evaluate(
                    "({n: fervid.framesProcessed, f: fervid.facesDrawn, t: performance.now(), "
                    "ms: fervid.msPerFrame, timing: fervid.timing, threads: fervid.threads})"
                )
                dt = (z["t"] - a["t"]) / 1000
                out.append(
                    {
                        "model": model,
                        "fps": round((z["n"] - a["n"]) / dt, 1),
                        "faces_per_frame": round((z["f"] - a["f"]) / max(1, z["n"] - a["n"]), 2),
                        "ms_per_frame": round(z["ms"], 1),
                        "wasm_threads": z["threads"],
                        "timing_ms": {k: round(v, 1) for k, v in z["timing"].items()},
                    }
                )
                page.close()
            b.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="the service's model (default: default)")
    ap.add_argument(
        "--clients",
        type=int,
        nargs="*",
        default=[1, 16],
        help="concurrency levels (default 1 16; none: only the page with --browser)",
    )
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds per level (default 15)")
    ap.add_argument("--max-requests", type=int, default=3000, help="most requests per level (default 3000)")
    ap.add_argument("--workers", type=int, default=1, help="fervid serve --workers (default 1)")
    ap.add_argument("--detector", default=None, help="fervid serve --detector (default: the library's default)")
    ap.add_argument("--expect-faces", type=int, default=1, help="faces each answer must have (default 1; -1: any)")
    ap.add_argument("--warmup", type=int, default=10, help="requests before measuring (default 10)")
    ap.add_argument("--browser", action="store_true", help="also measure the live page's fps in headless Chromium")
    ap.add_argument("--browser-models", nargs="+", default=["fast", "default"])
    ap.add_argument("--browser-seconds", type=float, default=10.0)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()

    import httpx

    media = data_root() / "media"
    body = photo_640x480(media / "obama-480p.jpg")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as cache:
        direct = in_process_ms(args.model, args.detector, body)
        proc = start_server(args.model, port, cache, args.workers, args.detector)
        try:
            with httpx.Client(base_url=base, timeout=60) as c:
                for _ in range(args.warmup):
                    r = c.post("/v1/predict", files={"file": ("w.jpg", body, "image/jpeg")})
                    assert r.status_code == 200 and (
                        args.expect_faces < 0 or len(r.json()["faces"]) == args.expect_faces
                    ), r.text
            rows = []
            for n in args.clients:
                cpu0 = cpu_seconds(proc.pid)
                row = load(base, body, n, args.seconds, args.max_requests, args.expect_faces)
                # CPU the server spent per answered request: unlike latency, barely changed by other load
                row["server_cpu_ms_per_request"] = round(1000 * (cpu_seconds(proc.pid) - cpu0) / max(1, row["ok"]), 1)
                rows.append(row)
            rss = peak_rss_mb(proc.pid)
            page = (
                browser_fps(base, media, args.browser_models, args.browser_seconds, args.chromium)
                if args.browser
                else []
            )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    result = {
        "model": args.model,
        "detector": args.detector or "default",
        "in_process_predict_ms": round(direct, 1),
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "server_peak_rss_mb": round(rss, 1),
        "api": rows,
        "browser": page,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"fervid serve --model {args.model} --detector {result['detector']} --workers {args.workers}; "
        f"EmotionRecognizer.predict in process (no HTTP): {direct:.1f} ms median; {os.cpu_count()} CPUs; "
        f"load average at the end {result['load_avg_1min']}; server peak RSS {rss:.0f} MB "
        "(main process; workers > 1 not included)"
    )
    print("| clients | requests | errors | p50 ms | p99 ms | throughput req/s | server CPU ms/request |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['p50_ms']} | {r['p99_ms']} | {r['throughput_rps']} "
            f"| {r['server_cpu_ms_per_request']} |"
        )
        for e in r["error_examples"]:
            print(f"    error: {e}")
    if page:
        print("\n| page model | fps | ms/frame | faces/frame | detect ms | crop ms | classify ms | WASM threads |")
        print("|---|---|---|---|---|---|---|---|")
        for b in page:
            t = b["timing_ms"]
            print(
                f"| {b['model']} | {b['fps']} | {b['ms_per_frame']} | {b['faces_per_frame']} | {t['detect']} | "
                f"{t['crop']} | {t['classify']} | {b['wasm_threads']} |"
            )


if __name__ == "__main__":
    main()
