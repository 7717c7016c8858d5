"""Transfer learning (fervid.finetune, ``fervid finetune``) and the FER+ training targets."""

from __future__ import annotations

import json
import shutil
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fervid.data.ferplus import TARGETS
from fervid.emotions import FER2013, FERPLUS8
from fervid.training.config import TrainConfig
from fervid.training.loop import compute_loss

# --------------------------------------------------------------------------- FER+ losses


def test_ferplus_losses_follow_barsoum():
    """Majority: CE on one label; crossentropy: CE against the vote distribution;
    multilabel: BCE per emotion, or the paper's -log max over the accepted emotions."""
    torch.manual_seed(0)
    logits = torch.randn(4, 8)
    dist = torch.tensor([[0, 0, 0, 0.6, 0.4, 0, 0, 0]] * 4)
    maj = dist.argmax(1)
    cfg = TrainConfig(targets="ferplus-majority", ferplus="x")
    torch.testing.assert_close(compute_loss(cfg, logits, maj), F.cross_entropy(logits, maj))
    cfg = TrainConfig(targets="ferplus-crossentropy", ferplus="x")
    soft = compute_loss(cfg, logits, dist)
    torch.testing.assert_close(soft, -(dist * F.log_softmax(logits, 1)).sum(1).mean())
    assert not torch.isclose(soft, F.cross_entropy(logits, maj))
    mask = (dist > 0).float()
    cfg = TrainConfig(targets="ferplus-multilabel", ferplus="x")
    torch.testing.assert_close(compute_loss(cfg, logits, mask), F.binary_cross_entropy_with_logits(logits, mask))
    cfg = TrainConfig(targets="ferplus-multilabel", ferplus="x", multilabel_loss="max")
    p = F.softmax(logits, 1)
    torch.testing.assert_close(compute_loss(cfg, logits, mask), -torch.log(torch.maximum(p[:, 3], p[:, 4])).mean())
    with pytest.raises(ValueError, match="multilabel_loss"):
        TrainConfig(multilabel_loss="sum").validate()


@pytest.fixture(scope="module")
def small_fer(fer_data):
    """400 Training + 150 PublicTest rows of the real CSV (FER+ rows stay aligned by index)."""
    tr = np.flatnonzero(fer_data.splits == "Training")[:400]
    pu = np.flatnonzero(fer_data.splits == "PublicTest")[:150]
    return fer_data.select(np.concatenate([tr, pu]))


def test_four_ferplus_modes_train(small_fer, data_root, tmp_path):
    from fervid import load_model

    votes = str(data_root / "fer2013" / "fer2013new.csv")
    losses = {}
    for mode in [t for t in TARGETS if t.startswith("ferplus")] + ["max"]:
        target = "ferplus-multilabel" if mode == "max" else mode
        cfg = TrainConfig(
            model="fast_cnn",
            out=str(tmp_path / mode),
            epochs=1,
            batch_size=32,
            max_train_samples=64,
            targets=target,
            ferplus=votes,
            progress=False,
            device="cpu",
            seed=0,
            multilabel_loss="max" if mode == "max" else "bce",
            model_args={"widths": [8, 16, 16, 32]},
        )
        final = json.loads(
            json.dumps(__import__("fervid.training.loop", fromlist=["train"]).train(cfg, data=small_fer))
        )
        assert "PublicTest" in final and "PrivateTest" not in final
        rec = json.loads((tmp_path / mode / "metrics.jsonl").read_text().splitlines()[-1])
        losses[mode] = rec["train_loss"]
        m = load_model(tmp_path / mode / "best.pt")
        assert m.preprocess.labels == FERPLUS8
    assert len({round(v, 6) for v in losses.values()}) == len(losses)  # five different objectives
    assert losses["ferplus-multilabel"] < 1.0 < losses["ferplus-majority"]  # BCE per emotion vs CE over 8


# --------------------------------------------------------------------------- heads and groups


