"""The weights catalogue (fervid.models.bundled): every bundled file listed once with its
architecture and sha256, one verified path for the models, YuNet and the service, and the
bundled weights tied to their architectures in list_models() and `fervid models`."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

import fervid.models.bundled as bundled
from fervid.errors import CheckpointError, UnknownNameError
from fervid.models import list_models
from fervid.models.bundled import (
    WEIGHTS_DIR,
    bundled_models,
    file_sha256,
    pretrained,
    verified_weight,
    weight_file,
    weight_files,
)
from fervid.models.onnx import metadata_json


def _safetensors_meta(path: Path) -> dict:
    """The fervid metadata in a safetensors header (read without torch)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["fervid"])


def test_every_bundled_file_is_in_the_catalogue_once_and_verified() -> None:
    files = weight_files()
    on_disk = {
        p.relative_to(WEIGHTS_DIR).as_posix() for p in WEIGHTS_DIR.rglob("*") if p.suffix in (".onnx", ".safetensors")
    }
    assert sorted(w.file for w in files) == sorted(on_disk)  # each file once, none unlisted
    for w in files:
        assert w.runtime in bundled.RUNTIMES and w.architecture and w.description
        assert w.verified_path() == w.path and file_sha256(w.path) == w.sha256
    assert {(w.name, w.runtime) for w in files} >= {
        ("default", "torch"),
        ("default", "onnxruntime"),
        ("fast", "torch"),
        ("fast", "onnxruntime"),
        ("yunet", "onnxruntime"),
        ("yunet", "opencv"),
    }
    assert weight_file("yunet", "onnxruntime").licence == "Apache-2.0"


def test_architectures_are_the_checkpoints_own() -> None:
    """The manifest's architecture is what the weights load into: the checkpoint's own record,
    a registered model; the ONNX export carries the checkpoint's labels."""
    registered = set(list_models())
    for m in bundled_models(aliases=False).values():
        meta = _safetensors_meta(WEIGHTS_DIR / m.file)
        assert m.architecture == meta["model"] and m.architecture in registered
        onnx = metadata_json(verified_weight(m.name, "onnxruntime"))
        assert onnx["labels"] == list(meta["preprocess"]["labels"]) and onnx["temperature"] > 0
    assert len(metadata_json(weight_file("ferplus", "onnxruntime").path)["labels"]) == 8


def test_list_models_ties_weights_to_architectures() -> None:
    assert list_models(pretrained=True) == ["fast_cnn.fast", "resnet18_fer.default", "resnet18_fer.ferplus"]
    assert list_models("fast*", pretrained=True) == ["fast_cnn.fast"]
    assert list_models("resnet*") == ["resnet18_fer"]
    assert pretrained() == {"fast_cnn": ["fast"], "resnet18_fer": ["default", "ferplus"]}
    assert pretrained("vgg_fer") == {}
    models = bundled_models()
    for name in list_models(pretrained=True):  # each ARCH.NAME is a name a bundled model answers to
        assert models[name] is models[name.split(".", 1)[1]]
    # aliases resolve in the catalogue too
    assert weight_file("resnet18_fer.ferplus", "torch") == weight_file("ferplus", "torch")
    assert weight_file("fast-cnn-fer2013", "onnxruntime").file == "fast.onnx"
    with pytest.raises(UnknownNameError, match="no bundled weights 'yunet' for torch"):
        weight_file("yunet", "torch")


def test_the_arch_name_of_bundled_weights_predicts_as_the_name(data_root: Path) -> None:
    from fervid import EmotionRecognizer

    photo = data_root / "media" / "two_people.jpg"
    a = EmotionRecognizer("fast", backend="onnx").predict(photo)
    b = EmotionRecognizer("fast_cnn.fast", backend="onnx").predict(photo)
    assert len(a.faces) == 2
    for fa, fb in zip(a.faces, b.faces):
        # exact: the same weights in the same runtime on the same crops (no float tolerance to derive)
        assert fa.probabilities == fb.probabilities


def test_yunet_reads_its_files_from_the_catalogue() -> None:
    """The detector's (path, sha256) are the catalogue's, for both runtimes."""
    from fervid.inference.detect import yunet_weights

    for runtime in ("onnxruntime", "opencv"):
        w = weight_file("yunet", runtime)
        assert yunet_weights(runtime) == (w.path, w.sha256)


@pytest.fixture()
def weights_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the manifest and YuNet (never the installed files)."""
    dst = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR / "yunet", dst / "yunet")
    shutil.copy(WEIGHTS_DIR / "manifest.json", dst / "manifest.json")
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", dst)
    return dst


def test_damaged_weights_are_refused_by_name(weights_copy: Path) -> None:
    p = weights_copy / weight_file("yunet", "onnxruntime").file
    assert verified_weight("yunet", "onnxruntime") == p
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"yunet_s_dynamic.onnx: sha256 .* does not match"):
        verified_weight("yunet", "onnxruntime")
    (weights_copy / "yunet" / "face_detection_yunet_2023mar.onnx").unlink()
    with pytest.raises(
        CheckpointError, match=r"face_detection_yunet_2023mar.onnx: the bundled model 'yunet' is missing"
    ):
        verified_weight("yunet", "opencv")


def test_broken_manifest_is_one_error_naming_it(weights_copy: Path) -> None:
    manifest = weights_copy / "manifest.json"
    entries = json.loads(manifest.read_text())
    entries["aliases"]["oops"] = "nope"
    manifest.write_text(json.dumps(entries))
    with pytest.raises(CheckpointError, match=r"manifest.json: broken bundled-model manifest .*nope"):
        weight_files()
    manifest.write_text('{"models": [{"name": "default"')
    with pytest.raises(CheckpointError, match="manifest.json: broken"):
        bundled_models()
    manifest.unlink()  # no manifest: nothing bundled, not an error
    assert weight_files() == [] and bundled_models() == {} and list_models(pretrained=True) == []
