"""Data readers: Kaggle CSV (.csv/.csv.gz/.tar.gz/.zip), image folders, cache, packs, bad input.

Synthetic fixtures are written to tmp dirs; tests on the real data use the session
fixtures from conftest and skip when it is absent.
"""

from __future__ import annotations

import csv
import gzip
import io
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fervid.data import datasets as fdata
from fervid.data.datasets import (
    FERData,
    FERDataError,
    load_dataset,
    load_fer2013,
    load_image_folder,
    load_pack,
    read_image_gray,
    save_pack,
)
from fervid.emotions import FER2013

# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def cache_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the parse cache at a fresh folder (never the user's ~/.cache)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("FERVID_CACHE", str(d))
    return d


def make_rows(n: int = 6, seed: int = 0) -> list[tuple[int, np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    usages = ["Training", "Training", "PublicTest", "PrivateTest"]
    return [(int(i % 7), rng.integers(0, 256, (48, 48), dtype=np.uint8), usages[i % 4]) for i in range(n)]


def csv_text(rows: list[tuple[int, np.ndarray, str]], header: str = "emotion,pixels,Usage") -> str:
    lines = [header]
    for label, img, usage in rows:
        lines.append(f"{label},{' '.join(map(str, img.ravel().tolist()))},{usage}")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[tuple[int, np.ndarray, str]], **kw) -> Path:
    path.write_text(csv_text(rows, **kw), encoding="utf-8")
    return path


def check_same(d: FERData, rows: list[tuple[int, np.ndarray, str]]) -> None:
    assert d.images.dtype == np.uint8 and d.images.shape == (len(rows), 48, 48)
    np.testing.assert_array_equal(d.images, np.stack([r[1] for r in rows]))
    assert d.labels.tolist() == [r[0] for r in rows]
    assert d.splits.tolist() == [r[2] for r in rows]
    assert d.index.tolist() == list(range(len(rows)))
    assert d.source_rows == len(rows)
    assert d.skipped == []


# ------------------------------------------------------------------------ CSV readers


def test_csv_plain(tmp_path: Path, cache_tmp: Path) -> None:
    rows = make_rows()
    d = load_fer2013(write_csv(tmp_path / "fer2013.csv", rows))
    check_same(d, rows)
    assert d.class_counts("Training") == {
        n: int(sum(1 for r in rows if r[2] == "Training" and r[0] == k)) for k, n in enumerate(FER2013)
    }
    assert d.split_names == ["Training", "PublicTest", "PrivateTest"]


def test_csv_gz_tar_zip_and_load_dataset(tmp_path: Path, cache_tmp: Path) -> None:
    rows = make_rows(5, seed=1)
    text = csv_text(rows).encode()
    gz = tmp_path / "fer2013.csv.gz"
    gz.write_bytes(gzip.compress(text))
    tgz = tmp_path / "fer2013.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:  # the original Kaggle archive layout, plus a decoy
        for name, blob in (("fer2013/README", b"readme"), ("fer2013/fer2013.csv", text)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    zp = tmp_path / "fer2013.zip"
    with zipfile.ZipFile(zp, "w") as z:
        z.writestr("other.csv", "a,b\n1,2\n")
        z.writestr("fer2013.csv", text)
    for p in (gz, tgz, zp):
        check_same(load_fer2013(p), rows)
        check_same(load_dataset(p), rows)


def test_csv_header_variants(tmp_path: Path, cache_tmp: Path) -> None:
    rows = make_rows(3, seed=2)
    # Byte-order mark, column order and spacing as in Kaggle's icml_face_data.csv, blank line inside.
    text = "\ufeffemotion, Usage, pixels\n" + "\n".join(
        f"{lab},{use},{' '.join(map(str, img.ravel()))}" + ("\n" if i == 1 else "")
        for i, (lab, img, use) in enumerate(rows)
    )
    p = tmp_path / "icml.csv"
    p.write_text(text, encoding="utf-8")
    check_same(load_fer2013(p), rows)
    # No Usage column: everything is Training.
    p2 = tmp_path / "nousage.csv"
    p2.write_text("emotion,pixels\n" + "\n".join(f"{lab},{' '.join(map(str, img.ravel()))}" for lab, img, _ in rows))
    d = load_fer2013(p2)
    assert d.splits.tolist() == ["Training"] * 3 and d.labels.tolist() == [r[0] for r in rows]


def test_cache_is_used_and_keyed_by_content(tmp_path: Path, cache_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = make_rows(4, seed=3)
    p = write_csv(tmp_path / "fer2013.csv", rows)
    first = load_fer2013(p)
    assert len(list(cache_tmp.glob("fer2013-*-strict.npz"))) == 1
    calls: list[Path] = []
    real_parse = fdata._parse_fer_csv

    def spy(path: Path, strict: bool) -> FERData:
        calls.append(path)
        return real_parse(path, strict)

    monkeypatch.setattr(fdata, "_parse_fer_csv", spy)
    second = load_fer2013(p)
    assert calls == []  # served from the cache
    np.testing.assert_array_equal(first.images, second.images)
    assert second.source == str(p) and second.source_rows == 4
    # Same name, new content: new hash, parsed again.
    rows2 = make_rows(4, seed=4)
    write_csv(p, rows2)
    check_same(load_fer2013(p), rows2)
    assert len(calls) == 1
    # A damaged cache file is rebuilt, never trusted.
    for f in cache_tmp.glob("*.npz"):
        f.write_bytes(b"PK\x03\x04 not really a zip")
    check_same(load_fer2013(p), rows2)
    assert len(calls) == 2
    # cache=False neither reads nor writes.
    check_same(load_fer2013(p, cache=False), rows2)
    assert len(calls) == 3


def test_unwritable_cache_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("FERVID_CACHE", str(blocker / "sub"))  # cannot mkdir below a file
    rows = make_rows(2)
    with pytest.warns(RuntimeWarning, match="could not write the dataset cache"):
        d = load_fer2013(write_csv(tmp_path / "f.csv", rows))
    check_same(d, rows)


# --------------------------------------------------------------------- bad CSV input


def _pix(img: np.ndarray) -> str:
    return " ".join(map(str, img.ravel()))


BAD_ROWS = [
    # (bad row text built from a good image, expected field, expected message part)
    (lambda im: f"3,{_pix(im)[:-4]},Training", "pixels", "expected 2304 pixel values, found 2303"),
    (lambda im: f"3,{_pix(im)} 17,Training", "pixels", "found 2305"),
    (lambda im: f"3,{'12 abc ' + ' '.join(['1'] * 2302)},Training", "pixels", "non-numeric pixel value 'abc'"),
    (lambda im: f"3,{'300 ' + ' '.join(['1'] * 2303)},Training", "pixels", "outside 0..255"),
    (lambda im: f"7,{_pix(im)},Training", "emotion", "label 7 out of range 0..6"),
    (lambda im: f"-1,{_pix(im)},Training", "emotion", "out of range"),
    (lambda im: f"happy,{_pix(im)},Training", "emotion", "not an integer"),
    (lambda im: f"3,{_pix(im)},Validation", "Usage", "unknown Usage 'Validation'"),
    (lambda im: f"3,{_pix(im)}", None, "expected 3 fields"),
]


@pytest.mark.parametrize("make_bad,field,message", BAD_ROWS)
def test_bad_row_strict_names_file_line_field(tmp_path: Path, cache_tmp: Path, make_bad, field, message) -> None:
    rows = make_rows(3)
    lines = csv_text(rows).splitlines()
    lines.insert(3, make_bad(rows[0][1]))  # header is line 1, so the bad row is line 4
    p = tmp_path / "bad.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(FERDataError) as ei:
        load_fer2013(p)
    err = ei.value
    assert (err.path, err.line, err.field) == (str(p), 4, field)
    assert message in err.reason
    assert str(err).startswith(f"{p}, line 4")
    assert not list(cache_tmp.glob("*.npz"))  # failures are not cached


def test_lenient_skips_and_reports_every_bad_row(tmp_path: Path, cache_tmp: Path) -> None:
    rows = make_rows(6)
    lines = csv_text(rows).splitlines()
    lines[2] = "9," + lines[2].split(",", 1)[1]  # row 1: label out of range (line 3)
    lines[4] = lines[4].rsplit(",", 1)[0] + ",Nope"  # row 3: unknown Usage (line 5)
    lines[5] = lines[5].split(",")[0] + ",1 2 3," + rows[4][2]  # row 4: 3 pixels (line 6)
    p = tmp_path / "bad.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(FERDataError):
        load_fer2013(p)
    for _ in range(2):  # the second load comes from the lenient cache and must report the same
        d = load_fer2013(p, strict=False)
        assert len(d) == 3 and d.source_rows == 6
        assert d.index.tolist() == [0, 2, 5]  # surviving rows keep their source row numbers
        np.testing.assert_array_equal(d.images, np.stack([rows[i][1] for i in (0, 2, 5)]))
        assert [(s.line, s.field) for s in d.skipped] == [(3, "emotion"), (5, "Usage"), (6, "pixels")]
        assert all(s.path == str(p) for s in d.skipped)
        assert "found 3" in d.skipped[2].reason and f"{p}, line 6, field 'pixels'" in str(d.skipped[2])


def test_lenient_with_no_valid_rows_still_fails(tmp_path: Path, cache_tmp: Path) -> None:
    p = tmp_path / "allbad.csv"
    p.write_text("emotion,pixels,Usage\n9,1 2,Training\n")
    with pytest.raises(FERDataError, match="no valid rows.*line 2"):
        load_fer2013(p, strict=False)


@pytest.mark.parametrize("strict", [True, False])
def test_truncated_gzip(tmp_path: Path, cache_tmp: Path, strict: bool) -> None:
    blob = gzip.compress(csv_text(make_rows(40)).encode())
    p = tmp_path / "fer2013.csv.gz"
    p.write_bytes(blob[: len(blob) * 2 // 3])
    with pytest.raises(FERDataError, match="truncated or corrupt compressed file") as ei:
        load_fer2013(p, strict=strict)
    assert ei.value.path == str(p)


def test_truncated_and_empty_archives(tmp_path: Path, cache_tmp: Path) -> None:
    text = csv_text(make_rows(40)).encode()
    tgz = tmp_path / "fer2013.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        info = tarfile.TarInfo("fer2013/fer2013.csv")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    blob = tgz.read_bytes()
    tgz.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FERDataError) as ei:
        load_fer2013(tgz)
    assert ei.value.path == str(tgz)
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        info = tarfile.TarInfo("notes.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(FERDataError, match="holds no .csv"):
        load_fer2013(empty)


def test_bad_files(tmp_path: Path, cache_tmp: Path) -> None:
    with pytest.raises(FERDataError, match="no such file"):
        load_fer2013(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(FERDataError, match="empty") as ei:
        load_fer2013(tmp_path / "empty.csv")
    assert ei.value.line == 1
    (tmp_path / "hdr.csv").write_text("label,image\n1,2\n")
    with pytest.raises(FERDataError, match=r"lacks column\(s\) \['emotion', 'pixels'\]"):
        load_fer2013(tmp_path / "hdr.csv")
    (tmp_path / "latin.csv").write_bytes(b"emotion,pixels,Usage\n3,\xff\xfe,Training\n")
    with pytest.raises(FERDataError, match="UTF-8"):
        load_fer2013(tmp_path / "latin.csv")
    with pytest.raises(FERDataError, match="folder"):
        load_fer2013(tmp_path)


# --------------------------------------------------------------------- image folders


def _save(path: Path, im: Image.Image, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)


def test_image_folder_formats_and_splits(tmp_path: Path) -> None:
    root = tmp_path / "images"
    grey = np.arange(48 * 48, dtype=np.uint32).reshape(48, 48) % 256
    grey = grey.astype(np.uint8)
    # train/: plain grey PNG (exact), Kaggle prefix overrides the folder split
    _save(root / "train" / "happy" / "a.png", Image.fromarray(grey))
    _save(root / "train" / "happy" / "PublicTest_123.png", Image.fromarray(grey))
    # colour JPEG, large and not square -> grey 48x48
    _save(root / "train" / "anger" / "red.jpg", Image.new("RGB", (200, 120), (255, 0, 0)), quality=95)
    # RGBA with full transparency -> white, 16-bit grey, palette
    _save(root / "test" / "sad" / "alpha.png", Image.new("RGBA", (48, 48), (0, 0, 0, 0)))
    _save(root / "test" / "sad" / "deep.png", Image.fromarray(np.full((48, 48), 100 * 257, np.uint16)))
    pal = Image.new("P", (48, 48), 0)
    pal.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    _save(root / "val" / "neutral" / "pal.gif", pal)
    (root / "val" / "neutral" / ".DS_Store").write_bytes(b"junk")  # hidden: ignored silently
    (root / "val" / "neutral" / "notes.txt").write_text("not an image")  # reported
    d = load_image_folder(root)
    assert d.images.dtype == np.uint8 and d.images.shape == (6, 48, 48)
    by_name = {Path(f).name: i for i, f in enumerate(d.files)}
    assert set(by_name) == {"a.png", "PublicTest_123.png", "red.jpg", "alpha.png", "deep.png", "pal.gif"}
    assert d.splits[by_name["a.png"]] == "Training" and d.splits[by_name["PublicTest_123.png"]] == "PublicTest"
    assert d.splits[by_name["alpha.png"]] == "PrivateTest" and d.splits[by_name["pal.gif"]] == "PublicTest"
    assert d.labels[by_name["red.jpg"]] == FER2013.index("angry")
    assert d.labels[by_name["deep.png"]] == FER2013.index("sad")
    np.testing.assert_array_equal(d.images[by_name["a.png"]], grey)
    assert abs(int(d.images[by_name["red.jpg"]].mean()) - 76) <= 2  # ITU-R 601 luma of pure red
    assert (d.images[by_name["alpha.png"]] == 255).all()  # transparent -> white, not black
    assert (d.images[by_name["deep.png"]] == 100).all()  # 16-bit scaled by 1/257, not stretched
    assert abs(int(d.images[by_name["pal.gif"]].mean()) - 29) <= 1  # palette blue -> luma 29
    assert [Path(s.path).name for s in d.skipped] == ["notes.txt"]
    assert load_dataset(root).images.shape == (6, 48, 48)


def test_image_folder_flat_numeric_and_unmapped(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for cls in ("3", "contempt", "surprised"):
        _save(root / cls / "x.png", Image.new("L", (64, 64), 10))
    d = load_image_folder(root)
    assert sorted(d.labels.tolist()) == [-1, 3, 5]  # "3" -> happy, "surprised" -> surprise
    assert set(d.splits.tolist()) == {"Unknown"}
    assert len(d.skipped) == 1 and d.skipped[0].field == "class" and "contempt" in d.skipped[0].reason
    assert d.class_counts()["happy"] == 1


def test_image_folder_corrupt_file(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _save(root / "happy" / "ok.png", Image.new("L", (48, 48), 7))
    bad = root / "happy" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "JPEG")
    trunc = root / "sad" / "truncated.jpg"
    trunc.parent.mkdir()
    trunc.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    with pytest.raises(FERDataError, match="truncated or corrupt image|unreadable image") as ei:
        load_image_folder(root)
    assert ei.value.path == str(bad)
    d = load_image_folder(root, strict=False)
    assert len(d) == 1 and d.images[0].max() == 7
    assert sorted(Path(s.path).name for s in d.skipped) == ["broken.jpg", "truncated.jpg"]
    with pytest.raises(FERDataError, match="truncated or corrupt image"):
        read_image_gray(trunc)


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FERDataError, match="empty folder") as ei:
        load_image_folder(tmp_path / "empty")
    assert ei.value.path == str(tmp_path / "empty")
    (tmp_path / "noimg" / "train" / "happy").mkdir(parents=True)
    (tmp_path / "noimg" / "train" / "happy" / "a.txt").write_text("x")
    with pytest.raises(FERDataError, match="no images found.*a.txt"):
        load_image_folder(tmp_path / "noimg")
    with pytest.raises(FERDataError, match="no such folder"):
        load_image_folder(tmp_path / "nope")


# ----------------------------------------------------------------- FERData and packs


def test_select_split_and_pack_roundtrip(tmp_path: Path, cache_tmp: Path) -> None:
    rows = make_rows(8, seed=5)
    d = load_fer2013(write_csv(tmp_path / "f.csv", rows))
    tr = d.split("Training")
    assert len(tr) == 4 and set(tr.splits.tolist()) == {"Training"} and tr.index.tolist() == [0, 1, 4, 5]
    assert len(d.select([1, 2])) == 2 and len(d.select(d.labels > 2)) == int((d.labels > 2).sum())
    with pytest.raises(KeyError, match="Validation"):
        d.split("Validation")
    pack = tmp_path / "p.npz"
    save_pack(d, pack)
    back = load_pack(pack)
    np.testing.assert_array_equal(back.images, d.images)
    assert back.labels.tolist() == d.labels.tolist() and back.splits.tolist() == d.splits.tolist()
    assert back.index.tolist() == d.index.tolist() and back.source_rows == 8
    assert load_dataset(pack).label_names == FER2013
    (tmp_path / "junk.npz").write_bytes(b"nope")
    with pytest.raises(FERDataError, match="not a fervid pack"):
        load_pack(tmp_path / "junk.npz")


# ------------------------------------------------------------------------- real data


def test_real_official_counts(fer_data: FERData, official_counts: dict[str, list[int]]) -> None:
    assert len(fer_data) == 35887 and fer_data.source_rows == 35887 and fer_data.skipped == []
    assert fer_data.images.shape == (35887, 48, 48) and fer_data.images.dtype == np.uint8
    for split, counts in official_counts.items():
        assert list(fer_data.class_counts(split).values()) == counts, split
    assert fer_data.index.tolist() == list(range(35887))


def test_real_rows_match_the_file(fer_data: FERData, fer_csv: Path) -> None:
    """Independent parse of the first rows with the csv module."""
    with gzip.open(fer_csv, "rt") as fh:
        reader = csv.reader(fh)
        assert next(reader) == ["emotion", "pixels", "Usage"]
        for i, row in zip(range(300), reader):
            assert int(row[0]) == fer_data.labels[i] and row[2] == fer_data.splits[i]
            np.testing.assert_array_equal(np.array(row[1].split(), dtype=np.uint8).reshape(48, 48), fer_data.images[i])


def test_real_cached_second_load_is_fast(fer_data: FERData, fer_csv: Path) -> None:
    t = time.perf_counter()
    again = load_fer2013(fer_csv)  # fer_data already built the cache
    dt = time.perf_counter() - t
    print(f"\ncached load of {len(again)} rows: {dt:.2f} s")
    np.testing.assert_array_equal(again.labels, fer_data.labels)
    assert again.images[12345].tobytes() == fer_data.images[12345].tobytes()
    assert dt < 4.0  # typically ~0.5 s; generous for a busy shared machine


@pytest.fixture(scope="module")
def folder_test(data_root: Path) -> FERData:
    root = data_root / "fer2013-images"
    if not (root / "test").is_dir():
        pytest.skip("fer2013-images/test not present")
    return load_image_folder(root)


def test_real_image_folder_counts(folder_test: FERData, fer_data: FERData) -> None:
    assert len(folder_test) == 7178 and folder_test.skipped == []
    assert (folder_test.splits == "PublicTest").sum() == 3589 and (folder_test.splits == "PrivateTest").sum() == 3589
    for split in ("PublicTest", "PrivateTest"):
        assert folder_test.class_counts(split) == fer_data.class_counts(split), split


def _small(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32).reshape(len(images), 12, 4, 12, 4).mean((2, 4)).reshape(len(images), -1)
    return x - x.mean(1, keepdims=True)


def test_real_image_folder_pixels_match_csv(folder_test: FERData, fer_data: FERData) -> None:
    """Each JPEG's nearest CSV row (same split) has the same label and is close in pixels."""
    for split in ("PublicTest", "PrivateTest"):
        f, c = folder_test.split(split), fer_data.split(split)
        a, b = _small(f.images), _small(c.images)
        d2 = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
        nn = d2.argmin(1)
        assert len(np.unique(nn)) > 0.99 * len(nn)  # (nearly) one-to-one
        diff = np.abs(f.images.astype(np.int16) - c.images[nn].astype(np.int16)).mean((1, 2))
        print(f"\n{split}: mean |JPEG - CSV| = {diff.mean():.2f} grey levels, 99th pct {np.percentile(diff, 99):.2f}")
        assert np.median(diff) < 3.0 and np.percentile(diff, 99) < 8.0
        assert (f.labels == c.labels[nn]).mean() > 0.995
