"""Reading FER2013 the way people have it: Kaggle CSV (plain, gzip, the original tar.gz,
a zip) and image folders. Every reader returns the same in-memory form, :class:`FERData`.

The CSV is parsed once and cached as an uncompressed ``.npz`` keyed by the source
file's sha256, so later loads skip the 2304-integers-per-row parsing entirely (a
second load of the full 35,887-row file is a hash plus one ~83 MB read).

Bad input raises :class:`FERDataError` naming the file and, where it applies, the line
and field. With ``strict=False`` bad rows/files are skipped instead and listed, one
:class:`BadRecord` each, in ``FERData.skipped``: nothing is dropped silently.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import os
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from fervid.data.errors import FERDataError
from fervid.data.imagefile import decode_image, image_extensions
from fervid.emotions import FER2013, FERPLUS8, SPLITS, try_canonical
from fervid.errors import UnknownNameError, UserValueError
from fervid.runtime import cache_dir, progress_stage
from fervid.safety import atomic_write, check_input_path, special_file_kind

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

IMAGE_SIZE = 48
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
#: Bump when the cached arrays change meaning; older cache files are then rebuilt.
CACHE_VERSION = 2
#: File names that are never data and are ignored without a report.
_JUNK_FILES = {"thumbs.db", "desktop.ini"}


def __getattr__(name: str) -> frozenset[str]:
    # IMAGE_EXTENSIONS: computed on first use (it loads Pillow's plugins), never at import.
    if name == "IMAGE_EXTENSIONS":
        return image_extensions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class BadRecord:
    """One skipped (or ignored) row or file, as reported in ``FERData.skipped``."""

    path: str
    line: int | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        return str(FERDataError(self.reason, self.path, self.line, self.field))


@dataclass
class FERData:
    """Faces as uint8 ``N x 48 x 48``, int labels in ``label_names`` order (-1 = none), and splits.

    ``index`` is each image's data row in the source (0-based, header excluded; rows
    skipped in lenient mode keep their numbers, so FER+ votes still align);
    ``source_rows`` is the number of data rows in the source CSV (``None`` for other
    sources); ``files`` holds file paths for image-folder sources; ``skipped`` lists
    every row or file that was not loaded, and why.
    """

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    index: np.ndarray
    label_names: tuple[str, ...] = FER2013
    source: str = ""
    files: np.ndarray | None = None
    skipped: list[BadRecord] = field(default_factory=list)
    source_rows: int | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise UserValueError(f"images must be uint8 N x H x W, got {self.images.dtype} {self.images.shape}")
        for name in ("labels", "splits", "index"):
            if len(getattr(self, name)) != n:
                raise UserValueError(f"{name} has {len(getattr(self, name))} entries for {n} images")
        if self.files is not None and len(self.files) != n:
            raise UserValueError(f"files has {len(self.files)} entries for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        splits = {s: int((self.splits == s).sum()) for s in self.split_names}
        return (
            f"FERData({len(self)} images {tuple(self.images.shape[1:])}, splits={splits}, "
            f"source={self.source!r}, skipped={len(self.skipped)})"
        )

    @property
    def split_names(self) -> list[str]:
        """Splits present, in Training / PublicTest / PrivateTest order, then any others."""
        present = set(self.splits.tolist())
        ordered = [s for s in SPLITS if s in present]
        return ordered + sorted(present - set(ordered))

    def select(self, mask_or_idx: np.ndarray | Sequence[int] | Sequence[bool]) -> FERData:
        """A subset by boolean mask or integer indices (skipped records stay with the parent)."""
        sel = np.asarray(mask_or_idx)
        if sel.dtype == bool:
            if len(sel) != len(self):
                raise UserValueError(f"boolean mask has {len(sel)} entries for {len(self)} images")
            idx = np.flatnonzero(sel)
        else:
            idx = sel.astype(np.int64, copy=False)
        return FERData(
            images=self.images[idx],
            labels=self.labels[idx],
            splits=self.splits[idx],
            index=self.index[idx],
            label_names=self.label_names,
            source=self.source,
            files=None if self.files is None else self.files[idx],
            source_rows=self.source_rows,
        )

    def split(self, *names: str) -> FERData:
        """The images of one or more splits, e.g. ``data.split("Training")``."""
        unknown = [n for n in names if n not in set(self.splits.tolist())]
        if unknown:
            raise UnknownNameError(f"split(s) {unknown} not in {self.source or 'data'}; present: {self.split_names}")
        return self.select(np.isin(self.splits, list(names)))

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        """Images per class (label -1 not counted), for one split or all."""
        labels = self.labels if split is None else self.labels[self.splits == split]
        counts = np.bincount(labels[labels >= 0], minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts)}


# --------------------------------------------------------------------------- CSV


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class _ArchiveText(io.TextIOWrapper):
    """A text stream over an archive member that also closes the archive."""

    def __init__(self, raw: IO[bytes], archive: tarfile.TarFile | zipfile.ZipFile):
        super().__init__(raw, encoding="utf-8-sig", newline="")
        self._archive = archive

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._archive.close()


def _pick_csv(names: list[str]) -> str | None:
    """The FER2013 CSV among archive members: fer2013.csv, then icml_face_data.csv, then any .csv."""
    csvs = [n for n in names if n.lower().endswith(".csv") and not Path(n).name.startswith(".")]
    rank = {"fer2013.csv": 0, "icml_face_data.csv": 1}
    csvs.sort(key=lambda n: (rank.get(Path(n).name.lower(), 2), n))
    return csvs[0] if csvs else None


def _open_csv_text(path: Path) -> io.TextIOBase:
    """Open ``.csv``, ``.csv.gz``, ``.zip`` or the original ``fer2013.tar.gz`` as text."""
    with open(path, "rb") as f:
        magic = f.read(4)
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            tar = tarfile.open(path)
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise FERDataError(f"cannot read tar archive ({type(e).__name__}: {e})", path) from e
        chosen = _pick_csv(list(members))
        if chosen is None:
            tar.close()
            raise FERDataError(f"tar archive holds no .csv file (members: {sorted(members)[:10]})", path)
        raw = tar.extractfile(members[chosen])
        assert raw is not None
        return _ArchiveText(raw, tar)
    if magic == b"PK\x03\x04":
        try:
            zf = zipfile.ZipFile(path)
            chosen = _pick_csv(zf.namelist())
        except (zipfile.BadZipFile, OSError) as e:
            raise FERDataError(f"cannot read zip archive ({type(e).__name__}: {e})", path) from e
        if chosen is None:
            names = zf.namelist()
            zf.close()
            raise FERDataError(f"zip archive holds no .csv file (members: {sorted(names)[:10]})", path)
        return _ArchiveText(zf.open(chosen), zf)
    if magic[:2] == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


_USAGE = {s.lower(): s for s in SPLITS}


def _parse_pixels(text: str) -> tuple[np.ndarray | None, str]:
    """48x48 uint8 from a space-separated pixel string, or ``(None, reason)``."""
    with warnings.catch_warnings():
        # numpy warns "string or file could not be read to its end" on any junk: make it fail.
        warnings.simplefilter("error", DeprecationWarning)
        try:
            px = np.fromstring(text, dtype=np.int64, sep=" ")  # C speed: ~6x faster than split()
        except (ValueError, AttributeError, DeprecationWarning):
            px = np.empty(0, np.int64)
    if len(px) != N_PIXELS:
        # Slow path only to say precisely what is wrong.
        parts = text.split()
        if len(parts) != N_PIXELS:
            return None, f"expected {N_PIXELS} pixel values, found {len(parts)}"
        bad = next((p for p in parts if not p.lstrip("-").isdigit()), None)
        if bad is not None:
            return None, f"non-numeric pixel value {bad[:20]!r} (value {parts.index(bad) + 1})"
        px = np.array(parts, dtype=np.int64)
    lo, hi = int(px.min()), int(px.max())
    if lo < 0 or hi > 255:
        return None, f"pixel value outside 0..255 ({lo}..{hi})"
    return px.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE), ""


def _parse_fer_csv(path: Path, strict: bool) -> FERData:
    images: list[np.ndarray] = []
    labels: list[int] = []
    splits: list[str] = []
    index: list[int] = []
    skipped: list[BadRecord] = []
    n_classes = len(FER2013)

    def bad(line: int | None, fld: str | None, reason: str) -> None:
        if strict:
            raise FERDataError(reason, path, line, fld)
        skipped.append(BadRecord(str(path), line, fld, reason))

    line = 1
    row_no = 0  # data rows seen, blank lines excluded
    try:
        with _open_csv_text(path) as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise FERDataError("file is empty (no header row)", path, 1) from None
            cols = [h.strip().lower() for h in header]
            missing = [c for c in ("emotion", "pixels") if c not in cols]
            if missing:
                raise FERDataError(_header_problem(header, missing), path, 1)
            i_emo, i_pix = cols.index("emotion"), cols.index("pixels")
            i_use = cols.index("usage") if "usage" in cols else None
            name_of = {i_emo: header[i_emo].strip(), i_pix: header[i_pix].strip()}
            if i_use is not None:
                name_of[i_use] = header[i_use].strip()
            for row in reader:
                line = reader.line_num  # physical line where this row ends (1-based)
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line: no data, not a row
                this_row = row_no
                row_no += 1
                if len(row) != len(cols):
                    bad(line, None, f"expected {len(cols)} fields ({', '.join(header)}), found {len(row)}")
                    continue
                try:
                    label = int(row[i_emo])
                except ValueError:
                    bad(line, name_of[i_emo], f"not an integer: {row[i_emo][:20]!r}")
                    continue
                if not 0 <= label < n_classes:
                    bad(line, name_of[i_emo], f"label {label} out of range 0..{n_classes - 1}")
                    continue
                if i_use is not None:
                    usage = _USAGE.get(row[i_use].strip().lower())
                    if usage is None:
                        bad(line, name_of[i_use], f"unknown Usage {row[i_use][:30]!r}; expected one of {list(SPLITS)}")
                        continue
                else:
                    usage = "Training"
                px, reason = _parse_pixels(row[i_pix])
                if px is None:
                    bad(line, name_of[i_pix], reason)
                    continue
                images.append(px)
                labels.append(label)
                splits.append(usage)
                index.append(this_row)
    except FERDataError:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile, tarfile.TarError, zipfile.BadZipFile) as e:
        raise FERDataError(
            f"truncated or corrupt compressed file after line {line} ({type(e).__name__}: {e})", path
        ) from e
    except UnicodeDecodeError as e:
        raise FERDataError(f"not UTF-8 text after line {line} ({e})", path, line + 1) from e
    except csv.Error as e:
        raise FERDataError(f"malformed CSV ({e})", path, line + 1) from e
    except OSError as e:
        raise FERDataError(f"cannot read file after line {line} ({type(e).__name__}: {e})", path) from e
    if not images:
        detail = f"; first problem: {skipped[0]}" if skipped else ""
        raise FERDataError(f"no valid rows ({row_no} data rows, {len(skipped)} bad){detail}", path)
    return FERData(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        splits=np.asarray(splits, dtype="U11"),
        index=np.asarray(index, dtype=np.int64),
        source=str(path),
        skipped=skipped,
        source_rows=row_no,
    )


def _cache_file(digest: str, strict: bool, version: int = CACHE_VERSION) -> Path:
    return cache_dir() / f"fer2013-{digest[:32]}-v{version}-{'strict' if strict else 'lenient'}.npz"


def _read_cache(cfile: Path, path: Path) -> FERData | None:
    try:
        with np.load(cfile, allow_pickle=False) as z:
            skipped = [
                BadRecord(str(path), int(ln) if ln >= 0 else None, str(f) or None, str(r))
                for ln, f, r in zip(z["skip_line"], z["skip_field"], z["skip_reason"])
            ]
            data = FERData(
                images=z["images"],
                labels=z["labels"],
                splits=z["splits"],
                index=z["index"],
                source=str(path),
                skipped=skipped,
                source_rows=int(z["source_rows"]),
            )
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        return None
    if data.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        return None
    return data


def _write_cache(cfile: Path, data: FERData) -> None:
    try:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_name(cfile.stem + f".tmp{os.getpid()}.npz")
        # Uncompressed: FER2013 pixels compress by only ~6%, and reading is ~5x faster.
        np.savez(
            tmp,
            images=data.images,
            labels=data.labels,
            splits=data.splits,
            index=data.index,
            source_rows=np.int64(data.source_rows if data.source_rows is not None else len(data)),
            skip_line=np.asarray([s.line if s.line is not None else -1 for s in data.skipped], dtype=np.int64),
            skip_field=np.asarray([s.field or "" for s in data.skipped], dtype=str),
            skip_reason=np.asarray([s.reason for s in data.skipped], dtype=str),
        )
        os.replace(tmp, cfile)  # atomic: a concurrent reader never sees half a file
    except OSError as e:
        warnings.warn(
            f"fervid: could not write the dataset cache {cfile} ({e}); the CSV will be parsed again next time",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    prefix = cfile.name.split("-v")[0] + "-v"
    for old in cfile.parent.glob(prefix + "*.npz"):
        version = old.name[len(prefix) :].split("-")[0]
        if version.isdigit() and int(version) != CACHE_VERSION and ".tmp" not in old.name:
            try:
                old.unlink()  # an older cache format of the same source file
            except OSError:
                pass


def _header_problem(header: list[str], missing: list[str]) -> str:
    """A short reason for a CSV whose first line is not the FER2013 header (a data row's
    2304 pixels must not become an 8 KB message)."""
    expected = "the header line emotion,pixels,Usage (Usage optional)"
    looks_like_data = any(len(h.split()) > 16 and all(t.isdigit() for t in h.split()) for h in header)
    if looks_like_data:
        return f"the first line is a data row, not a header: expected {expected} before the data"
    shown = ", ".join(repr(h if len(h) <= 24 else h[:21] + "...") for h in header[:8])
    more = f" (+{len(header) - 8} more)" if len(header) > 8 else ""
    return f"header lacks column(s) {missing}; found {shown}{more}; expected {expected}"


def load_fer2013(path: str | os.PathLike, *, strict: bool = True, cache: bool = True) -> FERData:
    """Read Kaggle ``fer2013.csv`` (or ``.csv.gz``, a ``.zip``, or the original ``fer2013.tar.gz``).

    Columns are found by header name (``emotion``, ``pixels``, optional ``Usage``;
    without ``Usage`` every row is ``Training``). ``strict=False`` skips bad rows and
    lists them in ``FERData.skipped`` instead of raising. The parsed arrays are cached
    (see :func:`cache_dir`) keyed by the file's sha256, so a second load is a hash
    plus one file read; ``cache=False`` neither reads nor writes the cache.
    """
    path = Path(path)
    if path.is_dir():
        raise FERDataError("is a folder, not a CSV file (use load_image_folder or load_dataset)", path)
    if not path.is_file():
        raise FERDataError("no such file", path)
    if not cache:
        with progress_stage(f"reading {path.name}"):
            return _parse_fer_csv(path, strict)
    cfile = _cache_file(_sha256(path), strict)
    if cfile.is_file():
        data = _read_cache(cfile, path)
        if data is not None:
            return data
    with progress_stage(f"reading {path.name} (cached for the next time)"):  # ~20 s for FER2013
        data = _parse_fer_csv(path, strict)
    _write_cache(cfile, data)
    return data


# ------------------------------------------------------------------ image folders

_FOLDER_SPLITS = {
    "train": "Training",
    "training": "Training",
    "val": "PublicTest",
    "valid": "PublicTest",
    "validation": "PublicTest",
    "publictest": "PublicTest",
    "test": "PrivateTest",
    "privatetest": "PrivateTest",
}


def _split_from_name(filename: str) -> str | None:
    for s in SPLITS:
        if filename.startswith(s + "_"):
            return s
    return None


def _to_uint8_gray(im: PILImage) -> PILImage:
    """Any Pillow mode -> mode ``L``: 16-bit scaled by 1/257, transparency composited on white."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        if im.mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0  # float images in 0..1
        elif im.mode.startswith("I;16") or (arr.size and float(arr.max()) > 255):
            arr = arr / 257.0  # 16-bit range 0..65535 -> 0..255
        return Image.fromarray(np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        # Composite transparency onto white so transparent pixels don't turn black.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    return im.convert("L")


def read_image_gray(path: str | os.PathLike, size: int | None = IMAGE_SIZE) -> np.ndarray:
    """Decode any common image file to grey uint8 (EXIF orientation applied), optionally
    resized to ``size x size`` (the whole image, aspect ratio not kept: face crops are
    expected). 16-bit images are scaled to 8 bits, transparent pixels become white.
    Raises :class:`FERDataError` naming the file when it cannot be decoded."""
    from PIL import Image

    def gray(im: PILImage) -> np.ndarray:
        g = _to_uint8_gray(im)
        if size is not None and g.size != (size, size):
            g = g.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(g, dtype=np.uint8)

    return decode_image(path, str(path), gray)


def _class_of(name: str, names: Sequence[str]) -> str | None:
    """Canonical class for a folder name; numeric folders ``0``..``K-1`` index ``names``."""
    if name.isdigit() and int(name) < len(names):
        return names[int(name)]
    return try_canonical(name)


def _subdirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))


def iter_class_dirs(root: Path, names: Sequence[str]) -> Iterator[tuple[str | None, Path, str]]:
    """Yield (folder split or None, class dir, class name) for both supported layouts.

    ``<root>/<class>/*`` when every sub-folder is a class name, or none of them has
    sub-folders of its own; else ``<root>/<split>/<class>/*``.
    """
    subdirs = _subdirs(root)
    flat = subdirs and (all(_class_of(p.name, names) for p in subdirs) or not any(_subdirs(p) for p in subdirs))
    if flat:
        for d in subdirs:
            yield None, d, _class_of(d.name, names) or d.name
        return
    for sd in subdirs:
        for d in _subdirs(sd):
            yield sd.name, d, _class_of(d.name, names) or d.name


def load_image_folder(
    root: str | os.PathLike,
    *,
    strict: bool = True,
    label_names: Sequence[str] | None = None,
) -> FERData:
    """Read ``<root>/<split>/<class>/*`` or ``<root>/<class>/*`` into grey 48x48 faces.

    Any size, colour mode or common format is accepted (see :func:`read_image_gray`).
    The split comes from Kaggle file-name prefixes (``PublicTest_``, ``PrivateTest_``,
    ``Training_``) when present, else from the split folder's name (``train`` ->
    Training, ``val`` -> PublicTest, ``test`` -> PrivateTest; others kept as they are),
    else ``"Unknown"``. Class folders are mapped onto the vocabulary by name
    (``anger`` -> ``angry``) or by number (``3`` -> ``names[3]``); folders that map to
    no class of the vocabulary (``contempt`` for FER2013) are read with label -1 and
    reported in ``skipped``. Files that are not images by extension are ignored and
    reported too; an undecodable image raises, or with ``strict=False`` is skipped
    and reported.
    """
    root = Path(root)
    if not root.is_dir():
        raise FERDataError("no such folder" if not root.exists() else "not a folder", root)
    names = tuple(label_names) if label_names is not None else FER2013
    images: list[np.ndarray] = []
    labels: list[int] = []
    splits: list[str] = []
    files: list[str] = []
    skipped: list[BadRecord] = []
    unmapped: dict[Path, int] = {}
    for folder_split, cdir, cname in iter_class_dirs(root, names):
        label = names.index(cname) if cname in names else -1
        for f in sorted(cdir.iterdir()):
            if not f.is_file() or f.name.startswith(".") or f.name.lower() in _JUNK_FILES:
                continue
            if f.suffix.lower() not in image_extensions():
                skipped.append(BadRecord(str(f), None, None, "ignored: not an image file extension fervid reads"))
                continue
            try:
                img = read_image_gray(f)
            except FERDataError as e:
                if strict:
                    raise
                skipped.append(BadRecord(str(f), None, None, e.reason))
                continue
            if label < 0:
                unmapped[cdir] = unmapped.get(cdir, 0) + 1
            split = _split_from_name(f.name) or _FOLDER_SPLITS.get(
                (folder_split or "").lower(), folder_split or "Unknown"
            )
            images.append(img)
            labels.append(label)
            splits.append(split)
            files.append(str(f))
    for cdir, n in unmapped.items():
        skipped.append(
            BadRecord(
                str(cdir),
                None,
                "class",
                f"class {cdir.name!r} is not in the vocabulary {list(names)}; {n} images kept with label -1",
            )
        )
    if not images:
        what = "empty folder" if not any(root.iterdir()) else "no images found"
        detail = f"; first problem: {skipped[0]}" if skipped else ""
        raise FERDataError(
            f"{what} (expected <root>/<split>/<class>/* or <root>/<class>/* of image files: "
            f"{', '.join(sorted(image_extensions()))}){detail}",
            root,
        )
    return FERData(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        splits=np.asarray(splits),
        index=np.arange(len(images), dtype=np.int64),
        label_names=names,
        source=str(root),
        files=np.asarray(files),
        skipped=skipped,
    )


def load_dataset(path: str | os.PathLike, *, strict: bool = True, cache: bool = True) -> FERData:
    """Load FER2013 from a CSV/CSV.GZ/TAR.GZ/ZIP file, a ``.npz`` pack or an image folder,
    whichever ``path`` is."""
    check_input_path(path)  # an empty path, a URL, a link loop: said as such, not "no such file"
    p = Path(path)
    kind = special_file_kind(p)
    if kind is not None:  # a FIFO would block the reader forever, a device never ends
        raise FERDataError(f"is {kind}, not a data file or folder", p)
    if p.is_dir():
        return load_image_folder(p, strict=strict)
    if p.suffix.lower() == ".npz":
        return load_pack(p)
    return load_fer2013(p, strict=strict, cache=cache)


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices keeping each class's share (every class keeps at least one image)."""
    rng = np.random.default_rng(seed)
    out = []
    classes = np.unique(labels)
    for c in classes:
        idx = np.flatnonzero(labels == c)
        k = max(1, int(round(n * len(idx) / len(labels))))
        out.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(out))


# ------------------------------------------------------------------ label sets


def normalize_labels(labels: Sequence[str] | str) -> tuple[str, ...]:
    """Label names as fervid writes them: emotion synonyms become the canonical name
    (``Anger`` -> ``angry``), other names are kept (stripped). ``"a,b,c"`` is split."""
    if isinstance(labels, str):
        labels = [s for s in labels.split(",")]
    out = tuple((try_canonical(s) or s.strip()) for s in labels if s.strip())
    if len(out) < 2:
        raise UserValueError(f"need at least two labels, got {list(out)}")
    if len(set(out)) != len(out):
        raise UserValueError(f"labels name the same class twice: {list(out)}")
    return out


