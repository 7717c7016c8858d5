"""Each imbalance strategy changes the loss or the sampled class mix the way it claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fervid.training.augment import AugmentConfig, augment
from fervid.training.imbalance import (
    STRATEGIES,
    class_weights,
    dynamic_weights,
    focal_loss,
    plan,
    sample_weights,
    soft_cross_entropy,
)
from tolerances import gamma

# FER2013 Training counts (angry, disgust, fear, happy, sad, surprise, neutral).
COUNTS = np.array([3995, 436, 4097, 7215, 4830, 3171, 4965])
LABELS = np.repeat(np.arange(7), COUNTS)


def _drawn_mix(draw: np.ndarray | None, n: int = 20000, seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    if draw is None:
        idx = torch.randperm(len(LABELS), generator=g)[:n]
    else:
        idx = torch.multinomial(torch.from_numpy(draw), n, replacement=True, generator=g)
    return np.bincount(LABELS[idx.numpy()], minlength=7) / n


def test_every_strategy_has_a_plan() -> None:
    assert set(STRATEGIES) == {"none", "inverse", "effective", "focal", "oversample", "dynamic", "minority-aug"}
    for s in STRATEGIES:
        p = plan(s, LABELS, 7)
        assert p.weights.shape == (7,) and p.strength.shape == LABELS.shape
    with pytest.raises(ValueError, match="imbalance must be one of"):
        plan("smote", LABELS, 7)


def test_none_keeps_the_natural_mix() -> None:
    p = plan("none", LABELS, 7)
    assert p.draw is None and np.all(p.weights == 1) and np.all(p.strength == 1)
    mix = _drawn_mix(p.draw)
    assert mix[1] == pytest.approx(COUNTS[1] / COUNTS.sum(), abs=0.004)  # disgust stays ~1.5%


@pytest.mark.parametrize("kind", ["inverse", "effective"])
def test_static_weights_favour_rare_classes_and_change_the_loss(kind: str) -> None:
    w = plan(kind, LABELS, 7).weights
    # float64 weights over their mean, cast to float32 (1 rounding), 6 float32 additions and a
    # division in the check: within gamma(9) (float64's own roundings far below one of them)
    assert w.mean() == pytest.approx(1.0, rel=gamma(9), abs=0)
    assert np.argmax(w) == 1 and np.argmin(w) == 3  # disgust most, happy least
    # Rarer class -> larger weight, for every pair.
    order = np.argsort(COUNTS)
    assert np.all(np.diff(w[order]) <= 0)  # exact: 1/n, the division by the mean and the cast are monotone
    logits = torch.randn(64, 7, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([1] * 8 + [3] * 56)
    plain = F.cross_entropy(logits, y)
    weighted = F.cross_entropy(logits, y, weight=torch.from_numpy(w))
    assert not torch.isclose(plain, weighted)
    # A mistake on a disgust face now costs more than the same mistake on a happy face.
    one = torch.zeros(1, 7)
    loss_d = F.cross_entropy(one, torch.tensor([1]), weight=torch.from_numpy(w), reduction="sum")
    loss_h = F.cross_entropy(one, torch.tensor([3]), weight=torch.from_numpy(w), reduction="sum")
    assert loss_d > 5 * loss_h


def test_effective_number_sits_between_uniform_and_inverse() -> None:
    inv = class_weights(COUNTS, "inverse")
    eff = class_weights(COUNTS, "effective", beta=0.999)
    assert eff[1] / eff[3] < inv[1] / inv[3]
    assert eff[1] / eff[3] > 1.5
    # beta -> 1 recovers inverse frequency (Cui et al. 2019).
    np.testing.assert_allclose(class_weights(COUNTS, "effective", beta=1 - 1e-9), inv, rtol=1e-3)


def test_focal_loss_down_weights_easy_examples() -> None:
    logits = torch.tensor([[6.0, 0, 0, 0, 0, 0, 0], [0.3, 0, 0, 0, 0, 0, 0]])
    y = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, y, reduction="none")
    fl = torch.stack([focal_loss(logits[i : i + 1], y[i : i + 1], gamma=2.0) for i in range(2)])
    ratio = fl / ce
    assert ratio[0] < 0.01 and ratio[1] > 0.3  # the confident one almost vanishes
    # two float32 routes to -log softmax: each term log-sum-exp minus a logit, within gamma(K + 4)
    # of |lse| + |z| (the exponentials, a sum of K, a log, a subtraction, the mean), each way
    k = logits.shape[1]
    lse = torch.logsumexp(logits, 1).abs()
    mag = float((lse + logits.gather(1, y[:, None])[:, 0].abs()).mean())
    assert abs(float(focal_loss(logits, y, gamma=0.0)) - float(ce.mean())) <= 2 * gamma(k + 4) * mag
    # Soft targets work too, and equal the soft cross-entropy at gamma 0.
    soft = torch.full((2, 7), 1 / 7)
    mag = float((soft * (lse[:, None] + logits.abs())).sum(1).mean())  # and a weighted sum of K
    assert (
        abs(float(focal_loss(logits, soft, gamma=0.0)) - float(soft_cross_entropy(logits, soft)))
        <= 2 * gamma(2 * k + 4) * mag
    )


def test_oversample_balances_the_drawn_class_mix() -> None:
    p = plan("oversample", LABELS, 7)
    assert p.draw is not None
    mix = _drawn_mix(p.draw)
    np.testing.assert_allclose(mix, 1 / 7, atol=0.015)
    half = _drawn_mix(sample_weights(LABELS, COUNTS, 0.5))
    natural = COUNTS / COUNTS.sum()
    assert natural[1] < half[1] < mix[1]  # power 0.5 goes halfway


def test_minority_aug_oversamples_halfway_and_augments_minorities_harder() -> None:
    p = plan("minority-aug", LABELS, 7)
    mix = _drawn_mix(p.draw)
    assert COUNTS[1] / COUNTS.sum() * 2 < mix[1] < 1 / 7
    boosted = {int(c) for c in np.unique(LABELS[p.strength > 1])}
    assert 1 in boosted and 3 not in boosted
    # Stronger strength = larger geometric change of the same (smooth) image.
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    blob = torch.exp(-((xx - 20) ** 2 + (yy - 26) ** 2) / 120.0)
    x = blob.expand(256, 1, 48, 48).clone()
    cfg = AugmentConfig(hflip=0.0, rotate=15, scale=(0.8, 1.2), translate=0.1, brightness=0.0, contrast=0.0, erase=0.0)
    d1 = (augment(x, cfg, torch.Generator().manual_seed(0), torch.ones(256)) - x).abs().mean()
    d2 = (augment(x, cfg, torch.Generator().manual_seed(0), torch.full((256,), 1.6)) - x).abs().mean()
    assert d2 > d1 * 1.1


def test_dynamic_weights_follow_recall() -> None:
    recall = np.array([0.6, 0.1, 0.4, 0.9, 0.5, 0.8, 0.7])
    w = dynamic_weights(recall, None)
    assert np.argmax(w) == 1 and np.argmin(w) == 3
    # float64 weights over their mean, cast to float32 (1 rounding), 6 float32 additions and a
    # division in the check: within gamma(9) (float64's own roundings far below one of them)
    assert w.mean() == pytest.approx(1.0, rel=gamma(9), abs=0)
    # Momentum: half-way between the previous weights and the new estimate.
    w2 = dynamic_weights(recall, np.ones(7, np.float32))
    assert 1.0 < w2[1] < w[1]
    assert np.all(plan("dynamic", LABELS, 7).weights == 1)  # starts uniform


def test_dynamic_weights_move_during_training(synthetic_data, tmp_path) -> None:
    """A real 2-epoch run: the logged class weights start uniform and then follow PublicTest recall."""
    import json

    from fervid.training.config import TrainConfig
    from fervid.training.loop import train

    cfg = TrainConfig(
        model="fast_cnn",
        out=str(tmp_path),
        epochs=2,
        max_train_samples=256,
        batch_size=64,
        imbalance="dynamic",
        progress=False,
        device="cpu",
        eval_private=False,
    )
    train(cfg, data=synthetic_data.select(synthetic_data.splits != "PrivateTest"))
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert recs[0]["class_weights"] == [1.0] * 7
    w = np.array(recs[1]["class_weights"])
    recall = np.array(recs[0]["val_recall"])
    assert not np.allclose(w, 1.0)
    # exact: the logged recall is the run's float64 recall (JSON keeps it), and so is the formula
    np.testing.assert_array_equal(w, dynamic_weights(recall, np.ones(7, np.float32)))
