"""One EmotionRecognizer shared by threads (issue 25): for each detector, T threads x C calls
on the real media photos, against one thread; prints the calls whose result differs from the
single-thread answer, the errors, and the wall time of both.

    python benchmarks/shared_recognizer.py [--threads 8] [--calls 6] [--detectors yunet haar haar-profile skip]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PHOTOS = ["obama.jpg", "two_people.jpg", "obama_and_biden.jpg", "obama-480p.jpg", "lin-manuel-miranda.png"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "media"))
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--calls", type=int, default=6)
    ap.add_argument("--detectors", nargs="+", default=["yunet", "haar", "haar-profile", "skip"])
    args = ap.parse_args()

    from fervid import EmotionRecognizer
    from fervid.data.io import load_image

    images = [load_image(Path(args.data) / p) for p in PHOTOS]
    n = args.threads * args.calls
    order = [[(k + j) % len(images) for j in range(args.calls)] for k in range(args.threads)]
    print("| detector | calls | equal to one thread | errors | one thread, s | shared by threads, s |")
    print("|---|---|---|---|---|---|")
    for det in args.detectors:
        rec = EmotionRecognizer("fast", detector=det, backend="torch").load()
        reference = [rec.predict(im).to_dict() for im in images]  # also warms the detector up
        t0 = time.perf_counter()
        for calls in order:
            for i in calls:
                rec.predict(images[i])
        single = time.perf_counter() - t0

        def run(calls: list[int], rec: EmotionRecognizer = rec) -> list[tuple[int, object]]:
            out: list[tuple[int, object]] = []
            for i in calls:
                try:
                    out.append((i, rec.predict(images[i]).to_dict()))
                except Exception as e:  # noqa: BLE001 -- counted, the point of the benchmark
                    out.append((i, e))
            return out

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            results = [r for batch in pool.map(run, order) for r in batch]
        shared = time.perf_counter() - t0
        errors = sum(isinstance(d, Exception) for _, d in results)
        equal = sum(d == reference[i] for i, d in results)
        print(f"| {det} | {n} | {equal} | {errors} | {single:.1f} | {shared:.1f} |")


if __name__ == "__main__":
    main()