def folder_labels(path: str | os.PathLike) -> tuple[str, ...]:
    """The class folders of an image folder (``<root>/<class>/*`` or ``<root>/<split>/<class>/*``)
    as labels, in FER2013 order for emotions, then other names alphabetically."""
    names = {cname for _, _, cname in iter_class_dirs(Path(path), FERPLUS8)}
    if not names:
        raise UserValueError(f"{path}: no class folders found")
    known = [n for n in FERPLUS8 if n in names]
    return tuple(known + sorted(names - set(known)))


def load_training_data(path: str | os.PathLike, labels: Sequence[str] | None) -> FERData:
    """Load ``path`` with ``labels`` as the vocabulary: an image folder is read with those
    class names (folders outside them get label -1 and are ignored); a FER2013 CSV or pack
    keeps only the rows whose emotion is among ``labels``, relabelled."""
    if labels is None:
        return load_dataset(path)
    names = normalize_labels(labels)
    if Path(path).is_dir():
        return load_image_folder(path, label_names=names)
    data = load_dataset(path)
    return relabel(data, names)


def relabel(data: FERData, names: Sequence[str]) -> FERData:
    """``data`` with labels re-expressed in ``names`` (classes absent from ``names`` -> -1)."""
    names = tuple(names)
    canon = [try_canonical(n) or n for n in names]
    lut = np.asarray(
        [canon.index(c) if (c := try_canonical(o) or o) in canon else -1 for o in data.label_names] + [-1],
        dtype=np.int64,
    )
    return dataclasses.replace(data, labels=lut[data.labels], label_names=names)


