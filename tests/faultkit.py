"""Shared helpers of the fault-injection suite (tests/test_faults_*.py): hermetic inputs
(synthetic images, videos, packs and untrained checkpoints: no real data needed), the CLI run
in-process or as a subprocess, fingerprints of files and folders, and a small full file
system (a real tmpfs where the machine allows mounting one)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def fingerprint(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file under a folder (relative path -> digest)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        str(p.relative_to(path) if p != path else p.name): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


def leftovers(folder: Path) -> list[str]:
    """Temporary files fervid may have left behind (none should survive any failure)."""
    return sorted(
        str(p.relative_to(folder))
        for p in Path(folder).rglob("*")
        if ".tmp" in p.name or p.name.startswith(".") and p.is_file()
    )


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``fervid ARGV`` in-process: ``(status, stdout, stderr)``. argparse errors exit 2. An
    exception escaping ``main`` (a traceback for the user) fails the test by itself."""
    from fervid.cli import main

    try:
        rc = main(argv)
    except SystemExit as e:
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def run_fervid(
    argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240, preexec_fn: Any = None
) -> subprocess.CompletedProcess[str]:
    """``python -m fervid ARGV`` as a subprocess (for tracebacks, signals and rlimits)."""
    e = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fervid", *argv],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def assert_one_line_error(rc: int, err: str, *names: str, status: int = 1) -> None:
    """Exit status, a ``fervid VERB: error:`` line naming each of ``names``, no traceback."""
    assert rc == status, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ": error:" in ln]
    assert lines, err
    for name in names:
        assert any(str(name) in ln for ln in lines), (name, err)


def write_image(path: Path, size: int = 96, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def write_video(path: Path, frames: int = 60, size: tuple[int, int] = (96, 96), fps: float = 25.0) -> Path:
    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    for i in range(frames):
        vw.write(np.roll(base, i, axis=1))
    vw.release()
    assert path.stat().st_size > 0
    return path


def synthetic_data(n_train: int = 240, n_val: int = 60, seed: int = 0) -> Any:
    """A FERData of random faces (Training + PublicTest), for runs that must not need real data."""
    from fervid.data.datasets import FERData

    rng = np.random.default_rng(seed)
    n = n_train + n_val
    return FERData(
        images=rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
        labels=np.arange(n, dtype=np.int64) % 7,
        splits=np.asarray(["Training"] * n_train + ["PublicTest"] * n_val, dtype="U11"),
        index=np.arange(n, dtype=np.int64),
        source="synthetic",
    )


def write_pack(path: Path, **kw: Any) -> Path:
    from fervid.data.datasets import save_pack

    save_pack(synthetic_data(**kw), path)
    return path


def checkpoint_dict(seed: int = 0) -> dict[str, Any]:
    """An untrained fast_cnn as a fervid checkpoint dict (valid in every respect)."""
    import torch

    from fervid.models import create_model
    from fervid.models.checkpoint import make_checkpoint

    torch.manual_seed(seed)
    return make_checkpoint(create_model("fast_cnn"))


def save_pt(obj: Any, path: Path) -> Path:
    import torch

    torch.save(obj, path)
    return path


@contextlib.contextmanager
def small_filesystem(base: Path, size: str = "256k") -> Iterator[Path | None]:
    """A tmpfs of ``size`` mounted under ``base`` (root with mount rights: the machine's real
    ENOSPC), else ``None`` (the caller falls back to a simulated ENOSPC)."""
    import shutil

    mnt = base / "small-fs"
    mnt.mkdir()
    ok = False
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
        ok = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
            ).returncode
            == 0
        )
    try:
        yield mnt if ok else None
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def unprivileged_prefix() -> list[str] | None:
    """The command prefix that runs a child without the power to ignore file permissions (what
    root has): none for a user that is not root (CI runners, users' machines), ``unshare
    --user`` for root (a user namespace: no capability over this system's files), ``None``
    where root cannot drop it (the caller skips, saying why)."""
    import shutil

    if not hasattr(os, "geteuid"):
        return None
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare"):
        r = subprocess.run(["unshare", "--user", "id", "-u"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() != "0":
            return ["unshare", "--user"]
    return None


BATCH_KILLED_AFTER_SOURCES = (  # `python -c` it with batch's argv: SIGKILL right after r.sources.parquet is in place
    "import os, signal, sys\n"
    "real = os.replace\n"
    "def replace(a, b, *args, **kw):\n"
    "    real(a, b, *args, **kw)\n"
    "    if str(b).endswith('r.sources.parquet'):\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "os.replace = replace\n"
    "from fervid.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
"""``fervid batch ... --out r.parquet`` killed by SIGKILL after its outputs are written and
before its working folder is removed (the process kills itself there)."""


def file_size_limit(limit: int) -> Any:
    """``preexec_fn`` capping the size of files the child writes (EFBIG past it: Python ignores
    SIGXFSZ), the portable way to make writes fail without privileges."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply
