"""Fault injection, round 2 (issue 25, outputs, batch and video): every writer of media reads
back what it wrote before it reports success (a full disk under ``fervid video --out`` is an
error, never ``wrote``); a file's timestamps come from its frame rate, never the wall clock;
``fervid batch`` owns its working folder by a marker (it never deletes what it did not
create), merges crash-safely (each row once after a kill at any point), identifies sources by
their resolved path and reads manifests by one explicit rule; unwritable and read-only
outputs are refused with the path, tested as an unprivileged user (root ignores permissions).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faultkit import (
    BATCH_KILLED_AFTER_SOURCES,
    REPO,
    assert_one_line_error,
    cli,
    fingerprint,
    leftovers,
    run_fervid,
    small_filesystem,
    unprivileged_prefix,
    write_image,
    write_video,
)
from fervid.errors import OutputError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERVID_CACHE", str(tmp_path / "cache"))


def _quiet(err: str) -> str:
    """stderr without OpenCV/FFmpeg's own warning lines."""
    return "\n".join(ln for ln in err.splitlines() if "WARN" not in ln and not ln.startswith("[mov,"))


# --------------------------------------------------------------------- media read back


def test_verify_video_and_image_refuse_what_does_not_decode(tmp_path: Path) -> None:
    from fervid.data.imagefile import verify_image
    from fervid.inference.draw import verify_video

    clip = write_video(tmp_path / "clip.mp4", frames=30)
    verify_video(clip, 30)
    with pytest.raises(ValueError, match="holds 30 readable frames, not the 31"):
        verify_video(clip, 31)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # no index: what a full disk leaves
    with pytest.raises(ValueError, match="cannot be opened"):
        verify_video(cut, 30)
    png = write_image(tmp_path / "p.png", size=64)
    verify_image(png, (64, 64))
    with pytest.raises(ValueError, match="64x64, not 32x32"):
        verify_image(png, (32, 32))
    (tmp_path / "short.png").write_bytes(png.read_bytes()[:200])
    with pytest.raises(ValueError, match="does not decode"):
        verify_image(tmp_path / "short.png")


def test_atomic_path_verify_keeps_the_earlier_file(tmp_path: Path) -> None:
    from fervid.safety import atomic_path

    dest = tmp_path / "a.txt"
    dest.write_text("earlier")

    def reject(p: Path) -> None:
        raise ValueError("what was written does not read back")

    with pytest.raises(OutputError, match=r"cannot write .*a.txt: what was written does not read back"):
        with atomic_path(dest, verify=reject) as tmp:
            tmp.write_text("new")
    assert dest.read_text() == "earlier" and leftovers(tmp_path) == []


@pytest.mark.parametrize("when", ["fills_up", "already_full"])
def test_video_out_on_a_full_disk_is_an_error_not_wrote(tmp_path: Path, when: str) -> None:
    """``fervid video clip.mp4 --out full/a.mp4`` on a 1 MB tmpfs: OpenCV's writer only warns,
    and the container is left without its index. The read-back catches it: exit 1, the path
    and the reason named, no file left, and the other outputs (elsewhere) still written."""
    clip = write_video(tmp_path / "clip.mp4", frames=90, size=(320, 240))  # ~3 MB of mp4v noise
    with small_filesystem(tmp_path, "1m") as mnt:
        if mnt is None:
            pytest.skip("mounting a tmpfs is not permitted here (needs root with mount rights)")
        if when == "already_full":
            fd = os.open(mnt / ".filler", os.O_WRONLY | os.O_CREAT)
            try:
                with pytest.raises(OSError):
                    while True:
                        os.write(fd, b"\0" * 4096)
            finally:
                os.close(fd)
        r = run_fervid(
            ["video", str(clip), "--out", str(mnt / "a.mp4"), "--summary", str(tmp_path / "s.json")]
            + ["--model", "fast", "--backend", "torch", "--no-progress"],
            cwd=tmp_path,
        )
        err = _quiet(r.stderr)
        assert_one_line_error(r.returncode, err, str(mnt / "a.mp4"))
        assert "no space left on the device" in err and "wrote" not in r.stdout
        assert [p.name for p in mnt.iterdir()] in ([], [".filler"])  # neither a.mp4 nor a temporary file
    assert (tmp_path / "s.json").is_file()  # the summary holds what was processed


