"""One recognizer config (issue 21): RecognizerConfig's defaults live in one place, it is checked
once when made, it round-trips through JSON, ``EmotionRecognizer.from_config`` equals the keyword
constructor, and every CLI verb that makes a recognizer takes the same arguments with the same help."""

from __future__ import annotations

import argparse
import ast
import json
import pickle
from dataclasses import fields
from pathlib import Path

import pytest

from fervid.errors import UserValueError
from fervid.inference.config import DEFAULTS, FrozenOptions, RecognizerConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "fervid"
RECOGNIZER_VERBS = ("predict", "video", "batch", "serve")


@pytest.fixture(scope="module")
def media(data_root: Path) -> Path:
    return data_root / "media"


# ------------------------------------------------------------------ defaults in one place


def test_defaults_are_the_agreed_ones() -> None:
    c = RecognizerConfig()
    assert (c.model, c.detector, c.backend, c.device, c.threshold) == ("default", "yunet", "auto", "auto", 0.3)
    assert (c.photo_max_side, c.video_max_side, c.score_threshold) == (None, None, None)  # the detector's own
    assert c.max_pixels == 50_000_000 and dict(c.detector_options) == {}
    assert DEFAULTS == c


def test_the_recognizer_and_the_cli_read_their_defaults_from_the_config() -> None:
    """No literal copy of a recognizer default left in the recognizer's signature, the CLI or
    the batch options: they read it from RecognizerConfig."""
    import inspect

    from fervid.inference.recognizer import DEFAULT_THRESHOLD, EmotionRecognizer

    sig = inspect.signature(EmotionRecognizer.__init__).parameters
    for name in ("model", "detector", "device", "backend", "threshold"):
        assert sig[name].default == getattr(DEFAULTS, name), name
    assert DEFAULT_THRESHOLD == DEFAULTS.threshold
    for rel in ("cli/predict.py", "cli/video.py", "cli/batch.py", "cli/serve.py", "cli/recognizer_args.py", "batch.py"):
        tree = ast.parse((SRC / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                kw = {k.arg: k.value for k in node.keywords}
                flag = ast.literal_eval(node.args[0]) if node.args else ""
                if flag.lstrip("-").replace("-", "_") in {f.name for f in fields(RecognizerConfig)}:
                    assert "default" in kw and ast.literal_eval(kw["default"]) is None, f"{rel}: {flag}"
        assert "DEFAULT_DETECTOR" not in (SRC / rel).read_text(), rel


# ------------------------------------------------------------------ checked once


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"model": ""}, "model"),
        ({"model": None}, "model"),
        ({"detector": ""}, "detector"),
        ({"detector": 3}, "detector"),
        ({"photo_max_side": 0}, "photo_max_side"),
        ({"photo_max_side": 640.0}, "photo_max_side"),
        ({"video_max_side": True}, "video_max_side"),
        ({"video_max_side": "320"}, "video_max_side"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"score_threshold": float("nan")}, "score_threshold"),
        ({"backend": "tensorrt"}, "backend"),
        ({"device": ""}, "device"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": float("inf")}, "threshold"),
        ({"threshold": "0.3"}, "threshold"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"detector_options": [("max_side", 1)]}, "detector_options"),
        ({"detector_options": {"not a name": 1}}, "detector_options"),
        ({"photo_max_side": 800, "detector_options": {"max_side": 640}}, "photo_max_side"),
        ({"score_threshold": 0.5, "detector_options": {"score_threshold": 0.6}}, "score_threshold"),
    ],
)
def test_a_wrong_field_is_one_error_naming_it(changes: dict, named: str) -> None:
    with pytest.raises(UserValueError, match=named):
        RecognizerConfig(**changes)
    with pytest.raises(UserValueError, match=named):  # a changed copy is checked again
        RecognizerConfig().replace(**changes)


def test_frozen_and_hashable() -> None:
    c = RecognizerConfig(detector_options={"min_neighbors": 8})
    with pytest.raises(AttributeError):
        c.threshold = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.detector_options["min_neighbors"] = 2  # type: ignore[index]
    assert isinstance(c.detector_options, FrozenOptions) and c.detector_options == {"min_neighbors": 8}
    assert hash(c) == hash(RecognizerConfig(detector_options={"min_neighbors": 8}))
    assert pickle.loads(pickle.dumps(c)) == c  # Ray actors and worker processes get it pickled


def test_the_detector_options_apply_as_before_and_the_fields_on_top() -> None:
    video = {"max_side": 320, "score_threshold": 0.6, "coarse_side": None}
    assert RecognizerConfig().detector_kwargs() == {}
    assert RecognizerConfig().video_detector_kwargs(video) == video
    c = RecognizerConfig(photo_max_side=1024, video_max_side=480, score_threshold=0.5)
    assert c.detector_kwargs() == {"max_side": 1024, "score_threshold": 0.5}
    assert c.video_detector_kwargs(video) == {"max_side": 480, "score_threshold": 0.5, "coarse_side": None}
    legacy = RecognizerConfig(detector_options={"max_side": 640})  # photos and video alike, as documented before
    assert legacy.video_detector_kwargs(video)["max_side"] == 640
    haar = RecognizerConfig(detector="haar", photo_max_side=2048)  # no video settings: as on photos
    assert haar.video_detector_kwargs(None) == {"max_side": 2048}


# ------------------------------------------------------------------ JSON


def test_json_round_trip() -> None:
    c = RecognizerConfig(
        model="fast",
        detector="haar",
        photo_max_side=2048,
        video_max_side=512,
        backend="onnx",
        device="cpu",
        threshold=0.25,
        max_pixels=1_000_000,
        detector_options={"min_neighbors": 8, "min_size": 0.1},
    )
    text = json.dumps(c.to_dict())
    assert RecognizerConfig.from_dict(json.loads(text)) == c
    assert RecognizerConfig.from_dict({}) == RecognizerConfig()  # missing keys: the defaults
    assert RecognizerConfig(model=Path("m.safetensors")).to_dict()["model"] == "m.safetensors"


def test_from_dict_names_an_unknown_key() -> None:
    with pytest.raises(UserValueError, match="'max_side'"):
        RecognizerConfig.from_dict({"model": "fast", "max_side": 640})
    with pytest.raises(UserValueError, match="JSON object"):
        RecognizerConfig.from_dict(["fast"])  # type: ignore[arg-type]


def test_an_object_has_no_json_form() -> None:
    from fervid.detectors import create_detector

    with pytest.raises(UserValueError, match="detector"):
        RecognizerConfig(detector=create_detector("haar")).to_dict()


# ------------------------------------------------------------------ the recognizer


def test_from_config_equals_the_keyword_constructor(media: Path) -> None:
    from fervid import EmotionRecognizer
    from fervid import RecognizerConfig as Exported

    assert Exported is RecognizerConfig
    kw = EmotionRecognizer(
        "fast", detector="haar", backend="onnx", threshold=0.2, detector_options={"min_neighbors": 5}
    )
    cfg = RecognizerConfig(
        model="fast", detector="haar", backend="onnx", threshold=0.2, detector_options={"min_neighbors": 5}
    )
    fc = EmotionRecognizer.from_config(cfg)
    assert kw.config == cfg == fc.config
    assert (fc.model, fc.backend, fc.device, fc.threshold) == ("fast", "onnx", "auto", 0.2)
    assert repr(kw) == repr(fc)
    a = kw.predict(media / "two_people.jpg").to_dict()
    b = fc.predict(media / "two_people.jpg").to_dict()
    assert a == b and len(a["faces"]) == 2


def test_the_sizes_reach_the_detectors() -> None:
    from fervid import EmotionRecognizer

    rec = EmotionRecognizer.from_config(RecognizerConfig(photo_max_side=1024, video_max_side=480))
    assert (rec.detector.max_side, rec.detector.coarse_side) == (1024, 320)  # type: ignore[attr-defined]
    v = rec.video_detector
    assert (v.max_side, v.score_threshold, v.coarse_side) == (480, 0.6, None)  # type: ignore[attr-defined]
    haar = EmotionRecognizer.from_config(RecognizerConfig(detector="haar"))
    assert haar.video_detector is haar.detector  # nothing of its own for video: the same object
    with pytest.raises(UserValueError, match="score_threshold"):  # Haar has no score threshold
        EmotionRecognizer.from_config(RecognizerConfig(detector="haar", score_threshold=0.5))
    with pytest.raises(TypeError, match="RecognizerConfig"):
        EmotionRecognizer.from_config({"model": "fast"})  # type: ignore[arg-type]


# ------------------------------------------------------------------ the CLI


def _recognizer_actions(verb: str) -> dict[str, tuple[tuple[str, ...], str | None, object, object]]:
    from fervid.cli import build_parser
    from fervid.cli.recognizer_args import GROUP_TITLE

    parser = build_parser([verb])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    group = next(g for g in sub._action_groups if g.title == GROUP_TITLE)
    return {a.dest: (tuple(a.option_strings), a.help, a.type, a.choices) for a in group._group_actions}


