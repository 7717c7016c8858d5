"""Shared fixtures. Real data comes from $FERVID_DATA or ../shared/data next to the checkout;
tests that need it skip cleanly when it is absent."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    env = os.environ.get("FERVID_DATA")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data", REPO / "shared" / "data"]:
        if (c / "fer2013" / "fer2013.csv.gz").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def official_counts() -> dict[str, list[int]]:
    """FER2013's per-split, per-class counts (FER2013 label order), as in shared/data/README.md."""
    return {
        "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
        "PublicTest": [467, 56, 496, 895, 653, 415, 607],
        "PrivateTest": [491, 55, 528, 879, 594, 416, 626],
    }


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        pytest.skip("real data not found (set FERVID_DATA or put shared/data beside the checkout)")
    return root


@pytest.fixture(scope="session")
def clip(data_root: Path) -> Path:
    """The media clip: 640x360, 29.97 fps, 275 frames, four shots (cuts at 20, 82, 211)."""
    p = data_root / "media" / "short_hamilton_clip.mp4"
    if not p.is_file():
        pytest.skip("short_hamilton_clip.mp4 not found")
    return p


@pytest.fixture(scope="session")
def fer_csv(data_root: Path) -> Path:
    return data_root / "fer2013" / "fer2013.csv.gz"


@pytest.fixture(scope="session")
def fer_data(fer_csv: Path):
    from fervid.data.datasets import load_fer2013

    return load_fer2013(fer_csv)


def trained_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """``build(folder)`` once per test run, even under pytest-xdist: the workers share the
    parent of their temporary folders, and the first to take the lock builds there while the
    others wait for it (the pattern of pytest-xdist's documentation)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        out = tmp_path_factory.mktemp(name)
        build(out)
        return out
    from filelock import FileLock

    out = tmp_path_factory.getbasetemp().parent / name
    with FileLock(str(out) + ".lock"):
        if not (out / ".complete").is_file():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            build(out)
            (out / ".complete").touch()
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, fer_data) -> Path:
    """A fast_cnn trained for 2 epochs on 600 real images: a real fervid checkpoint
    (above chance, not good) for tests of evaluation, prediction and export."""
    return trained_once(tmp_path_factory, "tiny_run", lambda out: _train_tiny(out, fer_data)) / "best.pt"


def _train_tiny(out: Path, fer_data) -> None:
    from fervid.training.config import TrainConfig
    from fervid.training.loop import train

    cfg = TrainConfig(
        data="",
        model="fast_cnn",
        out=str(out),
        epochs=2,
        max_train_samples=600,
        batch_size=64,
        lr=0.05,
        progress=False,
        device="cpu",
        seed=0,
    )
    train(cfg, data=fer_data.select(fer_data.splits != "PrivateTest"))


# --------------------------------------------------------------------------- synthetic data
# Tests that train, fine-tune or evaluate run on these when the real data is absent (CI on a
# user's fork): 48x48 grey "faces" whose class is a texture a small CNN learns in an epoch or
# two, and that survives the training augmentation (flips, +-10 degree rotations, zoom, erasing).

SYNTHETIC_COUNTS = {
    "Training": [60, 15, 60, 90, 60, 45, 60],
    "PublicTest": [12, 4, 12, 14, 12, 10, 12],
    "PrivateTest": [12, 4, 12, 14, 12, 10, 12],
}  # disgust rare, happy common, as in FER2013


def synthetic_faces(labels, seed: int = 0):
    """uint8 ``N x 48 x 48`` images for class ids ``labels`` (0..6): an oval "face" carrying one
    texture per class (horizontal, vertical, diagonal stripes, checks, a ring, a disc, a bright
    upper half), with a random phase, contrast, brightness and pixel noise per image."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float32)
    cy, cx = 24.0, 24.0
    face = (((yy - cy) / 21) ** 2 + ((xx - cx) / 17) ** 2) <= 1.0
    r = np.hypot(yy - cy, xx - cx)
    out = np.empty((len(labels), 48, 48), np.uint8)
    for i, c in enumerate(labels):
        ph = rng.uniform(0, 2 * np.pi)
        pattern = [
            np.sin(yy * 0.8 + ph),  # 0 horizontal stripes
            np.sin(xx * 0.8 + ph),  # 1 vertical stripes
            np.sin((xx + yy) * 0.6 + ph),  # 2 diagonal stripes
            np.sign(np.sin(xx * 0.5 + ph) * np.sin(yy * 0.5 + ph)),  # 3 checks
            np.cos(np.clip(np.abs(r - rng.uniform(9, 12)), 0, 3) * np.pi / 3),  # 4 a ring
            np.where(r < rng.uniform(6, 9), 1.0, -1.0),  # 5 a disc
            np.where(yy < cy + rng.uniform(-3, 3), 1.0, -1.0),  # 6 bright upper half
        ][int(c)]
        img = 90 + face * (35 + rng.uniform(20, 45) * pattern) + rng.uniform(-20, 20) + rng.normal(0, 12, (48, 48))
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="session")
def synthetic_data():
    """A FERData of 710 synthetic faces in FER2013's three splits and seven classes."""
    import numpy as np

    from fervid.data.datasets import FERData

    labels, splits = [], []
    for split, counts in SYNTHETIC_COUNTS.items():
        for c, n in enumerate(counts):
            labels += [c] * n
            splits += [split] * n
    order = np.random.default_rng(1).permutation(len(labels))
    labels_a, splits_a = np.asarray(labels, np.int64)[order], np.asarray(splits)[order]
    return FERData(
        images=synthetic_faces(labels_a, seed=2),
        labels=labels_a,
        splits=splits_a,
        index=np.arange(len(labels_a), dtype=np.int64),
        source="synthetic",
    )


