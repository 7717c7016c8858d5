"""Evaluation: metrics consistency, recomputation from saved predictions, TTA, ensembles,
temperature scaling, image folders with out-of-vocabulary classes, the CLI and the
FER+/AdaBN hooks. Real data and the tiny real checkpoint from conftest; a few hundred
images per evaluation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tolerances import U32, U64, gamma, logit_error_bound

N_EVAL = 300
REQUIRED = (
    "accuracy",
    "macro_f1",
    "weighted_f1",
    "per_class",
    "confusion_matrix",
    "top2_accuracy",
    "nll",
    "ece",
    "split",
    "images",
    "tta",
    "ensemble",
    "models",
)


@pytest.fixture(scope="module")
def small_data(fer_data):
    """PublicTest + PrivateTest only, 400 images each (stratified), as one FERData."""
    from fervid.data.datasets import stratified_subset

    parts = []
    for s in ("PublicTest", "PrivateTest"):
        idx = np.flatnonzero(fer_data.splits == s)
        parts.append(idx[stratified_subset(fer_data.labels[idx], 400, 0)])
    return fer_data.select(np.sort(np.concatenate(parts)))


@pytest.fixture(scope="module")
def second_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """A different model: the tiny checkpoint with its weights perturbed."""
    ck = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    g = torch.Generator().manual_seed(1)
    ck["state_dict"] = {
        k: v + 0.3 * v.std() * torch.randn(v.shape, generator=g) if v.is_floating_point() and v.ndim > 1 else v
        for k, v in ck["state_dict"].items()
    }
    out = tmp_path_factory.mktemp("second") / "perturbed.pt"
    torch.save(ck, out)
    return out


def _eval(models, data, tmp_path=None, **kw):
    from fervid.evaluation.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(
        models=[str(m) for m in models], data="", device="cpu", out=str(tmp_path) if tmp_path else None, **kw
    )
    return evaluate(cfg, data=data, log=lambda s: None)


def test_metrics_json_consistent_and_recomputable(tiny_checkpoint, small_data, tmp_path):
    from sklearn.metrics import accuracy_score, f1_score

    res = _eval([tiny_checkpoint], small_data, tmp_path, split="PrivateTest", max_images=N_EVAL)
    m = json.loads((tmp_path / "metrics.json").read_text())
    for k in REQUIRED:
        assert k in m, k
    n = m["images"]  # a stratified subset of about N_EVAL images
    assert m["split"] == "PrivateTest" and abs(n - N_EVAL) <= 7 and m["ece_bins"] == 15 and m["max_images"] == N_EVAL
    assert len(m["models"][0]["sha256"]) == 64
    cm = np.asarray(m["confusion_matrix"]["counts"])
    assert m["confusion_matrix"]["labels"] == list(res.labels)
    assert cm.sum() == n
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert sum(v["support"] for v in m["per_class"].values()) == n
    assert [v["support"] for v in m["per_class"].values()] == cm.sum(1)[cm.sum(1) > 0].tolist()
    for c, v in m["per_class"].items():  # recall per class = diagonal / row sum
        i = res.labels.index(c)
        assert v["recall"] == pytest.approx(cm[i, i] / cm[i].sum())
    assert m["accuracy"] <= m["top2_accuracy"] <= 1.0
    assert 0.0 <= m["ece"] <= 1.0 and m["nll"] > 0

    # Recompute from the saved per-image probabilities.
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n
    probs = np.array([[float(r[f"p_{c}"]) for c in res.labels] for r in rows])
    y = np.array([int(r["true"]) for r in rows])
    # predictions.csv writes probabilities with 6 decimals: each within 0.5e-6 of its value,
    # so a row of K sums to 1 within K * 0.5e-6 (plus float64 rounding, far below)
    half = 0.5e-6
    assert np.allclose(probs.sum(1), 1.0, rtol=0, atol=len(res.labels) * half + gamma(3 * len(res.labels), U64))
    pred = probs.argmax(1)
    assert accuracy_score(y, pred) == pytest.approx(m["accuracy"])
    assert f1_score(y, pred, average="macro") == pytest.approx(m["macro_f1"])
    nll = -np.mean(np.log(probs[np.arange(len(y)), y]))
    # -log of a probability within 0.5e-6 moves by at most 0.5e-6 / (p - 0.5e-6) (log's slope)
    p_true = probs[np.arange(len(y)), y]
    assert abs(nll - m["nll"]) <= np.mean(half / (p_true - half)) + gamma(len(y), U64) * nll
    top2 = np.mean([y[i] in np.argsort(-probs[i])[:2] for i in range(len(y))])
    assert top2 == pytest.approx(m["top2_accuracy"])
    # Source rows are the PrivateTest rows of the data.
    src = np.array([int(r["source_index"]) for r in rows])
    assert set(src) <= set(small_data.index[small_data.splits == "PrivateTest"].tolist())
    z = np.load(tmp_path / "predictions.npz")
    assert np.allclose(z["probs"], probs, rtol=U32, atol=half)  # the CSV's 6 decimals

    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert "most confident mistakes" in page.lower() and "reliability" in page.lower()
    assert "<script" not in page and "http" not in page.split("<body>")[1]  # self-contained


def test_ece_and_reliability_bins():
    from fervid.evaluation.calibration import expected_calibration_error, reliability_bins

    y = np.array([0, 1, 2, 0])
    sure_right = np.eye(3)[y]
    assert expected_calibration_error(sure_right, y) == pytest.approx(0.0)
    sure_wrong = np.eye(3)[(y + 1) % 3]
    assert expected_calibration_error(sure_wrong, y) == pytest.approx(1.0)
    # Confidence 0.6 with 50% accuracy: ECE 0.1.
    p = np.array([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0]])
    assert expected_calibration_error(p, np.array([0, 1])) == pytest.approx(0.1)
    b = reliability_bins(p, np.array([0, 1]))
    assert b["count"].sum() == 2 and len(b["count"]) == 15


def test_tta_modes_differ_and_match_definitions(tiny_checkpoint, small_data):
    from fervid import load_model
    from fervid.data.preprocess import to_tensor
    from fervid.inference.logits import tta_logits, tta_views

    model = load_model(tiny_checkpoint)
    x = small_data.images[:64]
    none = tta_logits(model, x, "none")
    flip = tta_logits(model, x, "flip", batch_size=25)  # batching must not matter
    crops = tta_logits(model, x, "crops")
    assert none.shape == flip.shape == crops.shape == (64, 7)
    with torch.no_grad():
        direct = model.eval()(to_tensor(x, model.preprocess)).float()
    xt = to_tensor(x, model.preprocess)
    bound = torch.as_tensor(2 * logit_error_bound(model, xt), dtype=torch.float32)
    assert ((none - direct).abs() <= bound).all()  # float32 evaluations, possibly other layouts
    mirrored = tta_logits(model, x[:, :, ::-1].copy(), "none")
    # flip in batches of 25 and 64: each view's logits within twice their bound, the mean of two
    # within the mean of those, plus its own two roundings of the views' magnitude
    flip_bound = torch.as_tensor(2 * logit_error_bound(model, torch.flip(xt, dims=[3])), dtype=torch.float32)
    tol = (bound + flip_bound) / 2 + gamma(2) * (none.abs() + mirrored.abs())
    assert ((flip - (none + mirrored) / 2).abs() <= tol).all()
    assert (none - flip).abs().max() > 1e-3 and (none - crops).abs().max() > 1e-3
    # Ten views; with crop_pct=1 the five crops are the image itself.
    t = to_tensor(x[:4], model.preprocess)
    views = tta_views(t, "crops", 0.9)
    assert len(views) == 10 and all(v.shape == t.shape for v in views)
    assert torch.equal(views[5], torch.flip(views[0], dims=[3]))
    full = tta_views(t, "crops", 1.0)
    assert all(torch.equal(v, t) for v in full[:5])
    with pytest.raises(ValueError, match="TTA mode"):
        tta_logits(model, x, "rotate")


@pytest.mark.slow  # minutes on 2 cores: make test-slow (CI) runs it
def test_tta_changes_reported_numbers(tiny_checkpoint, small_data):
    a = _eval([tiny_checkpoint], small_data, split="PrivateTest", max_images=N_EVAL, tta="none").metrics
    b = _eval([tiny_checkpoint], small_data, split="PrivateTest", max_images=N_EVAL, tta="crops").metrics  # same images
    assert b["tta"] == "crops"
    assert a["nll"] != pytest.approx(b["nll"], abs=1e-6)


@pytest.mark.slow  # minutes on 2 cores: make test-slow (CI) runs it
def test_ensembles_mean_and_weighted(tiny_checkpoint, second_checkpoint, small_data, tmp_path):
    from fervid.runtime import softmax

    kw = dict(split="PrivateTest", max_images=N_EVAL)
    single = _eval([tiny_checkpoint], small_data, **kw)
    mean = _eval([tiny_checkpoint, second_checkpoint], small_data, **kw)
    m = mean.metrics
    assert m["ensemble"] == "mean" and m["ensemble_weights"] == [0.5, 0.5] and len(m["members"]) == 2
    assert m["members"][0]["nll"] == pytest.approx(single.metrics["nll"])
    expected = (softmax(mean.member_logits[0]) + softmax(mean.member_logits[1])) / 2
    assert np.allclose(mean.probs, expected)
    assert m["nll"] != pytest.approx(single.metrics["nll"], abs=1e-6)
    assert m["models"][0]["sha256"] != m["models"][1]["sha256"]

    w = _eval([tiny_checkpoint, second_checkpoint], small_data, tmp_path, ensemble="weighted", **kw).metrics
    ws = np.asarray(w["ensemble_weights"])
    assert ws.sum() == pytest.approx(1.0) and (ws >= 0).all() and w["fit"]["split"] == "PublicTest"
    assert not np.allclose(ws, 0.5)
    assert set(w["fit"]["weights"]) == {x["name"] for x in w["models"]}
    # Weights are never fitted on the reported split.
    with pytest.raises(ValueError, match="PublicTest"):
        _eval([tiny_checkpoint, second_checkpoint], small_data, ensemble="weighted", split="PublicTest")
    with pytest.raises(ValueError, match="PublicTest"):
        _eval([tiny_checkpoint], small_data, calibrate=True, split="all")


def test_fit_ensemble_weights_prefers_the_better_member():
    from fervid.evaluation.calibration import fit_ensemble_weights

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    good = np.full((500, 3), 0.1)
    good[np.arange(500), y] = 0.8
    noise = rng.dirichlet(np.ones(3), 500)
    w = fit_ensemble_weights([noise, good], y)
    assert w[1] > 0.9 and w.sum() == pytest.approx(1.0)


def test_temperature_fit_lowers_nll_and_is_stored(tiny_checkpoint, small_data, tmp_path):
    from fervid import load_model
    from fervid.evaluation.calibration import calibrate, fit_temperature, nll
    from fervid.inference.logits import tta_logits

    pub = small_data.split("PublicTest")
    model = load_model(tiny_checkpoint)
    logits = tta_logits(model, pub.images).numpy()
    # Deliberately over-confident logits: the fit must find T ~ 4 and lower the NLL.
    t = fit_temperature(4 * logits, pub.labels)
    assert nll(4 * logits, pub.labels, t) < nll(4 * logits, pub.labels, 1.0) - 0.05
    assert 2.0 < t < 8.0
    t1 = fit_temperature(logits, pub.labels)
    assert nll(logits, pub.labels, t1) <= nll(logits, pub.labels, 1.0) + 1e-9

    info = calibrate(tiny_checkpoint, small_data, tmp_path / "cal.pt", device="cpu")
    # the same fit on the same logits (one model, the same batches and threads): the same number
    assert info["temperature"] == t1
    assert info["nll_after"] <= info["nll_before"] + 1e-9
    again = load_model(tmp_path / "cal.pt")
    assert again.temperature == info["temperature"]  # stored as a Python float: no rounding
    assert again.checkpoint_meta["calibration"]["fit"] == "PublicTest"
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    pytest.importorskip("safetensors")
    calibrate(tiny_checkpoint, small_data, tmp_path / "cal.safetensors", device="cpu")
    assert load_model(tmp_path / "cal.safetensors").temperature == info["temperature"]  # the same fit again


def test_calibrate_option_reports_before_after(tiny_checkpoint, small_data, tmp_path):
    from fervid import load_model
    from fervid.evaluation.evaluate import EvalConfig, write_calibrated

    res = _eval([tiny_checkpoint], small_data, tmp_path, calibrate=True, split="PrivateTest", max_images=N_EVAL)
    m = res.metrics
    assert m["calibrated"] and set(m["calibration"]) >= {"before", "after"}
    fit = m["fit"]["temperature"][0]
    assert fit["fit_nll_after"] <= fit["fit_nll_before"] + 1e-9
    assert m["calibration"]["after"]["ece"] == m["ece"]
    assert m["temperatures"][0] == fit["fitted"] != 1.0
    cfg = EvalConfig(models=[str(tiny_checkpoint)], data="")
    [p] = write_calibrated(cfg, res, tmp_path / "calibrated")
    assert load_model(p).temperature == pytest.approx(fit["fitted"])


def _write_folder(root: Path, fer_data, classes: dict[str, int], n: int = 6) -> None:
    from PIL import Image

    for folder, label in classes.items():
        d = root / folder
        d.mkdir(parents=True)
        idx = np.flatnonzero(fer_data.labels == label)[:n] if label >= 0 else np.arange(n)
        for k, i in enumerate(idx):
            Image.fromarray(fer_data.images[i]).save(d / f"{k}.png")


def test_image_folder_with_classes_outside_the_vocabulary(tiny_checkpoint, fer_data, tmp_path):
    _write_folder(tmp_path / "faces", fer_data, {"anger": 0, "happiness": 3, "sadness": 4, "contempt": -1})
    from fervid import load_dataset

    folder = load_dataset(tmp_path / "faces")
    m = _eval([tiny_checkpoint], folder, tmp_path / "out", split="all").metrics
    assert m["images"] == 18
    assert m["excluded"] == {"images": 6, "by_class": {"contempt": 6}}
    assert list(m["per_class"]) == ["angry", "happy", "sad"] == m["classes_present"]
    cm = np.asarray(m["confusion_matrix"]["counts"])
    assert cm.shape == (7, 7) and cm.sum() == 18 and m["accuracy"] == pytest.approx(np.trace(cm) / 18)
    f1s = [v["f1"] for v in m["per_class"].values()]
    assert m["macro_f1"] == pytest.approx(np.mean(f1s))  # averaged over the classes present only
    with pytest.raises(ValueError, match="present"):
        _eval([tiny_checkpoint], folder, split="PrivateTest")


def test_cli_evaluate_and_errors(tiny_checkpoint, fer_csv, tmp_path, capsys):
    from fervid.cli import main

    rc = main(
        [
            "evaluate",
            str(tiny_checkpoint),
            "--data",
            str(fer_csv),
            "--split",
            "PrivateTest",
            "--tta",
            "flip",
            "--max-images",
            "200",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "tta=flip" in out
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["tta"] == "flip" and abs(m["images"] - 200) <= 7 and (tmp_path / "report.html").is_file()
    assert main(["evaluate", str(tmp_path / "missing.pt"), "--data", str(fer_csv), "--max-images", "10"]) == 1
    assert "error" in capsys.readouterr().err


def test_ferplus_and_adabn_hooks_are_called(tiny_checkpoint, small_data, monkeypatch, data_root):
    """The hooks call fervid.evaluation.ambiguity.ferplus_metrics and fervid.inference.adapt.adabn
    (stand-ins here, patched where evaluate looks them up: the wiring is tested, not the metrics)."""
    import copy

    calls: dict[str, object] = {}

    def fake_ferplus_metrics(probs, votes, labels):
        calls["ferplus"] = (probs.shape, votes.shape, tuple(labels))
        return {"majority_accuracy": 0.5}

    def fake_adabn(model, images, batch_size=256, progress=True):
        calls.setdefault("adabn", []).append(len(images))  # type: ignore[union-attr]
        return copy.deepcopy(model)

    import fervid.evaluation.evaluate as ev

    monkeypatch.setattr(ev, "ferplus_metrics", fake_ferplus_metrics)
    monkeypatch.setattr(ev, "adabn", fake_adabn)
    m = _eval(
        [tiny_checkpoint],
        small_data,
        split="PrivateTest",
        max_images=100,
        adabn=True,
        ferplus=str(data_root / "fer2013" / "fer2013new.csv"),
    ).metrics
    assert m["ferplus"] == {"majority_accuracy": 0.5} and m["adabn"]
    n = m["images"]
    assert calls["ferplus"][0] == (n, 7) and calls["ferplus"][1][0] == n and len(calls["ferplus"][2]) == 7
    assert calls["adabn"] == [n]
