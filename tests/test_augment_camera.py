"""Camera-shift augmentations (issue 13, item 5): off by default, each kind doing what its name
says on real faces, in range, reproducible from the generator alone, and the data-parallel
rows/total contract of ``augment`` kept. The device-parametrised tests also run on CUDA (with
a CUDA generator) where one is present."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fervid.errors import UserValueError
from fervid.training.augment import CAMERA_KINDS, AugmentConfig, augment, gaussian_blur, jpeg, motion_blur
from fervid.training.config import TrainConfig
from tolerances import gamma

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
# Everything but the camera shifts off, so that a kind's effect is seen alone.
STILL = dict(hflip=0.0, rotate=0.0, scale=(1.0, 1.0), translate=0.0, brightness=0.0, contrast=0.0, erase=0.0)


@pytest.fixture(scope="module")
def faces(data_root: Path) -> torch.Tensor:
    """64 real FER2013 test faces (8 per class folder, all seven classes), float ``N x 1 x 48 x 48``."""
    from PIL import Image

    files = []
    for d in sorted((data_root / "fer2013-images" / "test").iterdir()):
        files += sorted(d.glob("*.jpg"))[:10]
    files = files[:64]
    arr = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
    return torch.from_numpy(arr).float()[:, None] / 255


def _hf(x: torch.Tensor) -> torch.Tensor:
    """Per-sample high-frequency energy: mean absolute Laplacian."""
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return lap.abs().mean((1, 2, 3))


def _g(dev: str, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=dev).manual_seed(seed)


def test_camera_off_by_default_leaves_augment_as_it_was() -> None:
    assert AugmentConfig().camera == 0.0
    x = torch.rand(64, 1, 48, 48, generator=torch.Generator().manual_seed(123))
    s = torch.linspace(0.5, 1.5, 64)
    g = _g("cpu", 7)
    y = augment(x, AugmentConfig(), g, s)
    # Figures of augment() at commit 3f5969b, before the camera shifts existed (same input, seed 7).
    # Another CPU computes them in another order: torch's cascade sum of n float32 terms is within
    # ceil(log2 n) * u of the sum of their magnitudes, and each term carries a few roundings of its
    # own (the resampling: at most 8 operations), so each figure gets (log2 n + 8) * u * sum|terms|
    # (u = 2**-24). (y * w) has terms of both signs: its bound is ~350 times its value's ulp.
    w = torch.linspace(-1, 1, 48 * 48).view(1, 1, 48, 48)
    for terms, figure in ((y, 73631.59375), (y * w, -105.36434936523438), (y[::7, 0, ::5, ::3], 817.9176635742188)):
        bound = (math.ceil(math.log2(terms.numel())) + 8) * 2.0**-24 * float(terms.abs().double().sum())
        assert abs(float(terms.sum()) - figure) <= bound, (figure, float(terms.sum()), bound)
    # camera=0 draws nothing, whatever the other camera settings say.
    g2 = _g("cpu", 7)
    y2 = augment(x, AugmentConfig(camera=0.0, camera_kinds=("blur",), camera_second=1.0), g2, s)
    assert torch.equal(y, y2) and torch.equal(g.get_state(), g2.get_state())


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("kind", CAMERA_KINDS)
def test_each_kind_does_what_it_says(faces: torch.Tensor, kind: str, dev: str) -> None:
    x = faces.to(dev)
    n = len(x)
    base = augment(x, AugmentConfig(**STILL), _g(dev))  # the same draws up to the camera shifts
    y = augment(x, AugmentConfig(**STILL, camera=0.5, camera_kinds=(kind,)), _g(dev))
    assert y.device == x.device and y.dtype == torch.float32 and y.shape == x.shape
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    changed = (y - base).abs().amax((1, 2, 3)) > 1e-4
    assert 0.25 * n < int(changed.sum()) < 0.75 * n  # about half, as camera=0.5 asks
    assert torch.equal(y[~changed], base[~changed])  # the others untouched
    b, a = base[changed].cpu(), y[changed].cpu()
    if kind in ("blur", "motion"):
        assert (_hf(a) < _hf(b)).all() and _hf(a).mean() < 0.8 * _hf(b).mean()
    elif kind == "noise":
        assert (_hf(a) > _hf(b)).all()
        assert (a.mean() - b.mean()).abs() < 0.02
    elif kind == "lowlight":
        ratio = a.mean((1, 2, 3)) / b.mean((1, 2, 3))
        assert (ratio < 0.75).all() and (ratio > 0.1).all()
    elif kind == "jpeg":
        # 8-bit values, as a decoded JPEG's: q / 255 and * 255 round once each, q <= 255
        assert ((a * 255 - torch.round(a * 255)).abs() <= 255 * gamma(2)).all()
        step = (a[..., :, 1:] - a[..., :, :-1]).abs().mean((0, 1, 2))  # mean jump between columns
        # block artefacts: jumps across the 8x8 block edges beat those inside the blocks
        edges = step[7::8].mean()
        inside = torch.cat([step[i::8] for i in range(7)]).mean()
        assert edges > 1.3 * inside
    elif kind == "sunglasses":
        # dark lenses cover a good part of the eye band (the benchmark's rows 13-24, cols 6-41)
        dark_after = (a[..., 12:28, 6:42] <= 0.21).float().mean((1, 2, 3))
        dark_before = (b[..., 12:28, 6:42] <= 0.21).float().mean((1, 2, 3))
        assert (dark_after > 0.25).all() and (dark_after > dark_before + 0.15).all()
        assert torch.equal(a[..., 34:, :], b[..., 34:, :])  # the mouth stays visible
    elif kind == "mask":
        # chin and mouth under one flat light grey (brighter than most faces there)
        low = a[..., 38:, 16:32]
        assert (low.std((1, 2, 3)) < 0.02).all() and (low.mean((1, 2, 3)) > 0.55).all()
        assert low.mean() > b[..., 38:, 16:32].mean() + 0.15 and torch.equal(a[..., :20, :], b[..., :20, :])
    elif kind == "hand":
        assert torch.equal(a[..., :4, :], b[..., :4, :])  # the lower two thirds only
        area = ((a - b).abs() > 1e-4).float().mean((1, 2, 3))  # skin-grey: it may match the face's grey
        assert area.min() > 0.01 and area.mean() > 0.05  # a sizeable patch (partly outside the frame at times)
    else:  # roll, yaw: the face moves, its brightness does not change much
        assert ((a - b).abs().mean((1, 2, 3)) > 0.02).all()
        assert (a.mean() - b.mean()).abs() < 0.03


def test_filters_match_opencv(faces: torch.Tensor) -> None:
    """The blur, motion blur and JPEG of the training augmentation are those the robustness
    benchmark applies with OpenCV, at the benchmark's settings."""
    import cv2

    u8 = np.round(faces[:, 0].numpy() * 255).astype(np.uint8)
    n = len(u8)
    # Both are float32 sums of positive weights (adding to 1) times grey levels in [0, 255]: each
    # within gamma(roundings) * 255 of the exact filter (Higham 3.1), with the roundings counted:
    # GaussianBlur: 13 taps per pass, two passes, its float32 kernel rounded once from float64.
    # Ours: the input u8 / 255 and the output * 255 (1 each), 13 taps per pass, and each weight
    # exp(-t^2 / 4.5) / sum: the argument (up to 8 in magnitude, relative error u: 8 u absolute),
    # exp (1 ulp: Sleef's u10 and glibc expf), 12 additions and a division (23 u), twice.
    ref = np.stack([cv2.GaussianBlur(im.astype(np.float32), (0, 0), 1.5) for im in u8])
    got = gaussian_blur(faces, torch.full((n,), 1.5), radius=6)[:, 0].numpy() * 255
    assert np.abs(got - ref).max() <= 255 * (gamma(2 * 13 + 2) + gamma(2 + 2 * 13 + 2 * 23))
    # The 1 x 7 box: 1/7 rounded once on both sides, 7 taps (ours: 11 x 11 = 121 taps, the others
    # exactly 0), our input and output scaling.
    k = np.full((1, 7), 1 / 7, np.float32)
    ref = np.stack([cv2.filter2D(im.astype(np.float32), -1, k, borderType=cv2.BORDER_REPLICATE) for im in u8])
    got = motion_blur(faces, torch.full((n,), 7.0), torch.zeros(n), radius=5)[:, 0].numpy() * 255
    assert np.abs(got - ref).max() <= 255 * (gamma(7 + 1) + gamma(121 + 1 + 2))
    for q in (10, 40):
        ref = np.stack(
            [cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, q])[1], 0) for im in u8]
        ).astype(np.float32)
        got = jpeg(faces, torch.full((n,), float(q)))[:, 0].numpy() * 255
        # libjpeg's integer DCT rounds differently in places: within half a grey level on average,
        # against the ~7-10 levels the compression itself changes
        assert np.abs(got - ref).mean() < 0.5 < 5 < np.abs(ref - u8).mean()