@pytest.mark.parametrize("verb", RECOGNIZER_VERBS)
def test_every_verb_has_the_same_recognizer_arguments(verb: str) -> None:
    mine = _recognizer_actions(verb)
    assert mine == _recognizer_actions("predict")
    names = {f.name for f in fields(RecognizerConfig)}
    for dest, (flags, help_text, _, _) in mine.items():
        assert help_text
        if dest in names:  # the CLI mirrors the API: --photo-max-side is photo_max_side
            flag = "--" + dest.replace("_", "-")
            # detector_options: one --detector-option KEY=VALUE per option
            assert (flag.removesuffix("s") if dest == "detector_options" else flag) in flags
    assert {"model", "detector", "photo_max_side", "video_max_side", "score_threshold", "backend", "device"} <= set(
        mine
    ) and {"threshold", "detector_options", "detector_size"} <= set(mine)


@pytest.mark.parametrize("verb", RECOGNIZER_VERBS)
def test_the_arguments_make_the_config(verb: str) -> None:
    from fervid.cli import build_parser
    from fervid.cli.recognizer_args import config_from_args

    positional = {"predict": ["x.jpg"], "video": ["x.mp4"], "batch": ["x", "--out", "o.parquet"], "serve": []}[verb]
    parser = build_parser([verb])
    assert config_from_args(parser.parse_args([verb, *positional])) == RecognizerConfig()
    args = parser.parse_args(
        [verb, *positional, "--model", "fast", "--detector", "haar", "--detector-size", "800", "--video-max-side"]
        + ["400", "--detector-option", "min_neighbors=6", "--detector-option", "cascade=x.xml"]
        + ["--backend", "onnx", "--device", "cpu", "--threshold", "0.4"]
    )
    assert config_from_args(args) == RecognizerConfig(
        model="fast",
        detector="haar",
        photo_max_side=800,
        video_max_side=400,  # given: it wins over --detector-size
        backend="onnx",
        device="cpu",
        threshold=0.4,
        detector_options={"min_neighbors": 6, "cascade": "x.xml"},
    )


def test_a_wrong_detector_option_is_one_line(capsys: pytest.CaptureFixture[str], media: Path) -> None:
    from fervid.cli import main

    assert main(["predict", str(media / "two_people.jpg"), "--detector-option", "min_neighbors"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["predict", str(media / "two_people.jpg"), "--detector", "haar", "--score-threshold", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "score_threshold" in err and len(err.strip().splitlines()) == 1


def test_batch_options_hold_the_config() -> None:
    from fervid.batch import BatchOptions

    cfg = RecognizerConfig(model="fast", detector="haar")
    opts = BatchOptions(cfg, video_every=5)
    assert opts.config is cfg and BatchOptions(model="fast", detector="haar", video_every=5) == opts
    assert BatchOptions(detector=None, threshold=None) == BatchOptions()  # None: the default, as before
    assert BatchOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts
    s = opts.settings()
    assert s["model"] == "fast" and s["video_every"] == 5 and "device" not in s
    assert BatchOptions(cfg.replace(device="cpu"), video_every=5).settings() == s  # the device changes no row
    with pytest.raises(UserValueError, match="video_every"):
        BatchOptions(video_every=0)
    with pytest.raises(UserValueError, match="max_side"):
        BatchOptions(max_side=640)
    with pytest.raises(UserValueError, match="not both"):
        BatchOptions(cfg, model="fast")


def test_the_help_states_the_detectors_real_defaults() -> None:
    """The sizes and thresholds the help text quotes are the detectors' own defaults (they live
    with the detectors; the help must not drift from them)."""
    import inspect

    from fervid.detectors import YUNET_PHOTO, YUNET_VIDEO, DlibHogDetector, create_detector

    helps = {dest: h for dest, (_, h, _, _) in _recognizer_actions("predict").items()}
    haar = create_detector("haar")
    dlib_side = inspect.signature(DlibHogDetector.__init__).parameters["max_side"].default
    assert f"yunet {YUNET_PHOTO['max_side']}, haar/dlib {haar.max_side}" in helps["photo_max_side"]  # type: ignore[attr-defined]
    assert haar.max_side == dlib_side  # type: ignore[attr-defined]
    assert f"yunet {YUNET_VIDEO['max_side']}" in helps["video_max_side"]
    assert (
        f"yunet {YUNET_PHOTO['score_threshold']} photos, {YUNET_VIDEO['score_threshold']} video"
        in helps["score_threshold"]
    )
