"""Fault injection, configuration and training (issue 25): every config key is checked by one
declared schema (type, range, finiteness; unknown keys, keys that are not names and duplicate
YAML keys refused; ``model_args`` against the family's signature), a non-finite loss stops the
run before a broken checkpoint is saved, a time budget never runs more epochs than asked, and a
run that failed before its first checkpoint can be run again. Property-based tests (hypothesis,
bounded by ``max_examples`` and ``deadline``) give every key random values of every type.
Hermetic: synthetic data, no real data needed."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultkit import assert_one_line_error, cli, synthetic_data, write_pack
from fervid.errors import FervidError, OutputError, UserValueError
from fervid.training import loop
from fervid.training.augment import AugmentConfig
from fervid.training.config import AUGMENT_SCHEMA, TRAIN_SCHEMA, TrainConfig, load_config
from fervid.training.schema import check_fields, declare, load_yaml
from fervid.training.study import STUDY_SCHEMA, StudyConfig


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERVID_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pack(tmp_path_factory.mktemp("data") / "faces.npz")


def _cfg(out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "out": str(out),
        "epochs": 2,
        "batch_size": 64,
        "device": "cpu",
        "progress": False,
        "amp": False,
        "warmup_epochs": 0.0,
    }
    return TrainConfig.from_dict({**base, **kw})


def _train_cli(pack: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(pack),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]


# ------------------------------------------------------------------ the campaign's cases


def test_effective_weights_with_beta_1_are_refused_before_training(
    pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cb_beta 1.0 made every class weight 0/0: the run trained on NaN, exited 0 and saved a
    checkpoint fervid then refused to load."""
    out = tmp_path / "run"
    rc, _, err = cli(_train_cli(pack, out, "--set", "imbalance=effective", "cb_beta=1.0"), capsys)
    assert_one_line_error(rc, err, "cb_beta")
    assert not (out / "best.pt").exists() and not (out / "last.pt").exists()
    from fervid.training.imbalance import class_weights, plan

    with pytest.raises(UserValueError, match="cb_beta"):  # the API below the config refuses it too
        plan("effective", np.arange(70) % 7, 7, cb_beta=1.0)
    with pytest.raises(UserValueError, match="cb_beta"):
        class_weights(np.array([10, 20]), "effective", beta=1.0)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss turns NaN in epoch 2 (3 steps an epoch): the run stops with a named error and
    last.pt / best.pt stay epoch 1's, finite and loadable."""
    real = loop.compute_loss
    calls = {"n": 0}

    def nan_from_epoch_2(*a: Any, **k: Any) -> torch.Tensor:
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] > 3 else loss

    monkeypatch.setattr(loop, "compute_loss", nan_from_epoch_2)
    out = tmp_path / "run"
    with pytest.raises(loop.NonFiniteLossError, match="epoch 2, step 1"):
        loop.train(_cfg(out), data=synthetic_data())
    from fervid.models.checkpoint import load_model

    for name in ("last.pt", "best.pt"):
        ck = torch.load(out / name, map_location="cpu", weights_only=True)
        assert ck["epoch"] == 1, name
        assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())
        load_model(str(out / name))
    assert not (out / "final.json").exists()


def test_a_large_oversampling_power_still_draws() -> None:
    """n^-1000 is 0.0 for every class of 30 or more: torch.multinomial then refused the all-zero
    distribution mid-run (a RuntimeError traceback). Weights relative to the rarest class stay
    drawable and balance the classes."""
    from fervid.training.imbalance import plan

    labels = np.repeat(np.arange(7), [40, 60, 80, 100, 120, 140, 160])
    draw = plan("oversample", labels, 7, oversample_power=1000.0).draw
    assert draw is not None and np.isfinite(draw).all() and draw.sum() > 0
    picked = torch.multinomial(
        torch.from_numpy(draw), 2000, replacement=True, generator=torch.Generator().manual_seed(0)
    )
    assert set(labels[picked.numpy()]) == {0}  # power 1000: only the rarest class is drawn
    balanced = plan("oversample", labels, 7, oversample_power=1.0).draw
    assert balanced is not None
    per_class = np.bincount(labels, weights=balanced, minlength=7)
    # power 1: equal mass per class, up to the rounding of exp/log and of summing len(labels) terms
    np.testing.assert_allclose(per_class, per_class[0], rtol=10 * len(labels) * np.finfo(np.float64).eps)