# ------------------------------------------------------------------ compact packs


def save_pack(data: FERData, path: str | os.PathLike) -> None:
    """Write a compact ``.npz`` of the images (horizontal pixel deltas, zlib level 9:
    neighbouring pixels are similar, so deltas compress ~25% better than raw pixels)."""
    _check_pack_fields(data.images, data.labels, data.splits, data.index, tuple(data.label_names), str(data.source))
    n, h, w = data.images.shape
    delta = np.diff(data.images, axis=2, prepend=np.zeros((n, h, 1), np.uint8))
    blob = zlib.compress(np.ascontiguousarray(delta).tobytes(), 9)
    with atomic_write(path) as f:  # a full disk or a kill never leaves half a pack
        np.savez(
            f,
            delta_zlib=np.frombuffer(blob, np.uint8),
            shape=np.asarray(data.images.shape),
            labels=data.labels,
            splits=np.asarray(data.splits, dtype=str),
            index=data.index,
            label_names=np.asarray(data.label_names, dtype=str),
            source_rows=np.int64(-1 if data.source_rows is None else data.source_rows),
        )


def load_pack(path: str | os.PathLike) -> FERData:
    """Read a pack written by :func:`save_pack`."""
    path = Path(path)
    if not path.is_file():
        raise FERDataError("no such file", path)
    try:
        with np.load(path, allow_pickle=False) as z:
            shape = tuple(int(s) for s in z["shape"])
            delta = np.frombuffer(zlib.decompress(z["delta_zlib"].tobytes()), np.uint8).reshape(shape)
            images = np.cumsum(delta, axis=2, dtype=np.uint8)  # uint8 wrap-around undoes the delta
            names = tuple(str(s) for s in z["label_names"]) if "label_names" in z.files else FER2013
            rows = int(z["source_rows"]) if "source_rows" in z.files else -1
            labels, splits, index = z["labels"], z["splits"], z["index"]
    except Exception as e:  # noqa: BLE001 - any failure to decode means "not a pack"
        raise FERDataError(f"not a fervid pack ({type(e).__name__}: {e})", path) from e
    _check_pack_fields(images, labels, splits, index, names, str(path))
    return FERData(
        images=images,
        labels=labels,
        splits=splits,
        index=index,
        label_names=names,
        source=str(path),
        source_rows=None if rows < 0 else rows,
    )


def _check_pack_fields(
    images: np.ndarray, labels: np.ndarray, splits: np.ndarray, index: np.ndarray, names: tuple[str, ...], source: str
) -> None:
    """A pack's arrays agree with each other: one label, split and index per image, and every
    label is -1 (none) or a class of ``names`` (a label 42 would count in the total and in no
    class)."""
    n = len(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise FERDataError(f"images must be uint8 N x H x W, got {images.dtype} {images.shape}", source)
    for key, arr in (("labels", labels), ("splits", splits), ("index", index)):
        if np.ndim(arr) != 1 or len(arr) != n:
            raise FERDataError(f"'{key}' has shape {np.shape(arr)}, expected one entry per image ({n})", source)
    if not np.issubdtype(np.asarray(labels).dtype, np.integer):
        raise FERDataError(f"'labels' must be integers, got {np.asarray(labels).dtype}", source)
    bad = np.flatnonzero((labels < -1) | (labels >= len(names)))
    if len(bad):
        raise FERDataError(
            f"{len(bad)} image(s) have a label outside 0..{len(names) - 1} ({', '.join(names)}) "
            f"or -1, e.g. label {int(labels[bad[0]])} at image {int(bad[0])}",
            source,
        )
