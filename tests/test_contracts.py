"""Contracts of the public API that earlier versions broke (issue 11's defects), each kept by a
test that failed before its fix. None needs the real data."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from fervid.cli import main

# --------------------------------------------------------------------------- CLI error policy


def test_user_error_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    import fervid.cli.models as verb
    from fervid.errors import UserValueError

    def user_error(args):
        raise UserValueError("--thing 3: must be even")

    monkeypatch.setattr(verb, "run", user_error)
    assert main(["models"]) == 1
    assert capsys.readouterr().err.strip() == "fervid models: error: --thing 3: must be even"

    def bug(args):
        return {}["preprocess"]  # a KeyError from a bug is not a user error

    monkeypatch.setattr(verb, "run", bug)
    with pytest.raises(KeyError):
        main(["models"])


def test_missing_file_is_a_user_error(capsys, tmp_path, synthetic_pack):
    assert main(["evaluate", str(tmp_path / "nope.pt"), "--data", str(synthetic_pack)]) == 1
    err = capsys.readouterr().err
    assert "nope.pt" in err and "Traceback" not in err and err.count("\n") == 1


# --------------------------------------------------------------------------- plots leave pyplot alone


def test_reports_and_plots_do_not_change_the_matplotlib_backend(tmp_path):
    """Notebooks keep their inline backend: fervid draws on bare Figures, never through pyplot."""
    code = f"""
import matplotlib, sys, numpy as np
matplotlib.use("svg")
from fervid.evaluation.report import plot_confusion, fig_to_base64
from fervid.training.study import plot_study
fig_to_base64(plot_confusion(np.eye(7, dtype=int) * 3, tuple("abcdefg")))
row = dict(model="m", strategy="none", accuracy=.5, accuracy_std=.1, macro_f1=.4, macro_f1_std=.1,
           recall={{c: (.5, .1) for c in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")}})
plot_study([row], r"{tmp_path / "study.png"}")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "study.png").stat().st_size > 1000


# --------------------------------------------------------------------------- shared recognizer


def test_adabn_batch_never_swaps_the_shared_classifier():
    """predict_batch(adabn=True) adapts a private copy: other threads using the same recognizer
    keep the unadapted model, before, during and after the call."""
    from fervid import EmotionRecognizer

    rec = EmotionRecognizer("fast", detector="skip", backend="torch", device="cpu")
    base = rec.classifier
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (48, 48), dtype=np.uint8) for _ in range(24)]
    ref = [f.probabilities for r in rec.predict_batch(crops[:4]) for f in r]
    seen = []
    real = rec._classify

    def spy(*a, **k):
        seen.append(rec._classifier is base)  # what a concurrent predict() would use right now
        return real(*a, **k)

    rec._classify = spy  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def plain():
        try:
            for _ in range(3):
                got = [f.probabilities for r in rec.predict_batch(crops[:4]) for f in r]
                assert got == ref
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    t = threading.Thread(target=plain)
    t.start()
    adapted = rec.predict_batch(crops, adabn=True)
    t.join()
    assert not errors and all(seen) and rec.classifier is base
    assert [f.probabilities for r in adapted[:4] for f in r] != ref  # the adaptation did change the outputs


# --------------------------------------------------------------------------- one loader, any folder


