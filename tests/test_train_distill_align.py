"""Distillation from stored teacher logits and aligned training views (fervid.training.loop):
the teacher's rows are matched by data row, its softened distribution is what the student
is pulled towards, aligned views are the crop pipeline's warp, and bad files are named errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fervid.errors import UserFileNotFoundError, UserValueError
from fervid.training.config import TrainConfig
from fervid.training.loop import Split, aligned_views, budget_epochs, kd_loss, per_row, teacher_probs, train
from tolerances import U32, gamma


def _split(index: list[int]) -> Split:
    n = len(index)
    return Split(np.zeros((n, 48, 48), np.uint8), np.zeros(n, np.int64), np.zeros(n, np.int64), np.asarray(index))


def test_teacher_rows_follow_the_data_rows_not_the_file_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    index = np.array([7, 3, 11, 5, 0])
    logits = rng.normal(size=(5, 7)).astype(np.float32)
    np.savez(tmp_path / "t.npz", index=index, logits=logits)
    p = teacher_probs(str(tmp_path / "t.npz"), _split([0, 5, 7]), 7, temperature=2.0)
    want = torch.softmax(torch.from_numpy(logits[[4, 3, 0]]) / 2.0, 1).numpy()
    # teacher_probs: softmax in float64 rounded once to float32 (u * p); torch's float32 softmax:
    # the exponentials (<= 2 u each, vectorised exp), a sum of K and a division: gamma(K + 3) * p
    k = logits.shape[1]
    np.testing.assert_allclose(p, want, rtol=gamma(k + 4), atol=0)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=gamma(k + 1))  # K float32 roundings, K - 1 additions


def test_teacher_file_problems_are_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", index=np.array([1, 2]), logits=np.zeros((2, 7), np.float32))
    with pytest.raises(UserValueError, match=r"nothing for 1 of 2 training rows \(first missing row 9\)"):
        teacher_probs(str(tmp_path / "t.npz"), _split([1, 9]), 7, 4.0)
    with pytest.raises(UserValueError, match=r"expected N x 8"):
        teacher_probs(str(tmp_path / "t.npz"), _split([1, 2]), 8, 4.0)
    np.savez(tmp_path / "bad.npz", rows=np.array([1]))
    with pytest.raises(UserValueError, match=r"not an .npz with 'index'"):
        teacher_probs(str(tmp_path / "bad.npz"), _split([1]), 7, 4.0)
    with pytest.raises(UserFileNotFoundError, match="no such file"):
        per_row("align", str(tmp_path / "none.npz"), ("theta",), _split([1]))


def test_kd_loss_is_zero_at_the_teacher_and_grows_away_from_it() -> None:
    z = torch.randn(16, 7)
    t = torch.softmax(z / 4.0, 1)
    # T^2 * mean over rows of sum_k t_k (log t_k - log s_k), t = s in exact arithmetic: each
    # row's log t and log s within gamma(K + 3) * (max|z| / T + log K) of the exact (log-sum-exp),
    # the difference and the product with t adding 2 u t |log t| <= u per class
    k = z.shape[1]
    bound = 4.0**2 * (2 * gamma(k + 3) * (float(z.abs().max()) / 4.0 + math.log(k)) + 2 * k * U32)
    assert abs(float(kd_loss(z, t, 4.0))) <= bound
    assert float(kd_loss(z + torch.randn(16, 7) * 3, t, 4.0)) > 0.1


def test_aligned_views_warp_only_the_picked_rows() -> None:
    x = torch.rand(4, 1, 48, 48)
    ident = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).repeat(4, 1, 1)
    # identity warps reproduce the image (bilinear at pixel centres is exact) up to the float32
    # sampling positions: normalised ((2i + 1) / W - 1) and back ((g + 1) * W - 1) / 2, about 6
    # roundings of magnitude W, so within 6 u W pixels; bilinear moves a value by that fraction of
    # a neighbour's difference (<= 1 for values in [0, 1))
    pos = 6 * U32 * x.shape[-1]
    torch.testing.assert_close(aligned_views(x, ident, torch.ones(4, dtype=torch.bool)), x, atol=pos, rtol=0)
    # a 90-degree rotation of the normalised grid, on rows 1 and 3 only
    rot = torch.tensor([[0.0, -1.0, 0], [1.0, 0, 0]]).repeat(4, 1, 1)
    pick = torch.tensor([False, True, False, True])
    out = aligned_views(x, rot, pick)
    assert torch.equal(out[~pick], x[~pick])  # not warped: the rows themselves
    torch.testing.assert_close(out[pick], torch.rot90(x[pick], 1, (2, 3)), atol=pos, rtol=0)  # the same positions
    assert ((out[pick] - torch.rot90(x[pick], -1, (2, 3))).abs() > pos).any()  # the other way round is not


def test_distilled_run_with_aligned_views_learns_and_records_its_sources(synthetic_data, tmp_path: Path) -> None:
    """A short run with a teacher (the true labels as confident logits) and aligned views
    (random small rotations) trains above chance and dumps both files into its config."""
    d = synthetic_data.select(synthetic_data.splits != "PrivateTest")
    rng = np.random.default_rng(0)
    logits = np.full((len(d), 7), -3.0, np.float32)
    logits[np.arange(len(d)), np.maximum(d.labels, 0)] = 3.0
    np.savez(tmp_path / "teacher.npz", index=d.index, logits=logits)
    ang = rng.uniform(-0.2, 0.2, len(d))
    theta = np.stack(
        [
            np.stack([np.cos(ang), -np.sin(ang), np.zeros_like(ang)], 1),
            np.stack([np.sin(ang), np.cos(ang), 0 * ang], 1),
        ],
        1,
    ).astype(np.float32)
    np.savez(tmp_path / "align.npz", index=d.index, theta=theta, found=rng.random(len(d)) < 0.9)
    cfg = TrainConfig(
        model="fast_cnn",
        out=str(tmp_path / "run"),
        epochs=3,
        batch_size=32,
        lr=0.05,
        device="cpu",
        progress=False,
        eval_private=False,
        teacher=str(tmp_path / "teacher.npz"),
        kd_alpha=0.7,
        kd_temperature=2.0,
        align=str(tmp_path / "align.npz"),
        align_p=0.5,
    )
    cfg.augment.mixup = 0.5  # mixup mixes the teacher's distributions with the labels
    final = train(cfg, data=d)
    assert final["PublicTest"]["accuracy"] > 0.3  # 7 classes: chance is ~0.14
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["teacher"].endswith("teacher.npz") and saved["align"].endswith("align.npz")


@pytest.mark.parametrize(
    "key, value, match",
    [("kd_alpha", 1.5, "kd_alpha must be in"), ("kd_temperature", 0.0, "kd_temperature"), ("align_p", -0.1, "align_p")],
)
def test_distillation_settings_are_checked(key: str, value: float, match: str) -> None:
    with pytest.raises(UserValueError, match=match):
        TrainConfig.from_dict({key: value}).validate()


def test_time_budget_is_sized_after_the_first_epoch_and_again_at_the_mean_pace() -> None:
    # 7 minutes; a slow first epoch (11 s) alone would give 38 epochs ...
    assert budget_epochs(7, elapsed=11, epoch_seconds=11, done=1, cap=200, first=True) == 38
    # ... the second (7.6 s, 18.6 s in all) gives the 54 the budget really holds
    assert budget_epochs(7, elapsed=18.6, epoch_seconds=7.6, done=2, cap=200, first=False) == 54
    # never more than asked, never fewer than done (+1 after the first epoch)
    assert budget_epochs(7, elapsed=18.6, epoch_seconds=7.6, done=2, cap=30, first=False) == 30
    assert budget_epochs(1e-4, elapsed=5, epoch_seconds=5, done=1, cap=5, first=True) == 2
    assert budget_epochs(1e-4, elapsed=9, epoch_seconds=4, done=2, cap=5, first=False) == 2
    # GPU lease 3 (ResNet-18 w32 beside another job, 8 minutes): epoch 2 alone (1.72 s) said 277
    # epochs, 9.0 minutes at the real pace; the mean of epochs 2-8 (1.953 s) says 244
    assert budget_epochs(8, elapsed=6.66, epoch_seconds=1.72, done=2, cap=400, first=False) == 277
    assert budget_epochs(8, elapsed=18.61, epoch_seconds=1.953, done=8, cap=400, first=False) == 244
