"""DDP training throughput: one epoch of fast_cnn on a FER2013 subset with 1 and 2 processes
(torchrun, gloo on the CPU), global batch 128. Prints images/s and ms per optimiser step from
each run's metrics.jsonl (training time only: the PublicTest pass is not in images_per_s), and
the CPU seconds of the whole command (all processes: data loading, training, evaluation), which
depend far less than wall time on other load on the machine.

    python benchmarks/distributed_train.py [--data ../shared/data/fer2013/fer2013.csv.gz] [--samples 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/fer2013/fer2013.csv.gz")
    )
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=None, help="torch threads per process (default: cores / processes)")
    args = ap.parse_args()
    print(
        f"fast_cnn, {args.samples} FER2013 images, global batch {args.batch_size}, 1 epoch, CPU (gloo), "
        f"{os.cpu_count()} cores; torch threads per process = cores / processes"
    )
    print(
        "| processes x threads | images/s | ms / step (global batch) | epoch s | CPU s, whole command | load average |"
    )
    print("|---|---|---|---|---|---|")
    for n in args.procs:
        with tempfile.TemporaryDirectory() as tmp:
            threads = args.threads or max(1, (os.cpu_count() or 1) // n)
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={n}",
                "-m",
                "fervid",
                "train",
                "--model",
                "fast_cnn",
                "--data",
                args.data,
                "--epochs",
                "1",
                "--max-train-samples",
                str(args.samples),
                "--batch-size",
                str(args.batch_size),
                "--device",
                "cpu",
                "--no-progress",
                "--out",
                tmp,
                "--set",
                "eval_private=false",
            ]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            rec = json.loads((Path(tmp) / "metrics.jsonl").read_text().splitlines()[-1])
            ips = rec["images_per_s"]
            load = os.getloadavg()[0]
            print(
                f"| {n} x {threads} | {ips:.0f} | {1000 * args.batch_size / ips:.1f} | {rec['epoch_seconds']:.1f} | {cpu:.1f} | "
                f"{load:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