def test_init_model_maps_head_rows(synthetic_checkpoint):
    from fervid import load_model
    from fervid.training.optim import classifier_name
    from fervid.training.warmstart import init_model

    base = load_model(synthetic_checkpoint)
    cfg = TrainConfig(init_from=str(synthetic_checkpoint), model="vgg_fer")
    m = init_model(cfg, ("happiness", "Sad", "contempt"))
    assert cfg.model == base.model_name == "fast_cnn"
    assert m.preprocess.labels == ("happiness", "Sad", "contempt") and m.preprocess.mean == base.preprocess.mean
    w, bw = m.state_dict()[classifier_name(m) + ".weight"], base.state_dict()[classifier_name(base) + ".weight"]
    torch.testing.assert_close(w[0], bw[FER2013.index("happy")])
    torch.testing.assert_close(w[1], bw[FER2013.index("sad")])
    torch.testing.assert_close(m.state_dict()["features.0.0.weight"], base.state_dict()["features.0.0.weight"])
    fresh = init_model(TrainConfig(init_from=str(synthetic_checkpoint), head="fresh"), ("happy", "sad"))
    assert not torch.allclose(fresh.state_dict()[classifier_name(fresh) + ".weight"][0], bw[3])


def test_param_groups_and_freeze(synthetic_checkpoint):
    from fervid.training.optim import apply_freeze, backbone_stages, param_groups
    from fervid.training.warmstart import init_model

    m = init_model(TrainConfig(init_from=str(synthetic_checkpoint)), FER2013)
    plain = param_groups(m, TrainConfig())
    assert len(plain) == 2 and "lr_scale" not in plain[0]
    groups = param_groups(m, TrainConfig(backbone_lr_mult=0.1, layer_lr_decay=0.5))
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters())  # every parameter exactly once
    stages = backbone_stages(m)
    assert len(stages) == 7  # fast_cnn: 7 conv blocks with parameters (pools have none)
    scales = sorted({g["lr_scale"] for g in groups})
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(0.1 * 0.5**6)
    m.train()
    apply_freeze(m, frozen=True)
    assert all(not p.requires_grad for n, p in m.named_parameters() if not n.startswith("head."))
    assert all(p.requires_grad for n, p in m.named_parameters() if n.startswith("head."))
    assert not m.features[0][1].training and m.head.training
    apply_freeze(m, frozen=False)
    assert all(p.requires_grad for p in m.parameters())


def test_labels_and_relabel(synthetic_data, tmp_path):
    from fervid.data.datasets import folder_labels, normalize_labels, relabel

    assert normalize_labels("Anger, joy,smile") == ("angry", "happy", "smile")
    with pytest.raises(ValueError):
        normalize_labels("happy")
    with pytest.raises(ValueError):
        normalize_labels(["happy", "happiness"])
    r = relabel(synthetic_data.split("PublicTest"), ("sad", "happy"))
    assert r.label_names == ("sad", "happy")
    orig = synthetic_data.split("PublicTest").labels
    np.testing.assert_array_equal(r.labels, np.where(orig == 4, 0, np.where(orig == 3, 1, -1)))
    for c in ("Happiness", "smile", "sad"):
        (tmp_path / "train" / c).mkdir(parents=True)
    assert folder_labels(tmp_path) == ("happy", "sad", "smile")


# --------------------------------------------------------------------------- the CLI, end to end


@pytest.fixture(params=["synthetic", "real"])
def three_classes(request, tmp_path, synthetic_folder):
    """Three class folders of 20 faces: synthetic PNGs (always), real FER2013 JPEGs (with the data)."""
    if request.param == "synthetic":
        return synthetic_folder
    src = request.getfixturevalue("data_root") / "fer2013-images" / "test"
    root = tmp_path / "three"
    for c in ("happy", "sad", "neutral"):
        (root / c).mkdir(parents=True)
        for f in sorted((src / c).iterdir())[:20]:
            shutil.copy(f, root / c / f.name)
    return root


