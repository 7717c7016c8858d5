"""`fervid batch` throughput: the same corpus (the media photos and the Hamilton clip, every
``--video-every``-th frame) through the local engine and through Ray Data with 1 and 2 workers
on a local Ray instance. Prints faces/s and frames/s of the run itself (``run_batch``'s clock:
task set-up, model loading in the actors, inference and writing; not ``ray.init``), and checks
that every engine wrote the same rows.

    python benchmarks/batch_throughput.py [--media ../shared/data/media] [--video-every 2] [--copies 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    import pyarrow.parquet as pq
    import ray

    from fervid.batch import BatchOptions, run_batch

    ap = argparse.ArgumentParser()
    ap.add_argument("--media", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/media"))
    ap.add_argument("--video-every", type=int, default=2)
    ap.add_argument("--copies", type=int, default=3, help="copies of the corpus (more tasks than workers)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--driver-only", action="store_true", help="only the driver's cost per row (JSON in, Parquet out)")
    args = ap.parse_args()
    if args.driver_only:
        driver_cost(Path(args.media), args.model)
        return
    tmp = Path(tempfile.mkdtemp())
    media = Path(args.media)
    for i in range(args.copies):
        d = tmp / "corpus" / f"copy{i}"
        d.mkdir(parents=True)
        for f in media.iterdir():
            if f.suffix.lower() in (".jpg", ".png", ".mp4"):
                shutil.copy(f, d / f.name)
    opts = BatchOptions(model=args.model, video_every=args.video_every)
    print(
        f"corpus: {args.copies} x (7 photos + the 274-frame clip, every {args.video_every} frame); "
        f"model {args.model}; {os.cpu_count()} cores"
    )
    print("| engine | workers | sources | frames | faces | seconds | frames/s | faces/s |")
    print("|---|---|---|---|---|---|---|---|")
    tables = {}
    runs = [("local", None), ("ray", 1), ("ray", 2)]
    for engine, workers in runs:
        if engine == "ray" and not ray.is_initialized():
            t0 = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            print(f"(ray.init: {time.perf_counter() - t0:.1f} s, not counted)")
        out = tmp / f"{engine}{workers or ''}.parquet"
        s = run_batch(tmp / "corpus", out, options=opts, engine=engine, workers=workers, chunk_size=4, progress=False)
        tables[(engine, workers)] = pq.read_table(out).drop_columns(["source"]).to_pylist()
        print(
            f"| {engine} | {s.workers} | {s.processed} | {s.frames} | {s.faces} | {s.seconds:.1f} | "
            f"{s.frames_per_s:.1f} | {s.faces_per_s:.1f} |",
            flush=True,
        )
    ray.shutdown()
    same = all(len(t) == len(tables[("local", None)]) for t in tables.values())
    print(f"same number of rows from every engine: {same}")
    stage_costs(media, opts)


def driver_cost(media: Path, model: str) -> None:
    """What the one driver process spends per face row: decoding a worker's JSON and writing
    parts and the merged output (the rows of the media photos, repeated)."""
    import json

    from fervid.batch import BatchOptions, OutputPaths, PartWriter, Source, merge, process_sources

    opts = BatchOptions(model=model)
    photos = [Source(str(f), "image") for f in sorted(media.iterdir()) if f.suffix.lower() in (".jpg", ".png")]
    rows, status = process_sources(opts.recognizer(), photos, opts)
    payload = json.dumps(rows * 200), json.dumps(status * 200)
    tmp = Path(tempfile.mkdtemp())
    paths = OutputPaths.of(tmp / "r.parquet")
    paths.parts.mkdir()
    t0 = time.perf_counter()
    n = 0
    for _ in range(10):
        r, st = json.loads(payload[0]), json.loads(payload[1])
        for x in st:
            x["source"] = f"{x['source']}#{n}"  # distinct sources
            n += 1
        w = PartWriter(paths.parts, flush_every=10**9)
        w.add(r, st)
        w.flush()
    t1 = time.perf_counter()
    faces, _ = merge(paths, opts.settings())
    t2 = time.perf_counter()
    print(
        f"driver: {faces} face rows decoded and committed in {t1 - t0:.2f} s ({faces / (t1 - t0):.0f} rows/s), "
        f"merged in {t2 - t1:.2f} s ({faces / (t2 - t1):.0f} rows/s)"
    )


def stage_costs(media: Path, opts) -> None:
    """Per-item cost of each stage in one process (the inputs of the scaling model)."""
    import numpy as np

    from fervid.data.io import load_image

    rec = opts.recognizer()
    photos = sorted(f for f in media.iterdir() if f.suffix.lower() in (".jpg", ".png"))
    read, decode, total = [], [], []
    for f in photos * 2:
        t0 = time.perf_counter()
        data = f.read_bytes()
        t1 = time.perf_counter()
        load_image(data)
        t2 = time.perf_counter()
        rec.predict(f)
        t3 = time.perf_counter()
        read.append(t1 - t0)
        decode.append(t2 - t1)
        total.append(t3 - t2)
    mb = np.mean([f.stat().st_size for f in photos]) / 1e6
    print(
        f"photos ({len(photos)}, {mb:.2f} MB each on average): read {1e3 * np.median(read):.1f} ms, "
        f"decode {1e3 * np.median(decode):.1f} ms, predict (decode + detect + crop + classify) "
        f"{1e3 * np.median(total):.1f} ms per photo (medians)"
    )
    stages: dict[str, list[float]] = {}
    with rec.stream(media / "short_hamilton_clip.mp4", every=1) as frames:
        for fr in frames:
            for k, v in fr.timings.items():
                stages.setdefault(k, []).append(v)
    print(
        "video (every frame): "
        + ", ".join(f"{k} {1e3 * np.mean(v):.1f} ms" for k, v in stages.items())
        + " per frame (means)"
    )


if __name__ == "__main__":
    main()
