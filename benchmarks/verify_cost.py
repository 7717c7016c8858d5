"""What reading back a written output costs (issue 25): ``verify_video`` on annotated-video-like
files of several lengths (mp4v, 640x360) and ``verify_image`` on an annotated photo, against the
time to write them. Run from the repository root:

    PYTHONPATH=src python benchmarks/verify_cost.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fervid.data.imagefile import verify_image
from fervid.inference.draw import verify_video


def best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as d:
        for n in (300, 3000, 9000):  # 10 s, 100 s, 5 min at 30 fps
            path = Path(d) / f"v{n}.mp4"
            t0 = time.perf_counter()
            vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (640, 360))
            for i in range(n):
                vw.write(np.roll(base, i, axis=1))
            vw.release()
            write_s = time.perf_counter() - t0
            v = best(lambda p=path, k=n: verify_video(p, k))
            print(
                f"video {n} frames 640x360 mp4v: write {write_s:.2f} s, verify {1000 * v:.1f} ms ({100 * v / write_s:.2f}% of the write)"
            )
        photo = Path(d) / "p.png"
        img = Image.fromarray(rng.integers(0, 256, (1137, 910, 3), dtype=np.uint8))
        w = best(lambda: img.save(photo))
        v = best(lambda: verify_image(photo, (910, 1137)))
        print(f"photo 910x1137 PNG: write {1000 * w:.1f} ms, verify {1000 * v:.1f} ms")
        jpg = Path(d) / "p.jpg"
        w = best(lambda: img.save(jpg))
        v = best(lambda: verify_image(jpg, (910, 1137)))
        print(f"photo 910x1137 JPEG: write {1000 * w:.1f} ms, verify {1000 * v:.1f} ms")


if __name__ == "__main__":
    main()