def test_cli_finetune_three_classes(tiny_checkpoint, three_classes, tmp_path, capsys):
    from fervid import load_model
    from fervid.cli import main
    from fervid.training.optim import classifier_name

    out = tmp_path / "ft"
    rc = main(
        [
            "finetune",
            str(tiny_checkpoint),
            "--data",
            str(three_classes),
            "--epochs",
            "1",
            "--freeze-epochs",
            "0",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 0
    model = load_model(out / "best.pt")
    base = load_model(tiny_checkpoint)
    assert model.preprocess.labels == ("happy", "sad", "neutral")
    assert model.temperature != 1.0  # fitted on the held-out share
    cfg = model.checkpoint_meta["train_config"]
    assert cfg["init_from"] == str(tiny_checkpoint) and cfg["freeze"] == "backbone"
    # A backbone frozen for the whole run keeps the base's weights and BatchNorm statistics.
    sd, bsd = model.state_dict(), base.state_dict()
    for k in bsd:
        if not k.startswith("head."):
            torch.testing.assert_close(sd[k].float(), bsd[k].float())
    assert not torch.equal(sd[classifier_name(model) + ".weight"], bsd[classifier_name(base) + ".weight"][[3, 4, 6]])
    capsys.readouterr()
    assert main(["evaluate", str(out / "best.pt"), "--data", str(three_classes), "--split", "all", "--no-report"]) == 0
    assert "60 images" in capsys.readouterr().out
    assert (
        main(
            [
                "predict",
                str(three_classes / "sad"),
                "--model",
                str(out / "best.pt"),
                "--detector",
                "skip",
                "--backend",
                "torch",
                "--json",
                "--no-progress",
            ]
        )
        == 0
    )
    face = json.loads(capsys.readouterr().out.splitlines()[0])["faces"][0]
    assert set(face["probabilities"]) == {"happy", "sad", "neutral"} and "ambiguous" in face


def test_cli_finetune_errors(tiny_checkpoint, three_classes, capsys):
    from fervid.cli import main

    assert main(["finetune", "no-such-model", "--data", str(three_classes), "--epochs", "1"]) == 1
    assert "no bundled model" in capsys.readouterr().err
    assert main(["finetune", str(tiny_checkpoint), "--data", str(three_classes), "--timm-weights", "w.pth"]) == 1
    assert "timm:<arch>" in capsys.readouterr().err


# --------------------------------------------------------------------------- timm (optional)


def test_timm_missing_is_a_clear_error(monkeypatch):
    from fervid.models import create_model

    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(ImportError, match="pip install timm"):
        create_model("timm_model", arch="resnet18")


def test_timm_path_with_local_weights(monkeypatch, three_classes, tmp_path):
    """The timm code path with a stand-in timm module (real timm needs torchvision, which
    fervid does not install): the local weights file is what gets loaded, never a download."""
    import torch.nn as nn

    from fervid import load_model
    from fervid.training.finetune import finetune

    class Net(nn.Module):
        def __init__(self, num_classes: int, in_chans: int):
            super().__init__()
            self.conv = nn.Conv2d(in_chans, 8, 3, 2)
            self.bn = nn.BatchNorm2d(8)
            self.pool = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(8, num_classes)
            self.pretrained_cfg = {"first_conv": "conv", "classifier": "fc"}  # as every timm model declares

        def forward(self, x):
            return self.fc(self.pool(self.bn(self.conv(x))))

    calls = []

    def create_model(arch, num_classes, in_chans, drop_rate=0.0, pretrained=False, pretrained_cfg_overlay=None):
        calls.append((arch, pretrained, pretrained_cfg_overlay))
        net = Net(num_classes, in_chans)
        if pretrained:
            sd = torch.load(pretrained_cfg_overlay["file"], weights_only=True)
            sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}  # as timm drops the ImageNet classifier
            net.load_state_dict(sd, strict=False)
        return net

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    weights = tmp_path / "imagenet.pth"
    ref = Net(1000, 1)
    torch.save(ref.state_dict(), weights)
    out = tmp_path / "timm-ft"
    finetune(
        "timm:tinynet",
        three_classes,
        epochs=1,
        freeze_epochs=None,
        out=str(out),
        device="cpu",
        progress=False,
        model_args={"pretrained_file": str(weights), "input_size": 64},
    )
    assert calls[0] == ("tinynet", True, {"file": str(weights)})
    m = load_model(out / "best.pt")
    assert (
        m.model_name == "timm_model"
        and m.preprocess.input_size == 64
        and m.preprocess.labels == ("happy", "sad", "neutral")
    )
    assert "pretrained_file" not in m.model_args
    torch.testing.assert_close(m.state_dict()["conv.weight"], ref.state_dict()["conv.weight"])  # frozen backbone


def test_ferplus_seven_class_head(small_fer, data_root, tmp_path):
    """ferplus_classes=7: contempt votes dropped, a FER2013-vocabulary head."""
    from fervid import load_model
    from fervid.training.loop import train

    cfg = TrainConfig(
        model="fast_cnn",
        out=str(tmp_path),
        epochs=1,
        batch_size=32,
        max_train_samples=64,
        targets="ferplus-crossentropy",
        ferplus=str(data_root / "fer2013" / "fer2013new.csv"),
        ferplus_classes=7,
        progress=False,
        device="cpu",
        model_args={"widths": [8, 16, 16, 32]},
    )
    train(cfg, data=small_fer)
    assert load_model(tmp_path / "best.pt").preprocess.labels == FER2013
