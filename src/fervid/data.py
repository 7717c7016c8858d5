"""Reading FER2013 the way people have it: Kaggle CSV (plain, gzip, the original tar.gz)
and image folders. Every reader returns the same in-memory form, :class:`FERData`.

The CSV is parsed once and cached as a compressed uint8 array keyed by the source
file's sha256, so later loads skip the 2304-integers-per-row parsing entirely.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .emotions import FER2013, SPLITS, try_canonical

IMAGE_SIZE = 48
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
CACHE_VERSION = 1


class FERDataError(ValueError):
    """Bad input data. Names the file and, where known, the line and field."""

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 line: int | None = None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        where = ""
        if self.path is not None:
            where = self.path
            if line is not None:
                where += f", line {line}"
            if field is not None:
                where += f", field {field!r}"
            where += ": "
        super().__init__(where + message)
        self.reason = message


@dataclass
class BadRecord:
    """One skipped row or file in lenient mode."""

    path: str
    line: int | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        return str(FERDataError(self.reason, self.path, self.line, self.field))


@dataclass
class FERData:
    """Faces as uint8 ``N x 48 x 48``, int labels in ``label_names`` order (-1 = none), and splits.

    ``index`` is each image's row in the source (CSV row number, 0-based, header
    excluded) so that FER+ votes can be aligned; ``files`` holds file paths for
    image-folder sources.
    """

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    index: np.ndarray
    label_names: tuple[str, ...] = FER2013
    source: str = ""
    files: np.ndarray | None = None
    skipped: list[BadRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise ValueError(f"images must be uint8 N x H x W, got {self.images.dtype} {self.images.shape}")
        for name in ("labels", "splits", "index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def split_names(self) -> list[str]:
        present = set(self.splits.tolist())
        ordered = [s for s in SPLITS if s in present]
        return ordered + sorted(present - set(ordered))

    def select(self, mask_or_idx: np.ndarray) -> FERData:
        """A subset by boolean mask or integer indices (skipped records stay with the parent)."""
        idx = np.flatnonzero(mask_or_idx) if mask_or_idx.dtype == bool else np.asarray(mask_or_idx)
        return FERData(
            images=self.images[idx], labels=self.labels[idx], splits=self.splits[idx],
            index=self.index[idx], label_names=self.label_names, source=self.source,
            files=None if self.files is None else self.files[idx],
        )

    def split(self, *names: str) -> FERData:
        """The images of one or more splits, e.g. ``data.split("Training")``."""
        unknown = [n for n in names if n not in set(self.splits.tolist())]
        if unknown:
            raise KeyError(f"split(s) {unknown} not in {self.source or 'data'}; present: {self.split_names}")
        return self.select(np.isin(self.splits, list(names)))

    def class_counts(self, split: str | None = None) -> dict[str, int]:
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


def cache_dir() -> Path:
    """Where parsed datasets are cached: ``$FERVID_CACHE`` or ``~/.cache/fervid``."""
    env = os.environ.get("FERVID_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fervid"


def _open_csv_text(path: Path) -> io.TextIOBase:
    """Open ``.csv``, ``.csv.gz`` or the original ``fer2013.tar.gz`` as text."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            tar = tarfile.open(path)
            members = [m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".csv")]
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise FERDataError(f"cannot read tar archive ({e})", path) from e
        if not members:
            raise FERDataError("tar archive holds no .csv file", path)
        # Prefer fer2013.csv over anything else in the archive.
        members.sort(key=lambda m: (Path(m.name).name != "fer2013.csv", m.name))
        raw = tar.extractfile(members[0])
        assert raw is not None
        return io.TextIOWrapper(raw, encoding="utf-8", newline="")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


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
                raise FERDataError(f"header lacks column(s) {missing}; found {header}", path, 1)
            i_emo, i_pix = cols.index("emotion"), cols.index("pixels")
            i_use = cols.index("usage") if "usage" in cols else None
            row_no = -1
            for row_no, row in enumerate(reader):
                line = row_no + 2  # 1-based, header is line 1
                if len(row) != len(cols):
                    bad(line, None, f"expected {len(cols)} fields, found {len(row)}")
                    continue
                try:
                    label = int(row[i_emo])
                except ValueError:
                    bad(line, "emotion", f"not an integer: {row[i_emo][:20]!r}")
                    continue
                if not 0 <= label < n_classes:
                    bad(line, "emotion", f"label {label} out of range 0..{n_classes - 1}")
                    continue
                usage = row[i_use].strip() if i_use is not None else "Training"
                if usage not in SPLITS:
                    bad(line, "Usage", f"unknown Usage {usage!r}; expected one of {list(SPLITS)}")
                    continue
                parts = row[i_pix].split()
                if len(parts) != N_PIXELS:
                    bad(line, "pixels", f"expected {N_PIXELS} pixel values, found {len(parts)}")
                    continue
                try:
                    px = np.array(parts, dtype=np.int32)
                except ValueError:
                    first = next((p for p in parts if not p.lstrip("-").isdigit()), "?")
                    bad(line, "pixels", f"non-numeric pixel value {first[:20]!r}")
                    continue
                if px.min() < 0 or px.max() > 255:
                    bad(line, "pixels", f"pixel value outside 0..255 ({px.min()}..{px.max()})")
                    continue
                images.append(px.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
                labels.append(label)
                splits.append(usage)
                index.append(row_no)
    except FERDataError:
        raise
    except (EOFError, OSError, zlib.error, tarfile.TarError, UnicodeDecodeError, csv.Error) as e:
        kind = "truncated or corrupt compressed file" if isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile)) else "cannot read file"
        raise FERDataError(f"{kind} ({type(e).__name__}: {e})", path) from e
    if not images:
        raise FERDataError("no valid rows", path)
    return FERData(
        images=np.stack(images), labels=np.asarray(labels, dtype=np.int64),
        splits=np.asarray(splits, dtype="U11"), index=np.asarray(index, dtype=np.int64),
        source=str(path), skipped=skipped,
    )


