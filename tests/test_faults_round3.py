"""Fault injection, round 3 (issue 25, part B): what the second fresh campaign
(``benchmarks/fault_campaign2.py``, 261 cases) found in the code issue 21 added, each fixed as a
class where one exists:

- a recognizer config is valid when it exists: the device is checked by its spelling and the
  model by its type when the config is made (``"gpu"``, ``"cuda:-1"``, ``model=3`` were accepted);
- a detector's options are checked against the detector's own signature before it is called
  (``skip`` with any option raised ``TypeError``), and yes/no options must be booleans
  (``--detector-option profile=no`` read as true);
- an ensemble's members, and ``fervid evaluate``'s models, are identified by what they are (a
  bundled model's canonical name, a file's resolved path): a model averaged with itself under an
  alias or another spelling of its path is refused;
- the service's limits (``create_app`` and ``FERVID_SERVE_CONFIG``) are checked by one rule and a
  malformed ``FERVID_SERVE_CONFIG`` is one error naming it (JSONDecodeError, ValueError,
  OverflowError and a silently accepted ``true`` before);
- a multipart ``file`` part without a file name (its bytes decoded as text) is a 400 that says
  so, not a "not an image" 415 for a good photo;
- the bundled weights are read where the catalogue says (``WEIGHTS_DIR``), through its check: a
  folder in place of a weight file is a CheckpointError naming it.

Hermetic: synthetic images and the bundled weights; nothing loads a model but the last test."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultkit import assert_one_line_error, cli, run_fervid, write_image
from fervid import EmotionRecognizer, RecognizerConfig
from fervid.detectors import available_detectors, create_detector
from fervid.errors import CheckpointError, FervidError, UserValueError

# --------------------------------------------------------------------------- the config


@pytest.mark.parametrize("device", ["gpu", "cuda:-1", "CUDA", "cuda:", "cuda 0", " cpu", "cpu,cuda", "tpu", "cuda:0x1"])
def test_a_device_that_cannot_exist_is_refused_when_the_config_is_made(device: str) -> None:
    with pytest.raises(UserValueError, match="device"):
        RecognizerConfig(model="fast", device=device)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps", "cpu:0"])
def test_the_documented_devices_are_accepted(device: str) -> None:
    assert RecognizerConfig(model="fast", device=device).device == device


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=12))
def test_any_device_text_is_accepted_only_when_torch_can_name_it(device: str) -> None:
    """Property: a device string either makes a config that torch can parse, or is a
    UserValueError naming the field; never anything else."""
    torch = pytest.importorskip("torch")
    try:
        RecognizerConfig(model="fast", device=device)
    except UserValueError as e:
        assert "device" in str(e)
        return
    if device != "auto":
        torch.device(device)  # raises if the accepted spelling were not a device


@pytest.mark.parametrize("model", [3, 1.5, True, ["default"], ("default", "fast"), {"name": "fast"}, b"fast"])
def test_a_model_that_is_no_name_path_or_model_is_refused(model: Any) -> None:
    with pytest.raises(UserValueError, match="model must be"):
        RecognizerConfig(model=model)
    with pytest.raises(UserValueError, match="model must be"):
        EmotionRecognizer(model=model)


# --------------------------------------------------------------------------- detector options


@pytest.mark.parametrize("options", [{"max_side": 100}, {"score_threshold": 0.5}, {"bogus": 1}])
def test_skip_takes_no_options_and_says_so(options: dict[str, Any]) -> None:
    key = next(iter(options))
    with pytest.raises(UserValueError, match=f"detector 'skip' has no option '{key}'"):
        EmotionRecognizer("fast", detector="skip", detector_options=options)


def test_skip_with_a_photo_size_is_one_line_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = write_image(tmp_path / "a.png")
    rc, _, err = cli(["predict", str(img), "--detector", "skip", "--photo-max-side", "100", "--no-progress"], capsys)
    assert_one_line_error(rc, err, "skip", "max_side")


@pytest.mark.parametrize("key", ["profile", "equalize"])
@pytest.mark.parametrize("value", ["no", "yes", "false", 0, 1, None, [True]])
def test_a_yes_no_haar_option_must_be_a_boolean(key: str, value: Any) -> None:
    with pytest.raises(UserValueError, match=f"detector option {key} must be true or false"):
        create_detector("haar", **{key: value})


def test_haar_booleans_still_work() -> None:
    det = create_detector("haar", equalize=True, profile=False)
    assert det.equalize is True and det.profile is False  # type: ignore[attr-defined]


def test_a_string_flag_from_the_cli_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = write_image(tmp_path / "a.png")
    argv = ["predict", str(img), "--detector", "haar", "--detector-option", "equalize=no", "--no-progress"]
    rc, _, err = cli(argv, capsys)
    assert_one_line_error(rc, err, "equalize")


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(set(available_detectors()) - {"dlib"})),
    st.dictionaries(
        st.sampled_from(
            [
                "max_side",
                "score_threshold",
                "nms_threshold",
                "top_k",
                "backend",
                "threads",
                "coarse_side",
                "scale_factor",
                "min_neighbors",
                "min_size",
                "profile",
                "equalize",
                "roi_face",
                "profile_min_neighbors",
                "nonsense",
            ]
        ),
        _VALUES,
        max_size=3,
    ),
)
def test_any_detector_options_make_a_detector_or_one_user_error(name: str, options: dict[str, Any]) -> None:
    """Property: whatever options reach a detector (API, CLI, config), the answer is a detector
    or a UserValueError, never a TypeError from inside its constructor."""
    try:
        create_detector(name, **options)
    except UserValueError as e:
        assert str(e)


# --------------------------------------------------------------------------- ensembles


def test_a_model_and_its_alias_are_one_member_given_twice() -> None:
    with pytest.raises(UserValueError, match="given twice.*'fast' and 'fast-cnn-fer2013' are the same model"):
        RecognizerConfig(model="fast+fast-cnn-fer2013")


def test_two_spellings_of_one_file_are_one_member_given_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fervid.models.bundled import weight_file

    p = tmp_path / "m.safetensors"
    shutil.copy(weight_file("fast", "torch").path, p)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserValueError, match="given twice"):
        RecognizerConfig(model=f"m.safetensors+{p}")
    with pytest.raises(UserValueError, match="given twice"):
        RecognizerConfig(model=f"./m.safetensors+../{tmp_path.name}/m.safetensors")


def test_evaluate_refuses_the_same_model_twice(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from fervid.evaluation.evaluate import EvalConfig

    for models in (["fast", "fast"], ["fast", "fast-cnn-fer2013"], ["default+fast", "fast"]):
        expanded = [m for spec in models for m in spec.split("+")]
        with pytest.raises(UserValueError, match="given twice"):
            EvalConfig(models=expanded, data=str(tmp_path)).validate()
    rc, _, err = cli(["evaluate", "fast", "fast", "--data", str(tmp_path), "--no-progress", "--no-report"], capsys)
    assert_one_line_error(rc, err, "given twice")


def test_distinct_models_still_make_an_ensemble() -> None:
    assert RecognizerConfig(model="default+fast").model == "default+fast"


# --------------------------------------------------------------------------- the service's limits


@pytest.fixture(scope="module")
def rec() -> EmotionRecognizer:
    return EmotionRecognizer("fast", detector="skip", backend="onnx")  # nothing loads until used


@pytest.mark.parametrize(
    ("limits", "name"),
    [
        ({"max_upload_mb": float("nan")}, "max_upload_mb"),
        ({"max_upload_mb": float("inf")}, "max_upload_mb"),
        ({"max_upload_mb": 1e308}, "max_upload_mb"),
        ({"max_upload_mb": 0}, "max_upload_mb"),
        ({"max_upload_mb": True}, "max_upload_mb"),
        ({"max_upload_mb": "16"}, "max_upload_mb"),
        ({"max_concurrency": 1.5}, "max_concurrency"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_batch": -1}, "max_batch"),
        ({"max_pixels": 2.5}, "max_pixels"),
    ],
)
def test_create_app_names_a_bad_limit(rec: EmotionRecognizer, limits: dict[str, Any], name: str) -> None:
    from fervid.serve.app import create_app

    with pytest.raises(UserValueError, match=f"^{name} must be"):
        create_app(rec, load=False, **limits)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("{model: fast}", ["not valid JSON"]),
        ('{"model": "fast",}', ["not valid JSON"]),
        ('{"model": "fast", "max_upload_mb": "big"}', ["max_upload_mb"]),
        ('{"model": "fast", "max_upload_mb": -1}', ["max_upload_mb"]),
        ('{"model": "fast", "max_upload_mb": NaN}', ["max_upload_mb"]),
        ('{"model": "fast", "max_upload_mb": 1e308}', ["max_upload_mb"]),
        ('{"model": "fast", "max_upload_mb": true}', ["max_upload_mb"]),
        ('{"model": "fast", "api_key": 1234}', ["API key"]),
        ('{"model": "fast", "device": "gpu"}', ["device"]),
    ],
)
def test_a_bad_serve_config_env_is_one_error_naming_it(
    value: str, names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fervid.serve.app import ENV_CONFIG, app_from_env

    monkeypatch.setenv(ENV_CONFIG, value)
    with pytest.raises(FervidError) as info:
        app_from_env()
    assert ENV_CONFIG in str(info.value)
    for n in names:
        assert n in str(info.value)


def test_the_serve_config_env_round_trip_keeps_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from fervid.serve.app import ENV_CONFIG, app_from_env, serve_config

    cfg = RecognizerConfig(model="fast", detector="haar", threshold=0.2, photo_max_side=900, max_pixels=1000)
    monkeypatch.setenv(ENV_CONFIG, json.dumps(serve_config(cfg, "k3y", 2.5)))
    state = app_from_env().state.fervid
    assert state.recognizer.config == cfg
    assert (state.api_key, state.max_bytes, state.max_pixels) == ("k3y", int(2.5 * 2**20), 1000)


def test_a_file_part_without_a_file_name_is_a_400_that_says_so(rec: EmotionRecognizer, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from fervid.serve.app import create_app

    img = write_image(tmp_path / "a.png").read_bytes()
    with TestClient(create_app(rec, load=False, cache_dir=tmp_path / "cache")) as c:
        for path in ("/v1/predict", "/v1/predict/batch"):
            r = c.post(path, files={"file": ("", img, "image/png")})
            assert r.status_code == 400, r.text
            err = r.json()["error"]
            assert err["code"] == "not_a_file" and "file name" in err["message"]


# --------------------------------------------------------------------------- the weights catalogue


def test_a_folder_in_place_of_bundled_weights_is_a_checkpoint_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fervid.models.bundled as bundled
    from fervid.models.checkpoint import load_checkpoint

    copy = tmp_path / "weights"
    copy.mkdir()
    shutil.copy(bundled.WEIGHTS_DIR / "manifest.json", copy / "manifest.json")
    entry = bundled.bundled_models()["fast"]
    (copy / entry.file).mkdir()
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", copy)
    with pytest.raises(CheckpointError, match=re.escape(str(copy / entry.file))):
        load_checkpoint("fast")


def test_the_catalogue_copy_is_the_one_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tools point WEIGHTS_DIR at a copy: a damaged file there must be caught, not the
    package's own intact file loaded instead."""
    import fervid.models.bundled as bundled
    from fervid.models.checkpoint import load_checkpoint

    copy = tmp_path / "weights"
    shutil.copytree(bundled.WEIGHTS_DIR, copy, ignore=shutil.ignore_patterns("*.onnx", "yunet"))
    f = copy / bundled.bundled_models()["fast"].file
    f.write_bytes(f.read_bytes()[: os.path.getsize(f) // 2])
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", copy)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint("fast")


# --------------------------------------------------------------------------- outputs over inputs


def test_an_output_over_an_image_inside_the_input_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from faultkit import fingerprint

    data = tmp_path / "faces"
    for label in ("angry", "happy"):
        (data / label).mkdir(parents=True)
        for k in range(3):
            write_image(data / label / f"{k}.png", size=48, seed=k)
    before = fingerprint(data)
    target = data / "happy" / "0.png"
    rc, _, err = cli(["data", "show", str(data), "--out", str(target)], capsys)
    assert_one_line_error(rc, err, str(target), "inside the input folder")
    assert fingerprint(data) == before
    # a new file in the folder is no input: it is written
    rc, _, err = cli(["data", "show", str(data), "--out", str(data / "grid.png")], capsys)
    assert rc == 0, err
    assert (data / "grid.png").is_file()


# ---- found by the lead's spot check after the round: batch outputs and CLI warnings


def test_batch_refuses_to_continue_an_output_whose_faces_table_was_deleted(data_root: Path, tmp_path: Path) -> None:
    """Deleting the faces table to run again made every source "done": batch wrote nothing and
    reported the missing file as its output. Now it refuses, names both files, and keeps them."""
    pytest.importorskip("pyarrow")
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(data_root / "media" / "two_people.jpg", folder / "a.jpg")
    out = tmp_path / "out.parquet"
    assert run_fervid(["batch", str(folder), "--out", str(out), "--no-progress"], cwd=tmp_path).returncode == 0
    sources = tmp_path / "out.sources.parquet"
    before = sources.read_bytes()
    out.unlink()
    proc = run_fervid(["batch", str(folder), "--out", str(out), "--no-progress"], cwd=tmp_path)
    assert_one_line_error(proc.returncode, proc.stderr, str(out), str(sources))
    assert not out.exists() and sources.read_bytes() == before  # nothing written, nothing lost


def test_cli_warnings_are_one_line_named_after_the_verb(data_root: Path, tmp_path: Path) -> None:
    """A skipped file in a batch folder was shown as Python's ``batch.py:742: UserWarning`` and
    a line of fervid's source code."""
    pytest.importorskip("pyarrow")
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(data_root / "media" / "two_people.jpg", folder / "a.jpg")
    (folder / "notes.txt").write_text("mine")
    proc = run_fervid(["batch", str(folder), "--out", str(tmp_path / "o.parquet"), "--no-progress"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert any(ln.startswith("fervid batch: warning: ") and "notes.txt" in ln for ln in lines), proc.stderr
    assert "UserWarning" not in proc.stderr and "list_sources" not in proc.stderr, proc.stderr