@pytest.mark.parametrize("dev", DEVICES)
def test_same_generator_same_output(dev: str) -> None:
    x = torch.rand(32, 1, 48, 48, generator=torch.Generator().manual_seed(0)).to(dev)
    cfg = AugmentConfig(camera=0.8, camera_second=0.5)
    y1, y2 = augment(x, cfg, _g(dev, 3)), augment(x, cfg, _g(dev, 3))
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, augment(x, cfg, _g(dev, 4)))
    assert 0.0 <= float(y1.min()) and float(y1.max()) <= 1.0


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("split", ["interleaved", "blocks"])
def test_shares_of_a_batch_equal_the_whole_batch(dev: str, split: str) -> None:
    """The data-parallel contract: each rank augments its rows of the global batch with the
    same generator; together they give what one process augmenting the batch gives, and every
    rank's generator ends in the same state."""
    n = 24
    x = torch.rand(n, 1, 48, 48, generator=torch.Generator().manual_seed(1)).to(dev)
    s = torch.linspace(0.5, 1.5, n, device=dev)
    cfg = AugmentConfig(camera=0.9, camera_second=0.5)
    g = _g(dev, 5)
    whole = augment(x, cfg, g, s)
    shares = (
        [torch.arange(r, n, 2) for r in (0, 1)]
        if split == "interleaved"
        else [torch.arange(0, 10), torch.arange(10, n)]
    )
    out = torch.empty_like(whole)
    for rows in shares:
        gr = _g(dev, 5)
        out[rows.to(dev)] = augment(x[rows.to(dev)], cfg, gr, s[rows.to(dev)], rows=rows, total=n)
        assert torch.equal(gr.get_state(), g.get_state())
    # One grouped convolution over fewer samples may add in another order: equal to float32
    # rounding, except where that rounding moves a JPEG coefficient across a quantiser step.
    # The rounding: each side's blur (2 x 13 taps, weights within 23 u, as in
    # test_filters_match_opencv) and motion blur (11 x 11 taps) within gamma(roundings) of
    # the exact filter of values of magnitude <= 2 (grey levels in [0, 1] plus lowlight noise of
    # 10/255 per standard deviation: 25 of them).
    close = (out - whole).abs() <= 2 * 2 * (gamma(2 * 13 + 2 * 23) + gamma(121 + 1))
    assert close.float().mean() > 0.995


