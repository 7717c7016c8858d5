"""Fault injection, models, caches and data (issue 12): malformed checkpoints are named errors
(structure, shapes, label count, finite weights, temperature > 0), results never hold NaN, the
ONNX cache is keyed by content and verified when read (tampered bundled weights, foreign or
corrupt entries), and bad packs, arrays, manifests and .npy files name the file. Hermetic:
untrained checkpoints and synthetic data; the bundled ``fast`` model for the cache."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from faultkit import (
    assert_one_line_error,
    checkpoint_dict,
    cli,
    fingerprint,
    leftovers,
    save_pt,
    synthetic_data,
    write_image,
    write_pack,
)
from fervid.errors import CheckpointError, FervidError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERVID_CACHE", str(tmp_path / "cache"))


def _load(path: Path) -> Any:
    from fervid.models.checkpoint import load_model

    return load_model(path)


# ----------------------------------------------------------------------- checkpoints


def _mutated(kind: str) -> Any:
    ck = checkpoint_dict()
    sd = ck["state_dict"]
    head = [k for k, v in sd.items() if v.ndim == 2][-1]  # the classifier's weight
    first = next(k for k, v in sd.items() if v.ndim == 4)
    if kind == "wrong_shape":
        sd[first] = torch.zeros(3, 3)
    elif kind == "missing_weight":
        del sd[first]
    elif kind == "unexpected_weight":
        sd["extra.weight"] = torch.zeros(2)
    elif kind == "label_count":
        ck["labels"] = ck["labels"] + ["contempt"]
        ck["preprocess"]["labels"] = ck["labels"]
    elif kind == "nan_weight":
        sd[head] = sd[head].clone()
        sd[head][0, 0] = float("nan")
    elif kind == "inf_weight":
        sd[first] = sd[first].clone().fill_(float("inf"))
    elif kind == "temperature_zero":
        ck["temperature"] = 0.0
    elif kind == "temperature_negative":
        ck["temperature"] = -1.5
    elif kind == "temperature_nan":
        ck["temperature"] = float("nan")
    elif kind == "no_preprocess":
        del ck["preprocess"]
    elif kind == "no_state_dict":
        del ck["state_dict"]
    elif kind == "state_dict_is_a_list":
        ck["state_dict"] = [1, 2]
    elif kind == "unknown_architecture":
        ck["model"] = "no_such_net"
    elif kind == "labels_disagree":
        ck["preprocess"]["labels"] = list(reversed(ck["labels"]))
    elif kind == "no_format_tag":
        del ck["format"]
    elif kind == "a_tensor":
        return torch.zeros(3)
    elif kind == "a_list":
        return [1, 2, 3]
    return ck


CASES = {
    "wrong_shape": "has shape",
    "missing_weight": "missing 1 weights",
    "unexpected_weight": "1 unexpected",
    "label_count": "8 labels, but the classifier weight",
    "nan_weight": "NaN or infinite",
    "inf_weight": "NaN or infinite",
    "temperature_zero": "temperature must be",
    "temperature_negative": "temperature",
    "temperature_nan": "temperature",
    "no_preprocess": "'preprocess'",
    "no_state_dict": "'state_dict'",
    "state_dict_is_a_list": "'state_dict' is a list",
    "unknown_architecture": "no_such_net",
    "labels_disagree": "disagree",
    "no_format_tag": "not a fervid checkpoint",
    "a_tensor": "holds a Tensor",
    "a_list": "holds a list",
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_malformed_pt_checkpoints_are_named_errors(tmp_path: Path, kind: str) -> None:
    path = save_pt(_mutated(kind), tmp_path / f"{kind}.pt")
    with pytest.raises(CheckpointError) as e:
        _load(path)
    assert str(path) in str(e.value) and CASES[kind] in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "kind",
    [
        "empty",
        "truncated",
        "random",
        "huge_header",
        "no_metadata",
        "bad_metadata_json",
        "metadata_not_object",
        "nan_in_safetensors",
    ],
)
def test_malformed_safetensors_are_named_errors(tmp_path: Path, kind: str) -> None:
    from safetensors.torch import save_file

    from fervid.models.checkpoint import save_safetensors_checkpoint

    path = tmp_path / "m.safetensors"
    good = (
        save_safetensors_checkpoint(checkpoint_dict(), tmp_path / "good.safetensors")
        and (tmp_path / "good.safetensors").read_bytes()
    )
    sd = {"w": torch.zeros(2)}
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "huge_header":
        path.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    elif kind == "no_metadata":
        save_file(sd, str(path))
    elif kind == "bad_metadata_json":
        save_file(sd, str(path), metadata={"fervid": "{not json"})
    elif kind == "metadata_not_object":
        save_file(sd, str(path), metadata={"fervid": "[1, 2]"})
    else:
        ck = checkpoint_dict()
        k = next(iter(ck["state_dict"]))
        ck["state_dict"][k] = torch.full_like(ck["state_dict"][k], float("nan"))
        save_safetensors_checkpoint(ck, path)
    with pytest.raises(CheckpointError) as e:
        _load(path)
    assert str(path) in str(e.value)


def test_valid_checkpoints_still_load(tmp_path: Path) -> None:
    from fervid.models.checkpoint import save_safetensors_checkpoint

    ck = checkpoint_dict()
    m1 = _load(save_pt(ck, tmp_path / "ok.pt"))
    save_safetensors_checkpoint(ck, tmp_path / "ok.safetensors")
    m2 = _load(tmp_path / "ok.safetensors")
    assert m1.temperature == m2.temperature == 1.0
    for name in ("default", "fast"):
        assert _load(name).checkpoint_meta["source"] == f"bundled:{name}"


def test_bad_checkpoint_on_the_cli_is_one_line_without_export_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    path = save_pt(_mutated("label_count"), tmp_path / "m.pt")
    img = write_image(tmp_path / "a.png")
    for backend in ("auto", "torch", "onnx"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc, _, err = cli(["predict", str(img), "--model", str(path), "--backend", backend], capsys)
        assert_one_line_error(rc, err, str(path), "classifier")
        assert not [w for w in caught if "export" in str(w.message)], [str(w.message) for w in caught]


def test_damaged_last_pt_on_resume_is_a_named_error(tmp_path: Path) -> None:
    from fervid.training.config import TrainConfig
    from fervid.training.loop import train

    run = tmp_path / "run"
    cfg = TrainConfig(out=str(run), epochs=1, batch_size=32, device="cpu", progress=False, eval_private=False)
    train(cfg, data=synthetic_data())
    last = run / "last.pt"
    good = last.read_bytes()
    for damage in (good[: len(good) // 3], b"", None):
        if damage is None:
            save_pt(checkpoint_dict(), last)  # a model checkpoint, not a run's last.pt
        else:
            last.write_bytes(damage)
        before = fingerprint(run)
        cfg2 = TrainConfig(out=str(run), epochs=2, batch_size=32, device="cpu", progress=False, eval_private=False)
        with pytest.raises(CheckpointError, match=r"last.pt"):
            train(cfg2, data=synthetic_data(), resume=True)
        assert fingerprint(run) == before


def test_nan_outputs_never_reach_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finite weights can still meet a broken backend: the classifier refuses non-finite logits."""
    from fervid.inference.backends import TorchClassifier
    from fervid.models.checkpoint import load_model

    clf = TorchClassifier(load_model("fast"))
    import fervid.inference.logits as logits  # the torch path, imported by TorchClassifier when it runs

    monkeypatch.setattr(logits, "tta_logits", lambda *a, **k: torch.full((1, 7), float("nan")))
    with pytest.raises(CheckpointError, match="NaN"):
        clf.logits(np.zeros((1, 48, 48), np.uint8))


# ------------------------------------------------------------------------ the ONNX cache


@pytest.fixture
def weights_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the bundled weights folder (never the installed one)."""
    import fervid.models.bundled as bundled

    dst = tmp_path / "weights"
    dst.mkdir()
    for name in ("manifest.json", "fast.safetensors", "default.safetensors", "fast.onnx", "default.onnx"):
        shutil.copy(bundled.WEIGHTS_DIR / name, dst / name)
    # the one place the weights folder is read (load_model, the sha256 checks, the ONNX path)
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", dst)
    return dst


def test_tampered_bundled_weights_are_refused_even_with_a_cached_export(weights_copy: Path) -> None:
    pytest.importorskip("onnxruntime")
    from fervid.inference.backends import cached_onnx, load_classifier

    cached_onnx("fast")  # a valid entry exists
    data = bytearray((weights_copy / "fast.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (weights_copy / "fast.safetensors").write_bytes(bytes(data))
    for backend in ("auto", "onnx", "torch"):
        with pytest.raises(FervidError, match=r"fast.safetensors: sha256 .* does not match"):
            load_classifier("fast", backend=backend)


@pytest.mark.parametrize("damage", ["garbage", "foreign_model", "truncated", "no_record", "record_of_other"])
def test_damaged_or_foreign_cache_entries_are_rebuilt_honestly(tmp_path: Path, damage: str) -> None:
    pytest.importorskip("onnxruntime")
    from fervid.inference.backends import cached_onnx, load_classifier
    from fervid.models.onnx import read_metadata, save_fp32

    path = cached_onnx("fast")
    good = path.read_bytes()
    record = path.with_suffix(".json")
    if damage == "garbage":
        path.write_bytes(b"not an onnx file")
    elif damage == "foreign_model":  # another model's export put in its place
        save_fp32(_load(save_pt(checkpoint_dict(seed=3), tmp_path / "other.pt")), path)
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "no_record":
        record.unlink()
    else:
        rec = json.loads(record.read_text())
        rec["source_sha256"] = "0" * 64
        record.write_text(json.dumps(rec))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = load_classifier("fast", backend="auto")
    msgs = [str(w.message) for w in caught]
    assert clf.backend == "onnx"
    assert any("rebuilding it" in m and str(path) in m for m in msgs), msgs
    assert not any("export" in m and "failed" in m for m in msgs), msgs
    assert path.read_bytes() == good or read_metadata(path)["source"] == "bundled:fast"
    assert leftovers(path.parent) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt entry is trusted again: no warning
        load_classifier("fast", backend="auto")


def test_export_failure_falls_back_to_torch_loading_the_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    import fervid.inference.backends as backends
    import fervid.models.checkpoint as ckmod

    calls: list[str] = []
    real = ckmod.load_model

    def counting(name: Any, *a: Any, **k: Any) -> Any:
        calls.append(str(name))
        return real(name, *a, **k)

    def broken_export(model: Any, path: Any, *a: Any, **k: Any) -> None:
        raise RuntimeError("this exporter cannot handle the model")

    monkeypatch.setattr(ckmod, "load_model", counting)
    monkeypatch.setattr(backends, "save_fp32", broken_export)
    with pytest.warns(UserWarning, match="ONNX export of fast failed .*cannot handle.*using torch"):
        clf = backends.load_classifier("fast", backend="auto")
    assert clf.backend == "torch" and calls == ["fast"]


# ------------------------------------------------------------------------------ data


def test_pack_with_a_label_outside_the_label_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fervid.data.datasets import FERDataError, save_pack

    d = synthetic_data()
    d.labels[5] = 42
    with pytest.raises(FERDataError, match="label 42 at image 5"):
        save_pack(d, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()
    good = write_pack(tmp_path / "good.npz")
    with np.load(good) as z:
        fields = dict(z)
    fields["labels"] = fields["labels"].copy()
    fields["labels"][3] = 42
    np.savez(tmp_path / "hacked.npz", **fields)
    rc, _, err = cli(["data", "info", str(tmp_path / "hacked.npz")], capsys)
    assert_one_line_error(rc, err, "hacked.npz", "label 42")


def test_sample_grid_caps_per_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    pack = write_pack(tmp_path / "faces.npz", n_train=70, n_val=0)
    t0 = time.time()
    with pytest.warns(UserWarning, match="per_class 100000 capped at 10"):
        rc, out, err = cli(
            ["data", "show", str(pack), "--out", str(tmp_path / "g.png"), "--per-class", "100000"], capsys
        )
    assert rc == 0 and (tmp_path / "g.png").is_file() and time.time() - t0 < 60


def test_arrays_out_of_range_and_animated_gifs_are_reported(tmp_path: Path) -> None:
    from PIL import Image

    from fervid.data.io import load_image

    with pytest.warns(UserWarning, match=r"pixel values -5..1000 are outside the expected 0..255"):
        out = load_image(np.array([[-5, 1000], [3, 4]], dtype=np.int32))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 255
    with pytest.warns(UserWarning, match=r"outside the expected"):
        load_image(np.full((4, 4), 300.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(np.full((4, 4), 0.5))  # [0, 1] floats: nothing to say
        load_image(np.full((4, 4), 200, np.int64))
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "green", "blue")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match=r"anim.gif: an animated image with 3 frames; using the first"):
        rgb = load_image(gif)
    assert rgb[0, 0, 0] > 200 and rgb[0, 0, 1] < 50  # red: the first frame


def test_broken_manifest_names_the_file(weights_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (weights_copy / "manifest.json").write_text('{"models": [{"name": "default"')
    rc, _, err = cli(["predict", str(write_image(tmp_path / "a.png")), "--model", "default"], capsys)
    assert_one_line_error(rc, err, "manifest.json")


@pytest.mark.parametrize("kind", ["garbage", "float", "pickled_objects", "wrong_rank"])
def test_bad_npy_calibration_files_name_the_file(tmp_path: Path, kind: str) -> None:
    from fervid.export.onnx import load_calibration_faces

    p = tmp_path / "faces.npy"
    if kind == "garbage":
        p.write_bytes(b"\x93NUMPY garbage")
    elif kind == "float":
        np.save(p, np.zeros((4, 48, 48), np.float32))
    elif kind == "pickled_objects":
        np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        np.save(p, np.zeros((48, 48), np.uint8))
    with pytest.raises(FervidError, match="faces.npy"):
        load_calibration_faces(p)


def test_int8_export_on_npy_checks_min_agreement(tmp_path: Path) -> None:
    """An .npy holds faces only: the faces after the calibration ones choose the fp32 tail, so
    --min-agreement is applied; with none left over, the export refuses instead of skipping it."""
    pytest.importorskip("onnxruntime")
    from fervid.export.onnx import export_onnx

    faces = synthetic_data(n_train=96, n_val=0).images
    np.save(tmp_path / "all.npy", faces)
    with pytest.raises(FervidError, match="none are left to check --min-agreement"):
        export_onnx(
            "fast", tmp_path / "a.onnx", int8=True, calibration_data=tmp_path / "all.npy", n_calibration=96, check=False
        )
    assert not (tmp_path / "a.onnx").exists()
    report = export_onnx(
        "fast", tmp_path / "b.onnx", int8=True, calibration_data=tmp_path / "all.npy", n_calibration=48, check=False
    )
    assert report.n_selection == 48 and report.selection_agreement == report.selection_agreement  # not NaN
