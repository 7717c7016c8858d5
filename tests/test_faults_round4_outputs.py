"""Round 4 of issue 25's fault hunt: outputs and state between runs.

``fervid batch`` continues an output it finds (the sources it records are "done"). Found:

- the faces table replaced by anything (``echo x > out.parquet``), truncated or edited, then
  the same command: "processed 0", exit 0, the bad file left as the output; a damaged sources
  table was a pyarrow traceback. Class: a finished output is verified against itself (both
  tables readable, the faces table holding the rows the sources table records for each source)
  before anything is skipped or merged into it.
- a photo replaced or edited in place, then the same command: "processed 0", and the output
  kept the old photo's faces under its name. Class: the sources table records each file's
  version (size, modification time) and a continued run processes again what changed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from faultkit import assert_one_line_error, cli

pq = pytest.importorskip("pyarrow.parquet")


def _corpus(data_root: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(data_root / "media" / "two_people.jpg", folder / "a.jpg")
    shutil.copy(data_root / "media" / "obama.jpg", folder / "b.jpg")
    return folder


def _batch(folder: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return cli(["batch", str(folder), "--out", str(out), "--no-progress"], capsys)


def _faces_per_source(out: Path) -> dict[str, int]:
    names = pq.read_table(out).column("source").to_pylist()
    return {Path(s).name: names.count(s) for s in set(names)}


def _drop_rows_of(out: Path, name: str) -> None:
    t = pq.read_table(out)
    keep = [i for i, s in enumerate(t.column("source").to_pylist()) if Path(s).name != name]
    pq.write_table(t.take(keep), out)


DAMAGE = {
    "faces replaced by text": ("out.parquet", lambda p: p.write_text("not a table\n")),
    "faces truncated": ("out.parquet", lambda p: p.write_bytes(p.read_bytes()[:200])),
    "faces emptied": ("out.parquet", lambda p: p.write_bytes(b"")),
    "a photo's faces removed": ("out.parquet", lambda p: _drop_rows_of(p, "a.jpg")),
    "sources truncated": ("out.sources.parquet", lambda p: p.write_bytes(p.read_bytes()[:100])),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_batch_refuses_to_continue_an_output_changed_since_it_wrote_it(
    case: str, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "processed 0", exit 0, the damaged table reported as the output (or a pyarrow
    traceback for the sources table). Now: one error naming the file; every file kept as it was."""
    folder = _corpus(data_root, tmp_path)
    out = tmp_path / "out.parquet"
    rc, _, err = _batch(folder, out, capsys)
    assert rc == 0, err
    name, damage = DAMAGE[case]
    damage(tmp_path / name)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("out*.parquet")}
    rc, _, err = _batch(folder, out, capsys)
    assert_one_line_error(rc, err, name)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("out*.parquet")} == before  # nothing lost or added
    assert not (tmp_path / "out.parquet.parts").exists()


def test_an_untouched_output_is_still_continued(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check passes what batch wrote: the same command again processes nothing and keeps the rows."""
    folder = _corpus(data_root, tmp_path)
    out = tmp_path / "out.parquet"
    assert _batch(folder, out, capsys)[0] == 0
    first = pq.read_table(out)
    rc, stdout, err = _batch(folder, out, capsys)
    assert rc == 0, err
    assert '"processed": 0' in stdout
    assert pq.read_table(out).equals(first)


def test_a_photo_changed_since_it_was_processed_is_processed_again(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the edited photo counted as done; the output kept the old picture's 2 faces under
    its name. Now it is processed again (the other photo is not) and its rows are the new
    picture's, once, as a fresh run gives them."""
    folder = _corpus(data_root, tmp_path)
    out = tmp_path / "out.parquet"
    assert _batch(folder, out, capsys)[0] == 0
    assert _faces_per_source(out) == {"a.jpg": 2, "b.jpg": 1}
    shutil.copy(data_root / "media" / "obama.jpg", folder / "a.jpg")  # the same name, another picture
    st = (folder / "a.jpg").stat()
    os.utime(folder / "a.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later time, whatever the clock
    rc, stdout, err = _batch(folder, out, capsys)
    assert rc == 0, err
    assert '"processed": 1' in stdout and '"done_earlier": 1' in stdout
    assert _faces_per_source(out) == {"a.jpg": 1, "b.jpg": 1}
    fresh = tmp_path / "fresh.parquet"
    assert _batch(folder, fresh, capsys)[0] == 0
    assert pq.read_table(out).equals(pq.read_table(fresh))
    sources = pq.read_table(tmp_path / "out.sources.parquet").to_pylist()
    assert [(Path(r["source"]).name, r["bytes"]) for r in sources] == [
        ("a.jpg", (folder / "a.jpg").stat().st_size),
        ("b.jpg", (folder / "b.jpg").stat().st_size),
    ]


def test_a_second_batch_run_on_the_same_output_at_once_is_refused(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two ``fervid batch`` runs on one --out at once both did all the work; the one that merged
    second failed with "cannot write .../part-...: the folder does not exist; 12 finished
    source(s) are kept in out.parquet.parts" (there were none: the other run had removed it).
    Now a run holds the output's lock from its first check to its merge; another is refused at
    once, naming the output, and writes nothing. The lock is held here as a running batch holds it."""
    from filelock import FileLock

    folder = _corpus(data_root, tmp_path)
    out = tmp_path / "out.parquet"
    lock = FileLock(tmp_path / ".out.parquet.lock", timeout=0)
    with lock:
        rc, _, err = _batch(folder, out, capsys)
        assert_one_line_error(rc, err, str(out), "another fervid batch run")
        assert sorted(p.name for p in tmp_path.iterdir()) == [".out.parquet.lock", "photos"]
    rc, _, err = _batch(folder, out, capsys)
    assert rc == 0, err
    assert _faces_per_source(out) == {"a.jpg": 2, "b.jpg": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.errors.parquet",
        "out.parquet",
        "out.sources.parquet",
        "photos",
    ]  # the lock file is removed at the end


def test_a_deleted_errors_table_is_written_again(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: with ``out.errors.parquet`` deleted, the same command answered "processed 0",
    exit 0, and named the missing file among its outputs. Now the errors table is written again
    from the sources table (a bad file's row included), and nothing is processed again."""
    folder = _corpus(data_root, tmp_path)
    (folder / "c.jpg").write_bytes(b"not a photo")
    out = tmp_path / "out.parquet"
    assert _batch(folder, out, capsys)[0] == 1  # a source failed: exit 1, and it is in the errors table
    errors = tmp_path / "out.errors.parquet"
    first = pq.read_table(errors)
    assert [Path(s).name for s in first.column("source").to_pylist()] == ["c.jpg"]
    errors.unlink()
    rc, stdout, err = _batch(folder, out, capsys)
    assert rc == 0, err
    assert '"processed": 0' in stdout
    assert pq.read_table(errors).equals(first)