def test_config_round_trip_and_checks(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict({"augment": {"camera": 0.5}})
    assert cfg.augment.camera == 0.5 and cfg.augment.camera_kinds == CAMERA_KINDS
    assert cfg.augment.rotate == AugmentConfig().rotate  # the rest keeps its defaults
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg.to_dict()))
    again = TrainConfig.from_dict(json.loads(p.read_text()))  # camera_kinds comes back as a list
    assert again == cfg
    picked = TrainConfig.from_dict({"augment": {"camera": 1, "camera_kinds": ["blur", "jpeg"], "camera_second": 0}})
    assert picked.augment.camera_kinds == ("blur", "jpeg") and picked.augment.camera == 1.0
    with pytest.raises(UserValueError, match="unknown kind.*'blurr'"):
        TrainConfig.from_dict({"augment": {"camera": 0.5, "camera_kinds": ["blurr"]}})
    with pytest.raises(UserValueError, match=r"augment\.camera.*probability"):
        TrainConfig.from_dict({"augment": {"camera": 1.5}})
    with pytest.raises(UserValueError, match="camera_kinds is empty"):
        AugmentConfig(camera=0.5, camera_kinds=())
    changed = TrainConfig()
    changed.augment.camera = 1.5  # after construction: caught before a run starts
    with pytest.raises(UserValueError, match=r"augment\.camera.*probability"):
        changed.validate()


@pytest.mark.slow  # 20-40 s on 2 loaded cores: make test-slow (CI) runs it
def test_a_short_training_run_with_camera_shifts(fer_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train() on real FER2013 faces with camera shifts on: the shifts reach the batches the
    model sees, the run finishes and records the settings."""
    import fervid.training.loop as loop
    from fervid.training.loop import train

    seen: list[float] = []
    real = loop.augment

    def spy(x: torch.Tensor, cfg: AugmentConfig, *a, **k) -> torch.Tensor:
        seen.append(cfg.camera)
        return real(x, cfg, *a, **k)

    monkeypatch.setattr(loop, "augment", spy)
    cfg = TrainConfig.from_dict(
        {
            "model": "fast_cnn",
            "out": str(tmp_path / "run"),
            "epochs": 1,
            "max_train_samples": 256,
            "batch_size": 64,
            "warmup_epochs": 0,
            "progress": False,
            "device": "cpu",
            "eval_private": False,
            "augment": {"camera": 0.5, "camera_kinds": ["blur", "jpeg", "sunglasses", "yaw"]},
        }
    )
    train(cfg, data=fer_data.select(fer_data.splits != "PrivateTest"))
    assert seen == [0.5] * 4  # 256 samples, batches of 64
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["augment"]
    assert saved["camera"] == 0.5 and saved["camera_kinds"] == ["blur", "jpeg", "sunglasses", "yaw"]
    metrics = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and np.isfinite(metrics[0]["train_loss"])