def test_video_csv_on_a_full_disk_names_the_path(data_root: Path, tmp_path: Path) -> None:
    clip = data_root / "media" / "short_hamilton_clip.mp4"
    with small_filesystem(tmp_path, "8k") as mnt:
        if mnt is None:
            pytest.skip("mounting a tmpfs is not permitted here (needs root with mount rights)")
        r = run_fervid(
            ["video", str(clip), "--csv", str(mnt / "t.csv"), "--summary", str(tmp_path / "s.json")]
            + ["--max-seconds", "3", "--model", "fast", "--backend", "torch", "--no-progress"],
            cwd=tmp_path,
        )
        assert_one_line_error(r.returncode, _quiet(r.stderr), str(mnt / "t.csv"))
        assert "no space left on the device" in r.stderr
    assert (tmp_path / "s.json").is_file()


def test_annotated_photo_that_does_not_read_back_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writer that reports success but leaves a short file (a full network disk, a quota
    hit at close): ``predict --out`` decodes each copy before it is renamed into place."""
    from PIL import Image

    photo = write_image(tmp_path / "p.png", size=128)
    real_save = Image.Image.save

    def silently_short(self, fp, *a, **k):
        real_save(self, fp, *a, **k)
        with open(fp, "r+b") as f:
            f.truncate(300)

    monkeypatch.setattr(Image.Image, "save", silently_short)
    out = tmp_path / "out"
    rc, _, err = cli(["predict", str(photo), "--out", str(out), "--model", "fast", "--backend", "torch"], capsys)
    assert_one_line_error(rc, err, str(out / "p.png"))
    assert "does not decode" in err and list(out.iterdir()) == []


@pytest.mark.parametrize("writer", ["data-show grid", "video plot", "study plot"])
def test_every_image_writer_reads_back_what_it_wrote(
    writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plot or sample grid whose writer reported success but left a short file (a quota hit
    at close, a full network disk) was renamed into place and reported written; like an
    annotated photo, it is now decoded back first: a named error, no file, no temporary."""
    from matplotlib.figure import Figure

    from faultkit import synthetic_data

    real = Figure.savefig

    def silently_short(self, fname, *a, **k):
        real(self, fname, *a, **k)
        with open(fname, "r+b") as f:
            f.truncate(300)

    monkeypatch.setattr(Figure, "savefig", silently_short)
    if writer == "data-show grid":
        from fervid.data.plots import sample_grid

        dest = tmp_path / "grid.png"
        write = lambda: sample_grid(synthetic_data(n_train=70, n_val=0), dest, per_class=2)  # noqa: E731
    elif writer == "video plot":
        from fervid.emotions import FER2013
        from fervid.inference.video import Timeline, plot_timeline

        dest = tmp_path / "plot.png"
        write = lambda: plot_timeline(Timeline(FER2013), dest)  # noqa: E731
    else:
        from fervid.training.study import write_outputs

        dest = tmp_path / "study" / "study.png"
        dest.parent.mkdir()
        write = lambda: write_outputs([], dest.parent)  # noqa: E731
    with pytest.raises(OutputError, match=rf"cannot write .*{dest.name}: the written image does not decode"):
        write()
    assert not dest.exists() and leftovers(tmp_path) == []