@pytest.mark.parametrize(
    "pair, key",
    [
        ("grad_clip=-1", "grad_clip"),  # reversed the gradients (loss 1.96 -> 5.04 in 4 epochs)
        ("time_budget_minutes=-5", "time_budget_minutes"),
        ("seed=-1", "seed"),
        ("label_smoothing=2", "label_smoothing"),
        ("weight_decay=.nan", "weight_decay"),
        ("momentum=-3", "momentum"),
        ("lr=.inf", "lr"),
        ("workers_threads=100000", "workers_threads"),  # torch takes it and starts that many threads
        ("augment={rotate: .nan}", "augment.rotate"),
        ("model_args={nope: 1}", "nope"),  # was: TypeError: fast_cnn() got an unexpected keyword argument
        ("model_args={widths: abc}", "model_args.widths"),
        ("model_args={drop: 5}", "model_args"),  # a value the family cannot build: named before the run
        ("model_args={widths: []}", "model_args"),
        ("model_args={input_size: 2}", "model_args"),  # too small for the network's pooling
        ("model_args={in_chans: 0}", "model_args.in_chans"),
        ("epochs=[1,", "epochs=[1,"),  # was a YAML ParserError traceback
        ("augment={mixup: 0.1, mixup: 0.2}", "mixup"),  # a duplicate inside a --set value
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(
    pair: str, key: str, pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    rc, _, err = cli(_train_cli(pack, out, "--set", pair), capsys)
    assert_one_line_error(rc, err, key)
    assert not (out / "last.pt").exists()


def test_a_negative_seed_flag_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(["train", "--data", "x.npz", "--out", str(tmp_path / "run"), "--seed", "-1"], capsys)
    assert rc == 2 and "--seed" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "recipe, names",
    [
        ("epochs: 1\nlr: 0.1\nepochs: 3\n", ["'epochs'", "lines 1 and 3"]),  # silently took the last value
        ("augment:\n  rotate: 5\n  rotate: 9\n", ["'rotate'", "lines 2 and 3"]),
        ("1: 2\nfoo: 3\n", ["key 1"]),  # crashed in sorted()
        ("null: 1\n", ["key None"]),
        ("augment:\n  1: 2\n  hflip: 0.5\n", ["augment", "key 1"]),
        ("epochs: [1,\n", ["not valid YAML"]),
        ("- epochs\n", ["mapping"]),
    ],
)
def test_bad_recipes_are_one_line_errors(
    recipe: str, names: list[str], pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    rc, _, err = cli([*_train_cli(pack, tmp_path / "run"), "--config", str(path)], capsys)
    assert_one_line_error(rc, err, str(path), *names)


def test_deeply_nested_yaml_is_a_named_error() -> None:
    with pytest.raises(UserValueError, match="recipe: nested too deeply"):
        load_yaml("a: " + "[" * 3000 + "]" * 3000, "recipe")


def test_yaml_merge_keys_may_be_overridden() -> None:
    """``<<: *base`` then a key of the base is an override, not a duplicate."""
    d = load_yaml("base: &b {lr: 0.1, epochs: 2}\nrun:\n  <<: *b\n  epochs: 5\n", "recipe")
    assert d["run"] == {"lr": 0.1, "epochs": 5}


def test_one_epoch_with_a_time_budget_runs_one_epoch(tmp_path: Path) -> None:
    """epochs: 1 with any time budget ran 2 epochs (the budget never adds epochs)."""
    final = loop.train(_cfg(tmp_path / "run", epochs=1, time_budget_minutes=10.0), data=synthetic_data())
    assert final["epochs_run"] == 1
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    assert loop.budget_epochs(10, elapsed=1, epoch_seconds=1, done=1, cap=1, first=True) == 1


def test_a_validation_share_that_leaves_no_training_image_is_named(tmp_path: Path) -> None:
    """val_fraction 0.9999 of 20 images: the stratified share rounds up per class and held out
    all 20 (KeyError 'Training')."""
    d = dataclasses.replace(synthetic_data(n_train=20, n_val=0), splits=np.asarray(["Training"] * 20))
    with pytest.raises(UserValueError, match="val_fraction 0.9999 holds out all 20"):
        loop.train(_cfg(tmp_path / "run", val_fraction=0.9999), data=d)


@pytest.mark.parametrize("again", ["rerun", "resume"])
def test_a_run_that_failed_before_its_first_checkpoint_can_be_run_again(
    again: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only --overwrite used to work: the folder (config.json, an empty metrics.jsonl) was
    taken for a finished run, and --resume found no last.pt."""

    def boom(*a: Any, **k: Any) -> torch.Tensor:
        raise RuntimeError("injected failure in the first step")

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(loop, "compute_loss", boom)
        with pytest.raises(RuntimeError, match="injected"):
            loop.train(_cfg(out, epochs=1), data=synthetic_data())
    assert (out / "config.json").is_file() and not (out / "last.pt").exists()
    (out / "notes.txt").write_text("mine")
    final = loop.train(_cfg(out, epochs=1), data=synthetic_data(), resume=again == "resume")
    assert final["epochs_run"] == 1 and (out / "best.pt").is_file()
    assert (out / "notes.txt").read_text() == "mine"  # only run files are replaced
    with pytest.raises(OutputError, match="already holds a run"):  # a run with a checkpoint stays protected
        loop.train(_cfg(out, epochs=1), data=synthetic_data())


def test_finetune_and_study_check_their_options_with_the_same_schema(tmp_path: Path) -> None:
    from fervid.training.finetune import finetune

    with pytest.raises(UserValueError, match="unknown training config key.*bogus"):
        finetune("fast", tmp_path / "x.csv", out=str(tmp_path / "ft"), bogus=1)  # was: TypeError (dataclass)
    with pytest.raises(UserValueError, match="grad_clip"):
        finetune("fast", tmp_path / "x.csv", out=str(tmp_path / "ft"), grad_clip=-1.0)
    assert not (tmp_path / "ft").exists()
    for bad, name in [
        ({"train_overrides": {"grad_clip": -1}}, "grad_clip"),
        ({"train_overrides": {"model_args": {"nope": 1}}}, "nope"),
        ({"train_overrides": {1: 2}}, "train_overrides"),
        ({"seeds": [-1]}, "seeds"),
        ({"epochs": 0}, "epochs"),
        ({"strategies": ["none", "smote"]}, "strategies"),
    ]:
        with pytest.raises(FervidError, match=name):
            StudyConfig(**bad).validate()


def test_study_and_finetune_refuse_overrides_of_their_own_arguments(
    pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--set epochs=3 was a TypeError (finetune() got multiple values) in finetune and silently
    replaced by the study's own --epochs in study."""
    rc, _, err = cli(
        ["finetune", "fast", "--data", str(pack), "--out", str(tmp_path / "ft"), "--set", "epochs=3"], capsys
    )
    assert_one_line_error(rc, err, "--set epochs")
    rc, _, err = cli(["study", "--data", str(pack), "--out", str(tmp_path / "st"), "--set", "epochs=3"], capsys)
    assert_one_line_error(rc, err, "--set epochs")


def test_train_refuses_a_key_given_by_set_and_by_its_flag(
    pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--epochs 1 --set epochs=5`` trained 1 epoch: the flag silently replaced the value of
    ``--set`` (a key given twice, like a duplicate YAML key, is refused)."""
    out = tmp_path / "run"
    for extra in (["--set", "epochs=5"], ["--set", "progress=true"], ["--seed", "3", "--set", "seed=4"]):
        rc, _, err = cli([*_train_cli(pack, out), *extra], capsys)
        assert_one_line_error(rc, err, f"--set {extra[-1].split('=')[0]}", "give it once")
        assert not out.exists()


def test_a_study_on_data_without_privatetest_is_refused_before_any_run(tmp_path: Path) -> None:
    """The table reports PrivateTest: a pack of Training + PublicTest trained every run, then
    crashed on a None score (TypeError) and a NaN summary (ValueError in json)."""
    from fervid.training.study import run_study

    cfg = StudyConfig(models=["fast_cnn"], strategies=["none"], seeds=[0], epochs=1, out=str(tmp_path / "st"))
    with pytest.raises(UserValueError, match="no PrivateTest split"):
        run_study(cfg, data=synthetic_data())
    assert not (tmp_path / "st" / "runs").exists()


# ------------------------------------------------------------------------- the schema


@pytest.mark.parametrize(
    "cls, schema", [(TrainConfig, TRAIN_SCHEMA), (AugmentConfig, AUGMENT_SCHEMA), (StudyConfig, STUDY_SCHEMA)]
)
def test_every_key_of_every_config_has_a_declared_rule(cls: type, schema: dict[str, Any]) -> None:
    assert set(schema) == {f.name for f in dataclasses.fields(cls)}


def test_a_key_without_a_rule_is_refused() -> None:
    @declare({"a": TRAIN_SCHEMA["epochs"]})
    @dataclasses.dataclass
    class Half:
        a: int = 1
        b: int = 2  # added without its rule

    with pytest.raises(TypeError, match="Half.b has no rule"):
        check_fields(Half())


# ------------------------------------------------------------------ property-based tests

_ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=3),
    max_leaves=8,
)
_KEYS = sorted(TRAIN_SCHEMA) + [f"augment.{k}" for k in sorted(AUGMENT_SCHEMA)]
_BOUNDED = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _as_config(key: str, value: Any) -> dict[str, Any]:
    head, _, sub = key.partition(".")
    return {head: {sub: value}} if sub else {head: value}


def _built(d: dict[str, Any]) -> TrainConfig | FervidError:
    try:
        cfg = TrainConfig.from_dict(d)
        cfg.validate()
        return cfg
    except FervidError as e:
        return e


@_BOUNDED
@given(key=st.sampled_from(_KEYS), value=_ANY_VALUE)
def test_any_value_for_any_key_is_taken_or_refused_by_name(key: str, value: Any) -> None:
    """Never a traceback: a value is either accepted -- then the config is finite, JSON-safe
    and round-trips -- or refused with an error naming the key."""
    got = _built(_as_config(key, value))
    if isinstance(got, FervidError):
        assert key.split(".")[-1] in str(got), (key, value, got)
        return
    text = json.dumps(got.to_dict(), allow_nan=False)  # what config.json and the checkpoint store
    assert TrainConfig.from_dict(json.loads(text)) == got


def _numeric_rules() -> list[tuple[str, Any, Any]]:
    out = []
    for name, rule in [*TRAIN_SCHEMA.items(), *((f"augment.{k}", r) for k, r in AUGMENT_SCHEMA.items())]:
        hint = typing.get_type_hints(AugmentConfig if name.startswith("augment.") else TrainConfig)[name.split(".")[-1]]
        if rule.lo is not None or rule.hi is not None:
            out.append((name, rule, hint))
    return out


_NUMERIC = _numeric_rules()


@_BOUNDED
@given(data=st.data(), which=st.integers(min_value=0, max_value=len(_NUMERIC) - 1))
def test_values_outside_a_declared_range_are_refused(data: st.DataObject, which: int) -> None:
    name, rule, hint = _NUMERIC[which]
    sides = []
    if rule.lo is not None:
        lo = rule.lo
        sides.append(st.floats(min_value=-1e12, max_value=lo).filter(lambda v: v < lo or (rule.lo_open and v == lo)))
    if rule.hi is not None:
        hi = rule.hi
        sides.append(st.floats(min_value=hi, max_value=1e12).filter(lambda v: v > hi or (rule.hi_open and v == hi)))
    x = data.draw(st.one_of(sides))
    is_int = int in typing.get_args(hint) or hint is int
    if is_int:
        x = math.floor(x) if rule.lo is not None and x < rule.lo else math.ceil(x)
    if "list" in str(hint) or "tuple" in str(hint):
        x = [x, x] if "tuple[float, float]" in str(hint) else [x]
    got = _built(_as_config(name, x))
    assert isinstance(got, FervidError) and name.split(".")[-1] in str(got), (name, x, got)


_FAMILIES = ["fast_cnn", "vgg_fer", "resnet18_fer", "convnext_fer"]


@_BOUNDED
@given(
    model=st.sampled_from(_FAMILIES),
    args=st.dictionaries(
        st.sampled_from(["widths", "width", "drop", "head", "hidden", "dims", "depths", "drop_path", "in_chans"])
        | st.text(max_size=6),
        _ANY_VALUE,
        max_size=3,
    ),
)
def test_any_model_args_are_taken_or_refused_by_name(model: str, args: dict[str, Any]) -> None:
    """Names and types against the family's signature: accepted, or an error naming model_args."""
    got = _built({"model": model, "model_args": args})
    if isinstance(got, FervidError):
        assert "model_args" in str(got), (model, args, got)
    else:
        from fervid.models import model_arguments

        assert set(args) <= set(model_arguments(model) or {})


@settings(max_examples=300, deadline=2000)
@given(text=st.text(max_size=80))
def test_any_recipe_text_is_a_config_or_a_named_error(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("r") / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path).validate()
    except FervidError as e:
        assert "recipe.yaml" in str(e) or "config" in str(e), e