def load_fer2013(path: str | os.PathLike, *, strict: bool = True, cache: bool = True) -> FERData:
    """Read Kaggle ``fer2013.csv`` (or ``.csv.gz``, or the original ``fer2013.tar.gz``).

    ``strict=False`` skips bad rows and lists them in ``FERData.skipped`` instead of
    raising. The parsed arrays are cached (see :func:`cache_dir`) keyed by the file's
    sha256, so a second load is a hash plus one decompression.
    """
    path = Path(path)
    if not path.is_file():
        raise FERDataError("no such file", path)
    digest = _sha256(path)
    cfile = cache_dir() / f"fer2013-{digest[:32]}-v{CACHE_VERSION}-{'strict' if strict else 'lenient'}.npz"
    if cache and cfile.is_file():
        try:
            with np.load(cfile, allow_pickle=False) as z:
                skipped = [BadRecord(str(path), int(l) if l >= 0 else None, f or None, r)
                           for l, f, r in zip(z["skip_line"], z["skip_field"], z["skip_reason"])]
                return FERData(images=z["images"], labels=z["labels"], splits=z["splits"],
                               index=z["index"], source=str(path), skipped=skipped)
        except (OSError, ValueError, KeyError, zlib.error):
            pass  # a corrupt cache is rebuilt below, never trusted
    data = _parse_fer_csv(path, strict)
    if cache:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez_compressed(
            tmp, images=data.images, labels=data.labels, splits=data.splits, index=data.index,
            skip_line=np.asarray([s.line if s.line is not None else -1 for s in data.skipped], dtype=np.int64),
            skip_field=np.asarray([s.field or "" for s in data.skipped], dtype="U16"),
            skip_reason=np.asarray([s.reason for s in data.skipped], dtype="U200"),
        )
        os.replace(tmp, cfile)  # atomic: a concurrent reader never sees half a file
    return data


# ------------------------------------------------------------------ image folders

_FOLDER_SPLITS = {
    "train": "Training", "training": "Training",
    "val": "PublicTest", "valid": "PublicTest", "validation": "PublicTest", "publictest": "PublicTest",
    "test": "PrivateTest", "privatetest": "PrivateTest",
}


def _split_from_name(filename: str) -> str | None:
    for s in SPLITS:
        if filename.startswith(s + "_"):
            return s
    return None


def read_image_gray(path: str | os.PathLike, size: int | None = IMAGE_SIZE) -> np.ndarray:
    """Decode any common image file to grey uint8 (EXIF orientation applied), optionally resized."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32)
                arr = arr / max(float(arr.max()), 1.0) * 255.0
                im = Image.fromarray(arr.astype(np.uint8))
            elif im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # Composite transparency onto white so transparent pixels don't turn black.
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, rgba)
            g = im.convert("L")
            if size is not None and g.size != (size, size):
                g = g.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(g, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise FERDataError(f"unreadable image ({type(e).__name__}: {e})", path) from e


def _iter_class_dirs(root: Path) -> Iterator[tuple[str | None, Path, str]]:
    """Yield (folder split or None, class dir, canonical class) for both supported layouts."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs and all(try_canonical(p.name) for p in subdirs):
        for d in subdirs:
            yield None, d, try_canonical(d.name)  # type: ignore[misc]
        return
    for sd in subdirs:
        inner = sorted(p for p in sd.iterdir() if p.is_dir() and not p.name.startswith("."))
        for d in inner:
            yield sd.name, d, try_canonical(d.name) or d.name