@pytest.fixture(scope="session")
def synthetic_pack(tmp_path_factory: pytest.TempPathFactory, synthetic_data) -> Path:
    """:func:`synthetic_data` as a fervid ``.npz`` pack: a ``--data`` path for the CLI and torchrun."""
    from fervid.data.datasets import save_pack

    path = tmp_path_factory.mktemp("synthetic") / "synthetic.npz"
    save_pack(synthetic_data, path)
    return path


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory, synthetic_data) -> Path:
    """An image folder ``<root>/{happy,sad,neutral}/*.png`` of 20 synthetic faces each (PNG)."""
    from PIL import Image

    from fervid.emotions import FER2013

    root = tmp_path_factory.mktemp("synthetic_folder") / "three"
    for c in ("happy", "sad", "neutral"):
        (root / c).mkdir(parents=True)
        idx = [i for i in range(len(synthetic_data)) if synthetic_data.labels[i] == FER2013.index(c)][:20]
        for i in idx:
            Image.fromarray(synthetic_data.images[i]).save(root / c / f"{c}_{i}.png")
    return root


@pytest.fixture(scope="session")
def synthetic_checkpoint(tmp_path_factory: pytest.TempPathFactory, synthetic_data) -> Path:
    """A fast_cnn trained for 2 epochs on the synthetic Training split: a real fervid
    checkpoint for tests of fine-tuning, evaluation and export that need no real data."""
    return (
        trained_once(tmp_path_factory, "synthetic_run", lambda out: _train_synthetic(out, synthetic_data)) / "best.pt"
    )


def _train_synthetic(out: Path, synthetic_data) -> None:
    from fervid.training.config import TrainConfig
    from fervid.training.loop import train

    cfg = TrainConfig(
        data="",
        model="fast_cnn",
        out=str(out),
        epochs=2,
        batch_size=32,
        lr=0.05,
        progress=False,
        device="cpu",
        seed=0,
        eval_private=False,
    )
    train(cfg, data=synthetic_data.select(synthetic_data.splits != "PrivateTest"))
