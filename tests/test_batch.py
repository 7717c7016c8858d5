"""fervid batch (issue 16): rows built from the recognizer's typed results, the same rows from
the local engine and from Ray Data on a local Ray cluster, resuming after a crash or a kill
without duplicates, and bad files in the errors table."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from fervid.batch import BatchOptions, OutputPaths, list_sources, run_batch  # noqa: E402

PHOTOS = ("obama-480p.jpg", "two_people.jpg", "obama_and_biden.jpg", "lin-manuel-miranda.png")
OPTIONS = BatchOptions(model="fast", video_every=10)  # every 10th frame of the clip: 28 frames


@pytest.fixture(scope="module")
def corpus(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos and the media clip, a file that is not an image and a truncated video."""
    media = data_root / "media"
    root = tmp_path_factory.mktemp("corpus")
    (root / "photos").mkdir()
    for f in PHOTOS:
        shutil.copy(media / f, root / "photos" / f)
    (root / "photos" / "not-a-photo.jpg").write_text("this is text")
    shutil.copy(media / "short_hamilton_clip.mp4", root / "clip.mp4")
    data = (media / "short_hamilton_clip.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return root


@pytest.fixture(scope="module")
def local_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "r.parquet"
    run_batch(corpus, out, options=OPTIONS, engine="local", progress=False)
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance with 2 CPUs for the module (Ray starts in seconds, not milliseconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    """Equal, floats included: every engine runs ``process_sources`` on the same files with the
    same options, so each face is classified in the same batch by an onnxruntime session of the
    same (default) thread count, which splits work by output element, never inside a sum; the
    Ray actors' one torch / OpenCV thread changes no value (the fast model runs on onnxruntime,
    OpenCV splits images by rows). Nothing is summed in another order, so nothing may differ."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            same = ra[k] == rb[k] or (isinstance(ra[k], float) and math.isnan(ra[k]) and math.isnan(rb[k]))
            assert same, (ra["source"], k, ra[k], rb[k])


def test_rows_are_the_recognizers_results(corpus: Path, local_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from fervid.inference.recognizer import EmotionRecognizer
    from fervid.models.checkpoint import load_model
    from tolerances import parity_bound, spy_on_crops

    table = rows(local_run)
    rec = EmotionRecognizer(model="fast")
    photo = corpus / "photos" / "two_people.jpg"
    mine = [r for r in table if r["source"] == str(photo)]
    crops = spy_on_crops(rec, monkeypatch)
    expected = rec.predict(photo)
    assert len(mine) == len(expected.faces) == 2
    for r, f in zip(mine, expected.faces):
        d = f.to_dict()
        assert (r["x"], r["y"], r["w"], r["h"]) == tuple(d["box"].values()) and r["label"] == d["label"]
        # a photo is a one-frame video in the table: frame 0, time 0, smoothed = probabilities
        assert r["labels_above"] == d["labels_above"] and r["kind"] == "image" and r["frame"] == 0
        assert r["time"] == 0.0 and r["key_frame"] is True and r["raw_label"] == r["label"]
        assert all(r[f"smoothed_{lab}"] == r[f"p_{lab}"] for lab in d["probabilities"])
    # the batch classifies the same crops, in batches of its own: float32 sums in another order,
    # within the parity bound derived from the network (tests/tolerances.py)
    labels = list(expected.faces[0].probabilities)
    want = np.array([[f.probabilities[k] for k in labels] for f in expected.faces])
    got = np.array([[r[f"p_{k}"] for k in labels] for r in mine])
    bound = parity_bound(load_model("fast"), crops[0], want, got)
    assert (np.abs(got - want) <= bound).all(), (np.abs(got - want).max(), bound.min())
    video = [r for r in table if r["source"] == str(corpus / "clip.mp4")]
    frames = list(rec.stream(corpus / "clip.mp4", every=10))
    assert len(video) == sum(len(fr.faces) for fr in frames) > 0
    assert sorted({r["frame"] for r in video}) == [fr.index for fr in frames if fr.faces]
    assert {r["frame"] % 10 for r in video} == {0} and all(r["time"] is not None and r["face_id"] for r in video)
    # one row per (source, frame, face); sources and errors side tables
    keys = [(r["source"], r["frame"], r["face"]) for r in table]
    assert len(keys) == len(set(keys))
    paths = OutputPaths.of(local_run)
    status = {Path(r["source"]).name: r for r in rows(paths.sources)}
    assert len(status) == len(list_sources(corpus)) == 7
    errors = {Path(r["source"]).name: r for r in rows(paths.errors)}
    assert set(errors) == {"not-a-photo.jpg", "truncated.mp4"}  # reported, and the run went on
    assert (
        errors["not-a-photo.jpg"]["error_type"] == "ImageLoadError"
        and "not-a-photo.jpg" in errors["not-a-photo.jpg"]["error"]
    )
    assert status["clip.mp4"]["status"] == "ok" and status["clip.mp4"]["frames"] == len(frames)
    assert not paths.parts.exists()  # merged and cleaned up


@pytest.mark.slow  # 20-40 s on 2 loaded cores: make test-slow (CI) runs it
def test_ray_engine_gives_the_local_rows(ray_cluster, corpus: Path, local_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ray.parquet"
    summary = run_batch(corpus, out, options=OPTIONS, engine="ray", workers=2, chunk_size=1, progress=False)
    assert summary.workers == 2 and summary.processed == 7 and summary.errors == 2
    assert_same_rows(rows(local_run), rows(out))
    for side in ("sources", "errors"):
        a, b = rows(getattr(OutputPaths.of(local_run), side)), rows(getattr(OutputPaths.of(out), side))
        assert [(r["source"], r["status"]) for r in a] == [(r["source"], r["status"]) for r in b]


def test_crash_then_rerun_completes_without_duplicates(
    corpus: Path, local_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after 3 committed sources; the second run does only the other 4."""
    import fervid.batch as batch

    out = tmp_path / "r.parquet"
    real = batch.process_sources
    calls = []

    def crashing(rec, sources, options):
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        calls.append(1)
        return real(rec, sources, options)

    monkeypatch.setattr(batch, "process_sources", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_batch(corpus, out, options=OPTIONS, chunk_size=1, flush_every=1, progress=False)
    assert not out.exists() and len(list(OutputPaths.of(out).parts.glob("*.sources.parquet"))) == 3
    monkeypatch.setattr(batch, "process_sources", real)
    again = run_batch(corpus, out, options=OPTIONS, chunk_size=1, flush_every=1, progress=False)
    assert (again.done_earlier, again.processed) == (3, 4)
    assert_same_rows(rows(local_run), rows(out))
    # A third run finds everything done and leaves the output as it is.
    third = run_batch(corpus, out, options=OPTIONS, progress=False)
    assert (third.done_earlier, third.processed) == (7, 0)
    assert_same_rows(rows(local_run), rows(out))
    with pytest.raises(ValueError, match="other settings"):
        run_batch(corpus, out, options=BatchOptions(model="default", video_every=10), progress=False)


def test_killed_cli_run_resumes(corpus: Path, local_run: Path, tmp_path: Path) -> None:
    """``kill -9`` of ``fervid batch`` once its first part is committed, then the same command
    again: the output equals an uninterrupted run's, with no source twice."""
    out = tmp_path / "r.parquet"
    cmd = [
        sys.executable,
        "-m",
        "fervid",
        "batch",
        str(corpus),
        "--out",
        str(out),
        "--model",
        "fast",
        "--video-every",
        "10",
        "--chunk-size",
        "1",
        "--flush-every",
        "1",
        "--no-progress",
    ]
    parts = OutputPaths.of(out).parts
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(parts.glob("*.sources.parquet")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = sum(pq.read_table(f).num_rows for f in parts.glob("*.sources.parquet"))
    assert 1 <= done < 7 and not out.exists()  # killed halfway
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr  # 1: the two bad files
    assert f'"done_earlier": {done}' in r.stdout
    assert_same_rows(rows(local_run), rows(out))


def test_manifest_and_cli_errors(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fervid.cli import main

    manifest = tmp_path / "m.csv"
    manifest.write_text("path,note\n" + "".join(f"{corpus / 'photos' / p},x\n" for p in PHOTOS[:2]))
    assert [s.path for s in list_sources(manifest)] == sorted(str(corpus / "photos" / p) for p in PHOTOS[:2])
    pq.write_table(pa.table({"path": ["photos/two_people.jpg"]}), corpus / "m.parquet")  # relative to the manifest
    assert [s.path for s in list_sources(corpus / "m.parquet")] == [str(corpus / "photos" / "two_people.jpg")]
    (corpus / "m.parquet").unlink()
    assert main(["batch", str(tmp_path / "nope"), "--out", str(tmp_path / "r.parquet")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["batch", str(manifest), "--out", str(tmp_path / "r.parquet"), "--model", "fast", "--no-progress"]) == 0
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 3  # 1 + 2 faces