@pytest.fixture(scope="module")
def fast_onnx(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from fervid.export.onnx import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "fast.onnx"
    export_onnx("fast", path, check=False)
    return path


def test_evaluate_accepts_onnx_and_folders_without_split_names(fast_onnx, synthetic_folder, capsys):
    """`fervid evaluate` takes every model `fervid predict --model` takes (.onnx included), and a
    folder of class subfolders without FER2013 split names is scored whole by default."""
    from fervid.evaluation.evaluate import EvalConfig, evaluate

    res = {
        m: evaluate(EvalConfig(models=[m], data=str(synthetic_folder), report=False), log=lambda *a: None)
        for m in ("fast", str(fast_onnx))
    }
    for r in res.values():
        assert r.metrics["split"] == "all" and r.metrics["images"] == 60
    # the ONNX export scores the same faces like the checkpoint it came from
    assert abs(res["fast"].metrics["accuracy"] - res[str(fast_onnx)].metrics["accuracy"]) <= 1 / 60
    assert main(["evaluate", str(fast_onnx), "--data", str(synthetic_folder), "--tta", "flip"]) == 0
    assert "all" in capsys.readouterr().out


def test_onnx_model_runs_the_one_torch_path(fast_onnx):
    from fervid.data.preprocess import to_tensor
    from fervid.inference.logits import tta_logits, tta_views
    from fervid.models import model_preprocess
    from fervid.models.checkpoint import load_model
    from tolerances import logit_error_bound, sum_bound

    torch = pytest.importorskip("torch")

    faces = np.random.default_rng(1).integers(0, 255, (8, 48, 48), dtype=np.uint8)
    pt, ox = load_model("fast"), load_model(fast_onnx)
    assert ox.preprocess == pt.preprocess and ox.temperature == pytest.approx(pt.temperature)
    x = to_tensor(faces, model_preprocess(pt))
    none = 2 * logit_error_bound(pt, x)
    for tta in ("none", "flip", "crops"):
        zo, zt = tta_logits(ox, faces, tta).numpy(), tta_logits(pt, faces, tta).numpy()
        # Both average the logits of the same views (tta_views, computed once in torch), each an
        # independent float32 evaluation of the network: a view's two logits within twice its
        # logit_error_bound, their mean within the mean of those, plus the mean's own sum of
        # V terms in either order (sum_bound of the views' magnitudes, over V).
        views = tta_views(x, tta, model_preprocess(pt).crop_pct)
        others = [v for v in views if v is not x]  # one call for all of them (7 backward passes)
        each = 2 * logit_error_bound(pt, torch.cat(others)).reshape(len(others), len(x), -1) if others else []
        bound = np.mean([none] * (len(views) - len(others)) + list(each), 0)
        with torch.no_grad():
            magnitude = sum(pt(v).abs() for v in views).numpy()
        bound += sum_bound(len(views), 1.0) * magnitude / len(views)
        assert (np.abs(zo - zt) <= bound).all(), (tta, np.abs(zo - zt).max(), bound.min())
        if tta != "none":  # a TTA mode mixed up (views not averaged) is outside the bound
            assert (np.abs(zt - tta_logits(pt, faces, "none").numpy()) > bound).any()


# --------------------------------------------------------------------------- int8 never below the bar silently


def test_int8_export_below_the_agreement_bar_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    from fervid.errors import FervidError
    from fervid.export.onnx import export_onnx

    faces = np.random.default_rng(0).integers(0, 255, (160, 48, 48), dtype=np.uint8)
    out = tmp_path / "q.onnx"
    with pytest.raises(FervidError, match="nothing written"):
        # no model can keep > 100% of the top labels: every tail fails the bar
        export_onnx("fast", out, int8=True, calibration_data=faces, n_calibration=64, min_agreement=1.01, check=False)
    assert not out.exists() and not list(tmp_path.iterdir())
    # an explicit tail writes it anyway, and says what it kept
    rep = export_onnx("fast", out, int8=True, calibration_data=faces, n_calibration=64, fp32_tail=0.5, check=False)
    assert out.is_file() and rep.fp32_tail == 0.5


# --------------------------------------------------------------------------- declared layers


@pytest.mark.parametrize("name", ["fast_cnn", "vgg_fer", "resnet18_fer", "convnext_fer"])
def test_every_family_declares_its_first_conv_and_classifier(name):
    import torch.nn as nn

    from fervid.models import create_model, model_cfg

    m = create_model(name, labels=("a", "b", "c"))
    cfg = model_cfg(m)
    mods = dict(m.named_modules())
    assert isinstance(mods[cfg.first_conv], nn.Conv2d) and mods[cfg.first_conv].in_channels == 1
    assert isinstance(mods[cfg.classifier], nn.Linear) and mods[cfg.classifier].out_features == 3
    assert any(n.startswith(cfg.head_prefix) for n, _ in m.named_parameters())