def test_a_vector_plot_is_written_without_an_image_check(tmp_path: Path) -> None:
    """``--plot t.svg``/``t.pdf`` stay what the user asked for (Pillow decodes neither)."""
    from fervid.emotions import FER2013
    from fervid.inference.video import Timeline, plot_timeline

    for name in ("t.svg", "t.pdf"):
        plot_timeline(Timeline(FER2013), tmp_path / name)
    assert (tmp_path / "t.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "t.pdf").read_bytes().startswith(b"%PDF")


# --------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("fps", [1000.0, 2400.0])
def test_high_frame_rate_file_gets_its_own_timestamps(tmp_path: Path, fps: float) -> None:
    """A 1000 fps file: frame 29 at 0.029 s (it was 0.16-0.33 s, the wall clock)."""
    from fervid import EmotionRecognizer

    clip = write_video(tmp_path / "fast.mp4", frames=40, fps=fps)
    with EmotionRecognizer("fast", backend="torch").stream(clip, every=3) as s:
        frames = list(s)
    assert s.info.fps == fps
    assert [f.index for f in frames] == list(range(0, 40, 3))
    assert [f.time for f in frames] == [i / fps for i in range(0, 40, 3)]
    assert all(f.duration == 3 / fps for f in frames)


def test_file_without_a_frame_rate_uses_container_times(tmp_path: Path) -> None:
    """Where a file reports no usable rate, its container's timestamps (never the wall clock)."""
    from fervid.inference.video import _CaptureReader

    clip = write_video(tmp_path / "c.mp4", frames=10, fps=25.0)
    reader = _CaptureReader(clip)
    stamps = []
    while reader.read() is not None:
        stamps.append(reader.timestamp())
    reader.release()
    assert stamps == pytest.approx([i / 25.0 for i in range(10)], abs=0.5e-3)  # ms resolution


# --------------------------------------------------------------------- batch: working folder


@pytest.fixture()
def photos(data_root: Path, tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("obama-480p.jpg", "two_people.jpg"):
        shutil.copy(data_root / "media" / name, corpus / name)
    return corpus


def test_batch_never_deletes_a_parts_folder_it_did_not_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``fervid batch x.parquet.parts --out x.parquet`` deleted its own input (and the notes in
    it); a folder of that name that is not an input is not used either."""
    folder = tmp_path / "x.parquet.parts"
    folder.mkdir()
    write_image(folder / "a.png")
    (folder / "notes.txt").write_text("my notes")
    before = fingerprint(folder)
    out = tmp_path / "x.parquet"
    rc, _, err = cli(["batch", str(folder), "--out", str(out), "--model", "fast", "--no-progress"], capsys)
    assert_one_line_error(rc, err, str(folder))
    other = tmp_path / "in"
    other.mkdir()
    write_image(other / "b.png")
    rc, _, err = cli(["batch", str(other), "--out", str(out), "--model", "fast", "--no-progress"], capsys)
    assert_one_line_error(rc, err, str(folder))
    assert "was not made by fervid batch" in err
    assert fingerprint(folder) == before and not out.exists()


def test_batch_leaves_foreign_files_in_its_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fervid.batch as batch
    from fervid.batch import PARTS_MARKER, BatchOptions, OutputPaths, run_batch

    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.png")
    out = tmp_path / "r.parquet"
    parts = OutputPaths.of(out).parts
    real = batch.merge

    def add_a_note_then_merge(paths, settings):
        (parts / "mine.txt").write_text("not batch's")
        (parts / ".settings.json.1-ab.tmp.json").write_text("{")  # batch's own, left by a crash
        return real(paths, settings)

    monkeypatch.setattr(batch, "merge", add_a_note_then_merge)
    run_batch(src, out, options=BatchOptions(model="fast"), progress=False)
    assert sorted(p.name for p in parts.iterdir()) == sorted(["mine.txt", PARTS_MARKER])
    assert pq.read_table(OutputPaths.of(out).sources).num_rows == 1


# --------------------------------------------------------------------- batch: crash-safe merge


class _Killed(BaseException):
    """Stands for SIGKILL at a point of the merge (nothing after it runs)."""


@pytest.mark.parametrize("kill_after", ["faces", "errors", "sources"])
def test_merge_killed_at_any_point_then_rerun_gives_each_row_once(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill_after: str
) -> None:
    import fervid.batch as batch
    from fervid.batch import BatchOptions, OutputPaths, run_batch

    opts = BatchOptions(model="fast")
    clean = tmp_path / "clean.parquet"
    run_batch(photos, clean, options=opts, progress=False)
    expected = pq.read_table(clean).to_pylist()
    assert len(expected) == 3  # 1 + 2 faces

    # A first run that finishes, then a second, continued run killed inside its merge.
    out = tmp_path / "r.parquet"
    run_batch(photos / "obama-480p.jpg", out, options=opts, progress=False)
    paths = OutputPaths.of(out)
    real_write = batch._write_atomic
    order = {"faces": paths.faces, "errors": paths.errors, "sources": paths.sources}

    def write_then_die(table, path, meta=None):
        real_write(table, path, meta)
        if path == order[kill_after]:  # "sources": killed before the parts are removed
            raise _Killed

    monkeypatch.setattr(batch, "_write_atomic", write_then_die)
    with pytest.raises(_Killed):
        run_batch(photos, out, options=opts, progress=False)
    assert paths.parts.is_dir()
    monkeypatch.setattr(batch, "_write_atomic", real_write)
    again = run_batch(photos, out, options=opts, progress=False)
    assert (again.done_earlier, again.processed) == (2, 0)
    key = ("source", "face")
    got = sorted(pq.read_table(out).to_pylist(), key=lambda r: tuple(r[k] for k in key))
    want = sorted(expected, key=lambda r: tuple(r[k] for k in key))
    assert [tuple(r[k] for k in key) for r in got] == [tuple(r[k] for k in key) for r in want]
    assert pq.read_table(paths.sources).column("source").to_pylist() == sorted(
        str((photos / n).resolve()) for n in ("obama-480p.jpg", "two_people.jpg")
    )
    assert not paths.parts.exists()


def test_full_disk_at_the_merge_keeps_the_work_and_names_the_path(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fervid.batch as batch
    from fervid.batch import BatchOptions, OutputPaths, run_batch

    out = tmp_path / "r.parquet"
    paths = OutputPaths.of(out)
    real = pq.write_table

    def full_for_the_output(table, where, *a, **k):
        if Path(where).parent == tmp_path:  # the merged output; the parts (in parts/) still fit
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return real(table, where, *a, **k)

    monkeypatch.setattr(pq, "write_table", full_for_the_output)
    with pytest.raises(OutputError, match=r"cannot write .*r.parquet: no space left on the device; the finished work"):
        batch.run_batch(photos, out, options=BatchOptions(model="fast"), progress=False)
    monkeypatch.setattr(pq, "write_table", real)
    assert leftovers(tmp_path) == [] and not out.exists()
    again = run_batch(photos, out, options=BatchOptions(model="fast"), progress=False)
    assert (again.done_earlier, again.processed) == (2, 0)
    assert pq.read_table(out).num_rows == 3 and not paths.parts.exists()


def test_full_disk_during_batch_names_the_path(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        write_image(src / f"p{i}.png", seed=i)
    with small_filesystem(tmp_path, "12k") as mnt:
        if mnt is None:
            pytest.skip("mounting a tmpfs is not permitted here (needs root with mount rights)")
        r = run_fervid(
            ["batch", str(src), "--out", str(mnt / "r.parquet"), "--model", "fast", "--no-progress"], cwd=tmp_path
        )
        assert_one_line_error(r.returncode, r.stderr, str(mnt / "r.parquet.parts"))
        assert "no space left on the device" in r.stderr and "run the same command again" in r.stderr


# --------------------------------------------------------------------- batch: source identity


def test_the_same_files_spelled_differently_are_not_processed_again(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fervid.batch import BatchOptions, run_batch

    opts = BatchOptions(model="fast")
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "link").symlink_to(photos)
    monkeypatch.chdir(work)
    out = tmp_path / "r.parquet"
    first = run_batch("../corpus", out, options=opts, progress=False)
    assert first.processed == 2
    for spelling in (
        str(photos),
        "../corpus/./two_people.jpg",
        "../link/obama-480p.jpg",
        ["../corpus/obama-480p.jpg", str(photos / "two_people.jpg")],
    ):
        again = run_batch(spelling, out, options=opts, progress=False)
        assert again.processed == 0, spelling
    assert pq.read_table(out).num_rows == 3


# --------------------------------------------------------------------- manifests


def test_manifest_rule(tmp_path: Path) -> None:
    from fervid.batch import read_manifest

    for name in ("a.jpg", "b.jpg"):
        write_image(tmp_path / name)
    m = tmp_path / "m.csv"
    m.write_text("a.jpg\nb.jpg\n")  # no header: every line a path (the first was lost)
    assert read_manifest(m) == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]
    m.write_text("id,Path\n1,a.jpg\n2,b.jpg\n")  # a header, any case: `Path` was ignored
    assert read_manifest(m) == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]
    m.write_text(" FILENAME \na.jpg\n")
    assert read_manifest(m) == [str(tmp_path / "a.jpg")]
    m.write_bytes("\ufeffpath\r\nb.jpg\r\n".encode())  # a spreadsheet's CSV: byte-order mark, CRLF
    assert read_manifest(m) == [str(tmp_path / "b.jpg")]
    m.write_text("id,picture\n1,a.jpg\n")
    with pytest.raises(ValueError, match=r"m.csv: no path column in the manifest's header \(id, picture\)"):
        read_manifest(m)
    m.write_bytes(b"\xff\xfe\x00p\x00a")
    with pytest.raises(ValueError, match=r"m.csv: not a CSV manifest"):
        read_manifest(m)
    m.write_text("a.jpg,1\nb.jpg,2\n")
    with pytest.raises(ValueError, match="without a header must list one path per line"):
        read_manifest(m)
    pm = tmp_path / "m.parquet"
    pq.write_table(pa.table({"id": [1], "Path": ["b.jpg"]}), pm)
    assert read_manifest(pm) == [str(tmp_path / "b.jpg")]
    pq.write_table(pa.table({"id": [1], "where": ["b.jpg"]}), pm)
    with pytest.raises(ValueError, match=r"m.parquet: no path column .*\(id, where\)"):
        read_manifest(pm)


# --------------------------------------------------------------------- unprivileged user


@pytest.fixture()
def unprivileged() -> list[str]:
    """The prefix that drops root's power over permissions (``[]`` when not root)."""
    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("root here cannot drop its power over permissions (no `unshare --user`)")
    return prefix


def _as_unprivileged(prefix: list[str], argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "fervid", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.parametrize(
    "verb",
    ["predict-new", "predict-existing", "video-out", "video-csv", "batch", "batch-parts"],
)
def test_unwritable_output_folder_as_an_unprivileged_user(tmp_path: Path, verb: str, unprivileged: list[str]) -> None:
    photo = write_image(tmp_path / "p.png", size=96)
    clip = write_video(tmp_path / "c.mp4", frames=10)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "earlier.txt").write_text("keep")
    if verb == "batch-parts":  # batch's own working folder, made read-only after a crash
        (locked / "r.parquet.parts").mkdir()
        (locked / "r.parquet.parts" / "fervid-batch-parts.json").write_text("{}")
        locked.chmod(0o777)
        (locked / "r.parquet.parts").chmod(0o555)
    else:
        locked.chmod(0o555)
    before = fingerprint(locked)
    model = ["--model", "fast", "--no-progress"]
    argv, named = {
        "predict-new": (["predict", str(photo), "--out", str(locked / "new"), *model], locked / "new"),
        "predict-existing": (["predict", str(photo), "--out", str(locked), *model], locked),
        "video-out": (["video", str(clip), "--out", str(locked / "a.mp4"), *model], locked / "a.mp4"),
        "video-csv": (["video", str(clip), "--csv", str(locked / "t.csv"), *model], locked / "t.csv"),
        "batch": (["batch", str(photo), "--out", str(locked / "r.parquet"), *model], locked / "r.parquet"),
        "batch-parts": (["batch", str(photo), "--out", str(locked / "r.parquet"), *model], locked / "r.parquet"),
    }[verb]
    try:
        r = _as_unprivileged(unprivileged, argv, tmp_path)
    finally:
        locked.chmod(0o755)
        if (locked / "r.parquet.parts").exists():
            (locked / "r.parquet.parts").chmod(0o755)
    assert_one_line_error(r.returncode, r.stderr, str(named))
    assert "permission denied" in r.stderr
    assert fingerprint(locked) == before and leftovers(locked) == []


def test_read_only_file_system_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A read-only mount (root cannot write there either): the reason says so."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount")):
        pytest.skip("mounting a read-only tmpfs needs root with mount rights")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        photo = write_image(tmp_path / "p.png")
        clip = write_video(tmp_path / "c.mp4", frames=5)
        for argv, named in (
            (["predict", str(photo), "--out", str(mnt)], mnt),
            (["video", str(clip), "--out", str(mnt / "a.mp4")], mnt / "a.mp4"),
            (["batch", str(photo), "--out", str(mnt / "r.parquet")], mnt / "r.parquet"),
        ):
            rc, _, err = cli([*argv, "--model", "fast", "--no-progress"], capsys)
            assert_one_line_error(rc, err, str(named))
            assert "read-only file system" in err, err
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# --------------------------------------------------------------------- property-based


