"""Fault injection, outputs (issue 12): outputs never overwrite an input, an existing run
needs --resume or --overwrite, every write is atomic, a file-system error on an output is one
line naming the path, and SIGTERM stops like Ctrl-C. Each case checks the exit status, the
message, the absence of a traceback and that inputs and earlier outputs are byte-for-byte
intact. Hermetic: synthetic images, videos, packs and untrained checkpoints."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faultkit import (
    REPO,
    assert_one_line_error,
    checkpoint_dict,
    cli,
    file_size_limit,
    fingerprint,
    leftovers,
    run_fervid,
    save_pt,
    small_filesystem,
    synthetic_data,
    write_image,
    write_pack,
    write_video,
)
from fervid.errors import FervidError, OutputError
from tolerances import U64, gamma


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERVID_CACHE", str(tmp_path / "cache"))


# --------------------------------------------------------------------- the safety module


def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    from fervid.safety import atomic_write, write_text_atomic

    dest = write_text_atomic(tmp_path / "result.json", '{"old": true}\n')
    before = fingerprint(dest)
    with pytest.raises(RuntimeError, match="boom"), atomic_write(dest, "w") as f:
        f.write('{"new": ')
        raise RuntimeError("boom")
    assert fingerprint(dest) == before and leftovers(tmp_path) == []
    with (
        pytest.raises(OutputError, match=r"cannot write .*result.json: no space left on the device"),
        atomic_write(dest) as f,
    ):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert fingerprint(dest) == before and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["under_a_file", "is_a_folder", "folder_is_a_file"])
def test_output_location_errors_name_the_path(tmp_path: Path, case: str) -> None:
    from fervid.safety import make_dir, preflight_output, write_text_atomic

    (tmp_path / "file.txt").write_text("keep me")
    (tmp_path / "folder").mkdir()
    if case == "under_a_file":
        for call in (
            lambda: write_text_atomic(tmp_path / "file.txt" / "x.json", "{}"),
            lambda: preflight_output(tmp_path / "file.txt" / "x.json"),
        ):
            with pytest.raises(OutputError, match=r"x.json: .*file.txt is a file, not a folder"):
                call()
    elif case == "is_a_folder":
        for call in (
            lambda: write_text_atomic(tmp_path / "folder", "{}"),
            lambda: preflight_output(tmp_path / "folder"),
        ):
            with pytest.raises(OutputError, match=r"folder: is a folder, not a file"):
                call()
    else:
        with pytest.raises(OutputError, match=r"file.txt: a file of that name exists"):
            make_dir(tmp_path / "file.txt")
        with pytest.raises(OutputError, match=r"file.txt as the output folder: it is a file"):
            preflight_output(tmp_path / "file.txt", folder=True)
    assert (tmp_path / "file.txt").read_text() == "keep me" and leftovers(tmp_path) == []


def test_check_not_input_sees_through_links_and_dots(tmp_path: Path) -> None:
    from fervid.safety import check_not_input

    src = write_image(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    os.symlink(src, tmp_path / "link.png")
    os.link(src, tmp_path / "hard.png")
    for alias in (src, tmp_path / "sub" / ".." / "a.png", tmp_path / "link.png", tmp_path / "hard.png"):
        with pytest.raises(OutputError, match="refusing to overwrite an input"):
            check_not_input(alias, [src, "default", None])
    check_not_input(tmp_path / "b.png", [src])  # another file: fine


def test_sigterm_as_interrupt_restores_the_handler() -> None:
    from fervid.safety import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises long before
    assert signal.getsignal(signal.SIGTERM) == before


# ------------------------------------------------------------------- outputs over inputs


def test_predict_out_into_the_input_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    same = tmp_path / "same"
    same.mkdir()
    for i in range(2):
        write_image(same / f"p{i}.jpg", seed=i)
    before = fingerprint(same)
    rc, _, err = cli(
        ["predict", str(same), "--out", str(same), "--model", "fast", "--backend", "torch", "--no-progress"], capsys
    )
    assert_one_line_error(rc, err, str(same / "p0.jpg"))
    assert "refusing to overwrite an input" in err
    assert fingerprint(same) == before
    # the same folder reached through a symlink
    os.symlink(same, tmp_path / "alias")
    rc, _, err = cli(
        ["predict", str(same / "p1.jpg"), "--out", str(tmp_path / "alias"), "--model", "fast", "--backend", "torch"],
        capsys,
    )
    assert_one_line_error(rc, err, "p1.jpg")
    assert fingerprint(same) == before


@pytest.mark.parametrize("flag", ["--out", "--csv", "--summary", "--plot"])
def test_video_outputs_never_overwrite_the_source(
    tmp_path: Path, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_video(tmp_path / "clip.mp4", frames=10)
    before = fingerprint(clip)
    rc, _, err = cli(
        ["video", str(clip), flag, str(clip), "--model", "fast", "--backend", "torch", "--no-show", "--no-progress"],
        capsys,
    )
    assert_one_line_error(rc, err, str(clip))
    assert fingerprint(clip) == before and leftovers(tmp_path) == []


def test_video_two_outputs_on_one_path_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = write_video(tmp_path / "clip.mp4", frames=10)
    rc, _, err = cli(
        [
            "video",
            str(clip),
            "--summary",
            str(tmp_path / "s.json"),
            "--csv",
            str(tmp_path / "s.json"),
            "--model",
            "fast",
            "--no-show",
            "--no-progress",
        ],
        capsys,
    )
    assert_one_line_error(rc, err, "s.json")
    assert not (tmp_path / "s.json").exists()


def test_calibrate_and_pack_never_overwrite_their_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = save_pt(checkpoint_dict(), tmp_path / "model.pt")
    pack = write_pack(tmp_path / "faces.npz")
    before = {**fingerprint(ck), **fingerprint(pack)}
    rc, _, err = cli(["calibrate", str(ck), "--data", str(pack), "--out", str(ck)], capsys)
    assert_one_line_error(rc, err, str(ck))
    for verb in (["data", "pack", str(pack), "--out", str(pack)], ["data", "show", str(pack), "--out", str(pack)]):
        rc, _, err = cli(verb, capsys)
        assert_one_line_error(rc, err, str(pack))
    assert {**fingerprint(ck), **fingerprint(pack)} == before and leftovers(tmp_path) == []


def test_batch_output_never_overwrites_its_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    img = write_image(tmp_path / "a.png")
    manifest = tmp_path / "list.parquet"
    pq.write_table(pa.table({"path": [str(img)]}), manifest)
    before = {**fingerprint(manifest), **fingerprint(img)}
    rc, _, err = cli(
        ["batch", str(manifest), "--out", str(manifest), "--model", "fast", "--backend", "torch", "--no-progress"],
        capsys,
    )
    assert_one_line_error(rc, err, str(manifest))
    assert {**fingerprint(manifest), **fingerprint(img)} == before and leftovers(tmp_path) == []


# ------------------------------------------------------------------------- run folders


def test_train_into_an_existing_run_needs_resume_or_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    save_pt(checkpoint_dict(), run / "best.pt")
    before = fingerprint(run)
    pack = write_pack(tmp_path / "faces.npz")
    rc, _, err = cli(
        ["train", "--data", str(pack), "--out", str(run), "--epochs", "1", "--device", "cpu", "--no-progress"], capsys
    )
    assert_one_line_error(rc, err, str(run), "--resume", "--overwrite")
    assert fingerprint(run) == before
    rc, _, err = cli(["finetune", "fast", "--data", str(pack), "--out", str(run), "--epochs", "1"], capsys)
    assert_one_line_error(rc, err, str(run))
    assert fingerprint(run) == before
    rc, _, err = cli(["train", "--data", str(pack), "--out", str(run), "--resume", "--overwrite"], capsys)
    assert rc == 2 and "not allowed with" in err


@pytest.mark.slow  # 20-40 s on 2 loaded cores: make test-slow (CI) runs it
def test_overwrite_replaces_the_run_and_keeps_other_files(tmp_path: Path) -> None:
    from fervid.training.config import TrainConfig
    from fervid.training.loop import train

    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n' * 5)
    cfg = TrainConfig(out=str(run), epochs=1, batch_size=32, device="cpu", progress=False, eval_private=False)
    with pytest.raises(OutputError, match="already holds a run"):
        train(cfg, data=synthetic_data())
    train(cfg, data=synthetic_data(), overwrite=True)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # the new run's log only
    assert (run / "notes.txt").read_text() == "mine" and (run / "best.pt").is_file()
    assert leftovers(run) == []


# ---------------------------------------------------------------- file-system errors


@pytest.mark.parametrize(
    "verb",
    [
        "predict",
        "data-pack",
        "data-show",
        "export",
        "evaluate",
        "calibrate",
        "train",
        "video-csv",
        "video-summary",
        "video-out",
        "video-plot",
    ],
)
def test_output_under_a_regular_file_is_one_named_line(
    tmp_path: Path, verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ENOTDIR everywhere: the output path runs through a regular file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    bad = blocker / "sub"
    img = write_image(tmp_path / "in.png")
    pack = write_pack(tmp_path / "faces.npz")
    ck = save_pt(checkpoint_dict(), tmp_path / "model.pt")
    clip = write_video(tmp_path / "clip.mp4", frames=5) if verb.startswith("video") else None
    argv = {
        "predict": ["predict", str(img), "--out", str(bad), "--model", "fast", "--backend", "torch"],
        "data-pack": ["data", "pack", str(pack), "--out", str(bad / "p.npz")],
        "data-show": ["data", "show", str(pack), "--out", str(bad / "g.png")],
        "export": ["export", str(ck), "--out", str(bad / "m.onnx"), "--no-check"],
        "evaluate": ["evaluate", str(ck), "--data", str(pack), "--split", "PublicTest", "--out", str(bad)],
        "calibrate": ["calibrate", str(ck), "--data", str(pack), "--out", str(bad / "c.pt")],
        "train": ["train", "--data", str(pack), "--out", str(bad), "--epochs", "1", "--device", "cpu"],
        "video-csv": ["video", str(clip), "--csv", str(bad / "t.csv"), "--model", "fast", "--no-show"],
        "video-summary": [
            "video",
            str(clip),
            "--summary",
            str(bad / "s.json"),
            "--model",
            "fast",
            "--no-show",
            "--no-progress",
        ],
        "video-out": ["video", str(clip), "--out", str(bad / "a.mp4"), "--model", "fast", "--no-show"],
        "video-plot": ["video", str(clip), "--plot", str(bad / "p.png"), "--model", "fast", "--no-show"],
    }[verb]
    before = fingerprint(tmp_path)
    rc, _, err = cli(argv, capsys)
    assert_one_line_error(rc, err, str(blocker))
    after = fingerprint(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("cache")} == {
        k: v for k, v in before.items() if not k.startswith("cache")
    }


@pytest.mark.parametrize("verb", ["data-pack", "calibrate", "export"])
def test_output_that_is_a_folder_is_one_named_line(
    tmp_path: Path, verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """EISDIR: a folder where the output file should go; the folder is left alone."""
    pack = write_pack(tmp_path / "faces.npz")
    ck = save_pt(checkpoint_dict(), tmp_path / "model.pt")
    target = tmp_path / ("out.onnx" if verb == "export" else "out.npz" if verb == "data-pack" else "out.pt")
    target.mkdir()
    (target / "inside.txt").write_text("keep")
    argv = {
        "data-pack": ["data", "pack", str(pack), "--out", str(target)],
        "calibrate": ["calibrate", str(ck), "--data", str(pack), "--out", str(target)],
        "export": ["export", str(ck), "--out", str(target), "--no-check"],
    }[verb]
    rc, _, err = cli(argv, capsys)
    assert_one_line_error(rc, err, str(target))
    assert "is a folder" in err and (target / "inside.txt").read_text() == "keep"


def test_full_disk_during_predict_leaves_no_truncated_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real full tmpfs where mounting one is allowed, else a simulated ENOSPC mid-write."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        write_image(src / f"p{i}.png", size=256, seed=i)
    before = fingerprint(src)
    with small_filesystem(tmp_path, "64k") as mnt:
        if mnt is None:
            from PIL import Image

            real_save = Image.Image.save

            def full_disk(self, fp, *a, **k):  # write part of the file, then fail like a full disk
                real_save(self, fp, *a, **k)
                with open(fp, "r+b") as f:
                    f.truncate(100)
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(Image.Image, "save", full_disk)
            out = tmp_path / "out"
        else:
            out = mnt / "out"
        rc, _, err = cli(
            ["predict", str(src), "--out", str(out), "--model", "fast", "--backend", "torch", "--no-progress"], capsys
        )
        assert_one_line_error(rc, err, "no space left on the device")
        written = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        from PIL import Image as PILImage

        for name in written:  # whatever is there is a whole image, never a truncated one
            with PILImage.open(out / name) as im:
                im.load()
        assert leftovers(out) == [] if out.is_dir() else True
    assert fingerprint(src) == before


def test_file_size_limit_keeps_the_earlier_pack(tmp_path: Path) -> None:
    """EFBIG from the kernel (RLIMIT_FSIZE) while writing a pack: the earlier pack at that
    path is byte-for-byte intact, no temporary file is left, one named line."""
    pack = write_pack(tmp_path / "faces.npz", n_train=2000, n_val=200)
    earlier = write_pack(tmp_path / "out.npz", n_train=10, n_val=10, seed=1)
    before = fingerprint(earlier)
    r = run_fervid(["data", "pack", str(pack), "--out", str(earlier)], cwd=tmp_path, preexec_fn=file_size_limit(20_000))
    assert_one_line_error(r.returncode, r.stderr, str(earlier), "file too large")
    assert fingerprint(earlier) == before and leftovers(tmp_path) == []


def test_save_atomic_on_a_full_disk_keeps_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from fervid.models.checkpoint import save_atomic

    dest = tmp_path / "best.pt"
    save_atomic(checkpoint_dict(0), dest)
    before = fingerprint(dest)
    with small_filesystem(tmp_path, "128k") as mnt:
        if mnt is not None:
            target = mnt / "best.pt"
            with pytest.raises(OutputError, match=r"best.pt: no space left on the device"):
                save_atomic(checkpoint_dict(1), target)
            assert not target.exists() and leftovers(mnt) == []
    real = torch.save

    def full(obj, f, *a, **k):
        real(obj, f, *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OutputError, match="no space left"):
        save_atomic(checkpoint_dict(1), dest)
    assert fingerprint(dest) == before and leftovers(tmp_path) == []


def test_failed_export_leaves_no_onnx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    pytest.importorskip("onnxruntime")
    ck = save_pt(checkpoint_dict(), tmp_path / "model.pt")

    def full(proto, path, *a, **k):
        Path(path).write_bytes(b"")  # what a failed save leaves: 0 bytes
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", full)
    rc, _, err = cli(["export", str(ck), "--out", str(tmp_path / "m.onnx"), "--no-check"], capsys)
    assert_one_line_error(rc, err, "m.onnx", "no space left")
    assert not (tmp_path / "m.onnx").exists() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- signals


def _wait_for(cond, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited early ({proc.returncode}): {err[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail("timed out waiting for the job to start")
        time.sleep(0.1)


def _popen(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "FERVID_CACHE": str(cwd / "cache")}
    return subprocess.Popen(
        [sys.executable, "-m", "fervid", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_during_video_finalises_the_mp4_and_writes_the_summary(tmp_path: Path) -> None:
    import cv2

    clip = write_video(tmp_path / "clip.mp4", frames=3000, size=(64, 64))
    before = fingerprint(clip)
    csv, out, summary = tmp_path / "t.csv", tmp_path / "annotated.mp4", tmp_path / "s.json"
    proc = _popen(
        [
            "video",
            str(clip),
            "--out",
            str(out),
            "--csv",
            str(csv),
            "--summary",
            str(summary),
            "--detector",
            "skip",
            "--model",
            "fast",
            "--backend",
            "torch",
            "--no-show",
            "--no-progress",
        ],
        tmp_path,
    )
    _wait_for(lambda: csv.is_file() and len(csv.read_text().splitlines()) > 20, proc, 120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    s = json.loads(summary.read_text())
    assert s["stop_reason"] == "interrupted" and 20 <= s["frames_processed"] < 3000
    cap = cv2.VideoCapture(str(out))  # the container was finalised: it opens and plays
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n >= 20
    assert fingerprint(clip) == before and leftovers(tmp_path) == []


@pytest.mark.slow  # 20-40 s on 2 loaded cores: make test-slow (CI) runs it
def test_sigterm_during_train_keeps_a_resumable_run(tmp_path: Path) -> None:
    import torch

    pack = write_pack(tmp_path / "faces.npz", n_train=480, n_val=60)
    run = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(pack),
        "--out",
        str(run),
        "--model",
        "fast_cnn",
        "--epochs",
        "200",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--no-progress",
    ]
    proc = _popen(argv, tmp_path)
    _wait_for(lambda: (run / "last.pt").is_file(), proc, 180)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    ck = torch.load(run / "last.pt", weights_only=True)  # whole and loadable
    assert ck["epoch"] >= 1 and leftovers(run) == []
    done = ck["epoch"]
    r = run_fervid(
        argv[:-5] + ["--epochs", str(done + 1), "--batch-size", "32", "--device", "cpu", "--no-progress", "--resume"],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "final.json").read_text())["epochs_run"] == done + 1


# ------------------------------------------------------------------ argument validation


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["train", "--data", "x", "--epochs", "0"], "--epochs"),
        (["train", "--data", "x", "--batch-size", "0"], "--batch-size"),
        (["train", "--data", "x", "--max-train-samples", "0"], "--max-train-samples"),
        (["train", "--data", "x", "--lr", "-1"], "--lr"),
        (["finetune", "fast", "--data", "x", "--epochs", "-3"], "--epochs"),
        (["finetune", "fast", "--data", "x", "--val-fraction", "1"], "--val-fraction"),
        (["study", "--data", "x", "--max-train-samples", "0"], "--max-train-samples"),
        (["study", "--data", "x", "--epochs", "0"], "--epochs"),
        (["evaluate", "m.pt", "--data", "x", "--max-images", "0"], "--max-images"),
        (["evaluate", "m.pt", "--data", "x", "--batch-size", "0"], "--batch-size"),
        (["export", "m.pt", "--out", "m.onnx", "--min-agreement", "1.5"], "--min-agreement"),
        (["export", "m.pt", "--out", "m.onnx", "--n-calibration", "0"], "--n-calibration"),
        (["export", "m.pt", "--out", "m.onnx", "--fp32-tail", "nan"], "--fp32-tail"),
        (["predict", "x.jpg", "--threshold", "0"], "--threshold"),
        (["video", "x.mp4", "--every", "0"], "--every"),
        (["video", "x.mp4", "--smooth", "2"], "--smooth"),
        (["video", "x.mp4", "--max-seconds", "-1"], "--max-seconds"),
        (["video", "x.mp4", "--detect-every", "0"], "--detect-every"),
        (["data", "show", "x", "--out", "g.png", "--per-class", "0"], "--per-class"),
    ],
)
def test_out_of_range_arguments_are_refused_by_the_parser(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = cli(argv, capsys)
    assert rc == 2 and f"argument {flag}" in err and "Traceback" not in err


def test_training_config_ranges_and_warmup_only_runs(tmp_path: Path) -> None:
    from fervid.training.config import TrainConfig
    from fervid.training.loop import train

    for bad in ({"epochs": 0}, {"batch_size": 0}, {"max_train_samples": 0}, {"lr": 0.0}, {"warmup_epochs": -1.0}):
        with pytest.raises(FervidError, match=next(iter(bad))):
            TrainConfig(**bad).validate()
    # 40 images in one batch for one epoch: the only step falls at the start of the warm-up (lr 0)
    cfg = TrainConfig(out=str(tmp_path / "r"), epochs=1, batch_size=64, device="cpu", progress=False)
    with pytest.raises(FervidError, match="learn nothing"):
        train(cfg, data=synthetic_data(n_train=40, n_val=14))
    assert not (tmp_path / "r" / "best.pt").exists()


@pytest.mark.parametrize(
    "text,match", [("epochs: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "expected a mapping"), (None, "no such file")]
)
def test_yaml_config_errors_are_one_line(
    tmp_path: Path, text: str | None, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    if text is not None:
        cfg.write_text(text)
    rc, _, err = cli(["train", "--config", str(cfg), "--data", "x", "--out", str(tmp_path / "r")], capsys)
    assert_one_line_error(rc, err, str(cfg))
    assert match in err


def test_fifos_are_refused_before_they_are_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Opening a FIFO blocks until a writer comes: each of these would hang without the check."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    ok = write_image(tmp_path / "ok.png")
    rc, out, err = cli(["predict", str(fifo), str(ok), "--model", "fast", "--backend", "torch", "--json"], capsys)
    assert rc == 1 and "FIFO" in err and str(fifo) in err and "Traceback" not in err
    assert json.loads(out.splitlines()[0])["path"] == str(ok)  # the other file was still processed
    for argv in (
        ["data", "info", str(fifo)],
        ["video", str(fifo), "--model", "fast", "--no-show"],
        ["train", "--config", str(fifo), "--data", "x"],
        ["evaluate", str(fifo), "--data", str(write_pack(tmp_path / "faces.npz"))],
    ):
        rc, _, err = cli(argv, capsys)
        assert_one_line_error(rc, err, str(fifo))
        assert "FIFO" in err


def test_negative_camera_index_is_refused_before_opencv() -> None:
    from fervid.inference.recognizer import EmotionRecognizer

    rec = EmotionRecognizer("fast", backend="torch")
    with pytest.raises(FervidError, match="camera index must be 0 or more, got -5"):
        next(iter(rec.stream(-5)))


def test_cuda_on_a_cpu_build_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    img = write_image(tmp_path / "a.png")
    rc, _, err = cli(["predict", str(img), "--model", "fast", "--device", "cuda"], capsys)
    assert_one_line_error(rc, err, "cuda")


def test_missing_optional_detector_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    if importlib.util.find_spec("dlib") is not None:
        pytest.skip("dlib is installed here")
    img = write_image(tmp_path / "a.png")
    rc, _, err = cli(["predict", str(img), "--model", "fast", "--backend", "torch", "--detector", "dlib"], capsys)
    assert_one_line_error(rc, err, "dlib")


def test_cli_errors_have_no_traceback_end_to_end(tmp_path: Path) -> None:
    """The real process: an unwritable output and a bad checkpoint, each one line, status 1."""
    blocker = tmp_path / "f"
    blocker.write_text("x")
    pack = write_pack(tmp_path / "faces.npz")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02not a checkpoint")
    for argv, name in (
        (["data", "pack", str(pack), "--out", str(blocker / "p.npz")], str(blocker)),
        (["predict", str(write_image(tmp_path / "a.png")), "--model", str(bad)], str(bad)),
    ):
        r = run_fervid(argv, cwd=tmp_path, env={"FERVID_CACHE": str(tmp_path / "cache")})
        assert_one_line_error(r.returncode, r.stderr, name)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_predict_json_is_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = write_image(tmp_path / "a.png", size=64)
    rc, out, _ = cli(
        ["predict", str(img), "--model", "fast", "--backend", "torch", "--detector", "skip", "--json"], capsys
    )
    assert rc == 0

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-JSON constant {name} in the output")

    face = json.loads(out, parse_constant=no_constants)["faces"][0]
    k = len(face["probabilities"])  # a float64 softmax and its sum (as test_predict)
    assert abs(sum(face["probabilities"].values()) - 1) <= gamma(3 * k, U64)
