"""Every registered architecture: builds, runs forward and backward, reports its size."""

from __future__ import annotations

import pytest
import torch

from fervid.emotions import FER2013, FERPLUS8
from fervid.models import count_parameters, create_model, describe_models, list_models

ALL = list_models()
# Built-in families; timm_model wraps the optional timm package and is tested only when it is installed.
OWN = [n for n in ALL if n != "timm_model"]
PARAMS = OWN + [
    pytest.param(
        "timm_model",
        marks=pytest.mark.skipif(__import__("importlib").util.find_spec("timm") is None, reason="timm not installed"),
    )
]


def test_registry_has_the_four_families() -> None:
    assert {"fast_cnn", "vgg_fer", "resnet18_fer", "convnext_fer"} <= set(ALL)
    assert all(describe_models()[n] for n in ALL), "every model needs a one-line description"


@pytest.mark.parametrize("name", PARAMS)
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    pre = model.preprocess
    assert pre.labels == FER2013 and pre.input_size == 48
    x = torch.randn(4, pre.in_chans, pre.input_size, pre.input_size)
    model.train()
    y = model(x)
    assert y.shape == (4, len(FER2013))
    assert torch.isfinite(y).all()
    loss = torch.nn.functional.cross_entropy(y, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x[:1])).all()


@pytest.mark.parametrize("name", PARAMS)
def test_parameter_count_and_other_heads(name: str) -> None:
    n = count_parameters(create_model(name))
    assert 1e5 < n < 3e7, f"{name}: {n} parameters"
    if name == "fast_cnn":
        assert n <= 1.5e6, "the real-time model must stay <= 1.5 M parameters"
    m8 = create_model(name, labels=FERPLUS8)
    assert m8(torch.randn(2, 1, 48, 48)).shape == (2, 8)
    assert m8.model_args["num_classes"] == 8


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        create_model("nope")


def test_models_cli_reports_parameter_counts(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from fervid.cli import main

    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["architectures"]) == set(ALL)
    assert out["architectures"]["fast_cnn"]["parameters"] == count_parameters(create_model("fast_cnn"))
    assert all(out["architectures"][n]["parameters"] for n in OWN)
    assert {"default", "fast"} <= set(out["bundled"])
    # the bundled weights beside their architectures, as timm ties pretrained weights to models
    assert out["architectures"]["fast_cnn"]["weights"] == ["fast"]
    assert out["architectures"]["resnet18_fer"]["weights"] == ["default", "ferplus"]
    assert out["bundled"]["resnet18_fer.ferplus"]["name"] == "ferplus"
    assert out["bundled"]["default"]["architecture"] == "resnet18_fer"
    assert {(d["name"], d["runtime"]) for d in out["detectors"]} == {("yunet", "onnxruntime"), ("yunet", "opencv")}
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "fast_cnn" in text and "weights: default, ferplus" in text and "yunet/yunet_s_dynamic.onnx" in text