def test_source_identity_property(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Any spelling of a file (relative from anywhere, with ``.`` and ``x/..`` segments,
    absolute, through a symlinked folder) is one source."""
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    from fervid.batch import list_sources, source_identity

    root = tmp_path_factory.mktemp("identity")
    (root / "a" / "b").mkdir(parents=True)
    files = [write_image(root / "a" / "x.png", size=8), write_image(root / "a" / "b" / "y.png", size=8)]
    (root / "link").symlink_to(root / "a")
    bases = [root, root / "a", root / "a" / "b"]

    def spell(target: Path, base: Path, noise: list[int], absolute: bool, via_link: bool) -> str:
        rel = Path(os.path.relpath(target, root))
        parts = list(rel.parts)
        if via_link and parts[0] == "a":
            parts[0] = "link"
        out: list[str] = []
        for i, p in enumerate(parts):
            kind = noise[i % len(noise)] if noise else 0
            out += {0: [p], 1: [".", p], 2: ["b", "..", p] if (root.joinpath(*parts[:i]) / "b").is_dir() else [p]}[kind]
        spelled = root.joinpath(*out)
        return str(spelled) if absolute else os.path.relpath(str(spelled), base)

    @hypothesis.settings(max_examples=60, deadline=2000, derandomize=True)
    @hypothesis.given(
        which=st.integers(0, 1),
        base=st.integers(0, 2),
        noise=st.lists(st.integers(0, 2), max_size=4),
        absolute=st.booleans(),
        via_link=st.booleans(),
    )
    def check(which: int, base: int, noise: list[int], absolute: bool, via_link: bool) -> None:
        target = files[which]
        spelled = spell(target, bases[base], noise, absolute, via_link)
        here = os.getcwd()
        os.chdir(bases[base])
        try:
            assert source_identity(spelled) == str(target.resolve())
            assert [s.path for s in list_sources([spelled, str(target)])] == [str(target.resolve())]
        finally:
            os.chdir(here)

    check()


def test_batch_crash_safety_property(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs killed at random points -- while processing (after any number of committed parts)
    or inside the merge (after any of its three writes) -- then run again until one finishes:
    the output holds every source once and each of its rows once. The recognizer is replaced
    by a fake that gives each source a known number of faces (the merge is what is tested)."""
    import tempfile

    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    import fervid.batch as batch

    monkeypatch.setattr(batch.BatchOptions, "recognizer", lambda self: None)
    real_write = batch._write_atomic

    def faces_of(path: str) -> int:
        return int(Path(path).stem[1:]) % 3  # s0 -> 0 faces, s1 -> 1, s2 -> 2, s3 -> 0...

    @hypothesis.settings(max_examples=40, deadline=5000, derandomize=True)
    @hypothesis.given(
        n=st.integers(1, 7),
        kills=st.lists(st.tuples(st.sampled_from(["process", "merge"]), st.integers(0, 6)), max_size=4),
    )
    def check(n: int, kills: list[tuple[str, int]]) -> None:
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            (root / "in").mkdir()
            for i in range(n):
                (root / "in" / f"s{i}.png").write_bytes(b"")
            out = root / "r.parquet"
            for where, k in [*kills, ("none", 0)]:
                calls = {"process": 0, "merge": 0}

                def fake(rec, sources, options, where=where, k=k, calls=calls):
                    if where == "process" and calls["process"] == k:
                        raise _Killed
                    calls["process"] += 1
                    rows = [
                        {"source": s.path, "kind": "image", "frame": None, "face": f, "label": "happy"}
                        for s in sources
                        for f in range(faces_of(s.path))
                    ]
                    status = [
                        {
                            "source": s.path,
                            "kind": "image",
                            "status": "ok",
                            "frames": 1,
                            "error_type": None,
                            "error": None,
                        }
                        for s in sources
                    ]
                    return rows, status

                def write(table, path, meta=None, where=where, k=k, calls=calls):
                    real_write(table, path, meta)
                    if meta is not None and where == "merge":  # the merge's writes carry the settings
                        calls["merge"] += 1
                        if calls["merge"] == k % 3 + 1:
                            raise _Killed

                monkeypatch.setattr(batch, "process_sources", fake)
                monkeypatch.setattr(batch, "_write_atomic", write)
                try:
                    batch.run_batch(root / "in", out, chunk_size=1, flush_every=1, progress=False)
                except _Killed:
                    continue
                break
            faces = pq.read_table(out).to_pylist() if pq.read_table(out).num_rows else []
            keys = sorted((Path(r["source"]).name, r["face"]) for r in faces)
            assert keys == sorted((f"s{i}.png", f) for i in range(n) for f in range(i % 3))
            srcs = pq.read_table(batch.OutputPaths.of(out).sources).column("source").to_pylist()
            assert [Path(s).name for s in srcs] == sorted(f"s{i}.png" for i in range(n))
            assert not batch.OutputPaths.of(out).parts.exists()

    check()


@pytest.mark.slow  # 20-40 s on 2 loaded cores: make test-slow (CI) runs it
def test_batch_sigkilled_before_removing_its_parts_then_rerun(photos: Path, tmp_path: Path) -> None:
    """A real ``kill -9`` of ``fervid batch`` after its outputs are written and before
    ``parts/`` is removed (the process kills itself there), then the same command: each row
    once (it was every row twice)."""
    out = tmp_path / "r.parquet"
    argv = ["batch", str(photos), "--out", str(out), "--model", "fast", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    first = run_fervid(argv[:1] + [str(photos / "obama-480p.jpg")] + argv[2:], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    killed = subprocess.run(
        [sys.executable, "-c", BATCH_KILLED_AFTER_SOURCES, *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert killed.returncode == -9, killed.stderr
    from fervid.batch import OutputPaths

    assert OutputPaths.of(out).parts.is_dir()
    again = run_fervid(argv, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    keys = [(r["source"], r["face"]) for r in pq.read_table(out).to_pylist()]
    assert len(keys) == len(set(keys)) == 3
    assert not OutputPaths.of(out).parts.exists()


def test_outputs_of_earlier_versions_with_spelled_sources_are_continued(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An output written before sources were resolved paths (``corpus/a.jpg`` as typed): a
    run from the same folder finds its sources done, and the merged rows are not doubled."""
    from fervid.batch import BatchOptions, OutputPaths, run_batch

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.parquet"
    opts = BatchOptions(model="fast")
    run_batch(photos / "obama-480p.jpg", out, options=opts, progress=False)
    paths = OutputPaths.of(out)
    for table_path in (paths.faces, paths.sources, paths.errors):  # as the earlier version wrote them
        t = pq.read_table(table_path)
        rel = pa.array([os.path.relpath(s, tmp_path) for s in t.column("source").to_pylist()], type=pa.string())
        pq.write_table(t.set_column(t.column_names.index("source"), "source", rel), table_path)
    again = run_batch("corpus", out, options=opts, progress=False)
    assert (again.done_earlier, again.processed) == (1, 1)
    keys = [(r["source"], r["face"]) for r in pq.read_table(out).to_pylist()]
    assert len(keys) == len(set(keys)) == 3
    assert {s for s, _ in keys} == {str((photos / n).resolve()) for n in ("obama-480p.jpg", "two_people.jpg")}
