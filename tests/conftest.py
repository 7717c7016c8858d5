"""Shared fixtures. Real data comes from $FERVID_DATA or ../shared/data next to the checkout;
tests that need it skip cleanly when it is absent."""

from __future__ import annotations

import os
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
def fer_csv(data_root: Path) -> Path:
    return data_root / "fer2013" / "fer2013.csv.gz"


@pytest.fixture(scope="session")
def fer_data(fer_csv: Path):
    from fervid.data.datasets import load_fer2013

    return load_fer2013(fer_csv)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, fer_data) -> Path:
    """A fast_cnn trained for 2 epochs on 600 real images: a real fervid checkpoint
    (above chance, not good) for tests of evaluation, prediction and export."""
    from fervid.training.config import TrainConfig
    from fervid.training.loop import train

    out = tmp_path_factory.mktemp("tiny_run")
    cfg = TrainConfig(data="", model="fast_cnn", out=str(out), epochs=2, max_train_samples=600, batch_size=64,
                      lr=0.05, progress=False, device="cpu", seed=0)
    train(cfg, data=fer_data.select(fer_data.splits != "PrivateTest"))
    return out / "best.pt"