def load_image_folder(
    root: str | os.PathLike, *, strict: bool = True, label_names: Sequence[str] | None = None,
) -> FERData:
    """Read ``<root>/<split>/<class>/*`` or ``<root>/<class>/*`` into grey 48x48 faces.

    The split comes from Kaggle file-name prefixes (``PublicTest_``, ``PrivateTest_``,
    ``Training_``) when present, else from the split folder's name (``train``, ``val``,
    ``test``), else ``"Unknown"``. Class folders are mapped onto the vocabulary by name
    (``anger`` -> ``angry``); with the default FER2013 vocabulary, folders that map to
    no FER2013 class (``contempt``) are read with label -1 and listed in ``skipped``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FERDataError("no such folder", root)
    names = tuple(label_names) if label_names is not None else FER2013
    images: list[np.ndarray] = []
    labels: list[int] = []
    splits: list[str] = []
    files: list[str] = []
    skipped: list[BadRecord] = []
    unmapped: dict[str, int] = {}
    for folder_split, cdir, cname in _iter_class_dirs(root):
        label = names.index(cname) if cname in names else -1
        for f in sorted(cdir.iterdir()):
            if not f.is_file() or f.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                img = read_image_gray(f)
            except FERDataError as e:
                if strict:
                    raise
                skipped.append(BadRecord(str(f), None, None, e.reason))
                continue
            if label < 0:
                unmapped[cname] = unmapped.get(cname, 0) + 1
            split = _split_from_name(f.name) or _FOLDER_SPLITS.get((folder_split or "").lower(), folder_split or "Unknown")
            images.append(img)
            labels.append(label)
            splits.append(split)
            files.append(str(f))
    for cname, n in unmapped.items():
        skipped.append(BadRecord(str(root / cname), None, "class", f"class {cname!r} is not in the vocabulary {list(names)}; {n} images kept with label -1"))
    if not images:
        raise FERDataError(f"no images found (expected <root>/<split>/<class>/* or <root>/<class>/* with {sorted(IMAGE_EXTENSIONS)})", root)
    return FERData(
        images=np.stack(images), labels=np.asarray(labels, dtype=np.int64),
        splits=np.asarray(splits), index=np.arange(len(images), dtype=np.int64),
        label_names=names, source=str(root), files=np.asarray(files), skipped=skipped,
    )


def load_dataset(path: str | os.PathLike, *, strict: bool = True, cache: bool = True) -> FERData:
    """Load FER2013 from a CSV/CSV.GZ/TAR.GZ file or an image folder, whichever ``path`` is."""
    p = Path(path)
    if p.is_dir():
        return load_image_folder(p, strict=strict)
    if p.suffix == ".npz":
        return load_pack(p)
    return load_fer2013(p, strict=strict, cache=cache)


def default_data_root() -> Path | None:
    """``$FERVID_DATA`` or ``../shared/data`` next to the current checkout, if present."""
    env = os.environ.get("FERVID_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [parent / "shared" / "data" for parent in here.parents]
    candidates += [parent.parent / "shared" / "data" for parent in here.parents]
    for c in candidates:
        if (c / "fer2013").is_dir():
            return c
    return None


# ------------------------------------------------------------------ compact packs

def save_pack(data: FERData, path: str | os.PathLike) -> None:
    """Write a compact ``.npz`` of the images (horizontal pixel deltas, zlib level 9:
    neighbouring pixels are similar, so deltas compress ~25% better than raw pixels)."""
    delta = np.diff(data.images, axis=2, prepend=np.zeros((len(data), IMAGE_SIZE, 1), np.uint8))
    blob = zlib.compress(np.ascontiguousarray(delta).tobytes(), 9)
    with open(path, "wb") as f:
        np.savez(f, delta_zlib=np.frombuffer(blob, np.uint8), shape=np.asarray(data.images.shape),
                 labels=data.labels, splits=data.splits.astype("U11"), index=data.index)


def load_pack(path: str | os.PathLike) -> FERData:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            shape = tuple(int(s) for s in z["shape"])
            delta = np.frombuffer(zlib.decompress(z["delta_zlib"].tobytes()), np.uint8).reshape(shape)
            images = np.cumsum(delta, axis=2, dtype=np.uint8)  # uint8 wrap-around undoes the delta
            return FERData(images=images, labels=z["labels"], splits=z["splits"], index=z["index"], source=str(path))
    except (OSError, ValueError, KeyError, zlib.error) as e:
        raise FERDataError(f"not a fervid pack ({type(e).__name__}: {e})", path) from e
