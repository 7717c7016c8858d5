"""Batch inference over corpora: folders of photos, many videos, or a manifest of paths, in
this process or on a Ray cluster, into one Parquet table.

    fervid batch photos/ --out results.parquet                               # in-process
    fervid batch manifest.parquet --out results.parquet --engine ray --address auto

>>> from fervid.batch import BatchOptions, run_batch
>>> summary = run_batch("photos/", "results.parquet", options=BatchOptions(model="fast"))

**Rows.** One row per face per image or processed video frame, the result schema's table
(:mod:`fervid.inference.schema`, ``docs/result-schema.md``): the same columns as
``results_to_dataframe`` and the video timeline CSV, for photos and video rows alike (a photo
is a one-frame video: frame 0, time 0.0, ``smoothed_*`` equal to ``p_*``), so no column is null
for lack of a field (landmarks are, for detectors without them). The Parquet metadata carries
the schema's version (``fervid_schema_version``). Rows are built from
:meth:`EmotionRecognizer.predict` and :meth:`EmotionRecognizer.stream`: detection and
classification are not re-implemented here.

**Side tables.** ``<out stem>.sources.parquet``: one row per source (``status`` ok, error or
partial -- a video that ended early --, faces, frames, seconds, the error); ``<out
stem>.errors.parquet``: the sources that failed, with the exception type and message. A bad
file never stops the run. The errors table has a ``source`` column, so it is itself a manifest
to retry.

**Sources** are named by their resolved path (:func:`source_identity`): the same file spelled
another way (relative, absolute, ``./``, through a symlink) is one source, processed once.
Manifests follow one rule (:func:`read_manifest`).

**Resumable.** Finished work is committed to ``<out>.parts/`` as Parquet part files (the faces,
then the list of sources it covers, each written to a temporary name and renamed: a part is
there whole or not at all). That folder is batch's own: created with a marker file
(:data:`PARTS_MARKER`); a folder of that name without it (or one holding an input) is refused,
and at the end only the files batch wrote there are removed. A run started again with the same
output skips the sources already committed (or already in a finished output) and merges
everything into ``out`` at the end, sorted by source, frame and face. A source replaced or
edited since it was processed (another size or modification time, :func:`file_version`) is
processed again, and a finished output changed since batch wrote it (a table unreadable, or
the faces table not holding the rows its sources table records) is refused. One run at a time
writes an output: a run holds ``.<out name>.lock`` beside it from its first check to its merge,
and a second run on the same output is refused at once. The merge takes each
source's rows from one place (the last part holding it, else the earlier output), so a run
killed at any point -- during the merge included -- and started again gives each row once, and
the engines give the same file. The settings that change rows (the recognizer's config but its
device, the video step and the result schema's version: :meth:`BatchOptions.settings`) are
recorded and must match when a run is continued.

**Engines.** ``local``: this process, one recognizer. ``ray``: Ray Data over a Ray cluster
(``address``: ``auto`` for the cluster this machine belongs to, ``ray://host:10001`` through
Ray Client, none: a local Ray instance); the work is split into tasks (a video, or
``chunk_size`` photos) run by ``workers`` actors that each load the model once; results stream
back to this process, which writes the output. Sources must be readable at the same path on
every node (a shared file system or a mounted bucket). Needs ``pip install 'fervid[ray]'``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fervid.errors import OutputError, UserFileNotFoundError, UserValueError
from fervid.inference.config import RecognizerConfig
from fervid.inference.schema import LEAD_COLUMNS, PARQUET_METADATA_KEY, SCHEMA_VERSION, order_columns
from fervid.inference.schema import frame_rows as frame_rows  # re-exported: the rows are the schema's
from fervid.inference.schema import image_rows as image_rows
from fervid.safety import (
    check_input_path,
    check_outputs_not_inputs,
    make_dir,
    output_error,
    preflight_output,
    write_text_atomic,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from fervid.inference.recognizer import EmotionRecognizer

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
ENGINES = ("local", "ray")
MANIFEST_COLUMNS = ("path", "source", "file", "filename")
"""A manifest's path column: the first of these its header has, in any case (see :func:`read_manifest`)."""

COLUMNS = LEAD_COLUMNS
"""The leading columns (:data:`fervid.inference.schema.LEAD_COLUMNS`); the ``p_<label>``,
``smoothed_<label>`` and landmark columns follow (:func:`fervid.inference.schema.columns`)."""


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """One input: a photo or a video file."""

    path: str
    kind: str  # "image" | "video"


def source_kind(path: str) -> str:
    return "video" if Path(path).suffix.lower() in VIDEO_EXTENSIONS else "image"


def _image_extensions() -> set[str]:
    from fervid.data.datasets import IMAGE_EXTENSIONS

    return set(IMAGE_EXTENSIONS)


def _looks_like_source(cell: str, folder: Path) -> bool:
    """A manifest cell that names a photo, video or URL (not a column name)."""
    c = cell.strip()
    media = _image_extensions() | VIDEO_EXTENSIONS
    return "://" in c or Path(c).suffix.lower() in media or (folder / c).is_file()


def _path_column(names: Sequence[str]) -> str | None:
    """The path column among ``names``: the first of :data:`MANIFEST_COLUMNS` (any case)."""
    lower: dict[str, str] = {}
    for n in names:
        lower.setdefault(str(n).strip().lower(), n)
    return next((lower[c] for c in MANIFEST_COLUMNS if c in lower), None)


def _no_path_column(where: Path, names: Sequence[str]) -> UserValueError:
    return UserValueError(
        f"{where}: no path column in the manifest's header ({', '.join(map(str, names))}): name the column of "
        f"paths {' or '.join(MANIFEST_COLUMNS)} (any case), or list one path per line without a header"
    )


def _csv_manifest(p: Path) -> list[str]:
    import csv

    try:
        with open(p, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets start with a byte-order mark
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserValueError(f"{p}: not a CSV manifest (UTF-8 text, one path per row): {e}") from e
    if not rows:
        raise UserValueError(f"{p}: empty manifest")
    first = rows[0]
    col = _path_column(first)
    if col is not None:  # a header naming the path column
        i = first.index(col)
        return [r[i].strip() for r in rows[1:] if len(r) > i and r[i].strip()]
    if not _looks_like_source(first[0], p.parent):
        raise _no_path_column(p, first)
    if max(len(r) for r in rows) > 1:
        raise UserValueError(
            f"{p}: a manifest without a header must list one path per line; this one has several columns: "
            f"add a header naming the path column ({', '.join(MANIFEST_COLUMNS)})"
        )
    return [r[0].strip() for r in rows]  # no header: every line is a path, the first included


def read_manifest(path: str | os.PathLike) -> list[str]:
    """The paths in a CSV or Parquet manifest; relative paths are taken from the manifest's
    folder. The rule: a table whose header names its path column ``path``, ``source``,
    ``file`` or ``filename`` (any case; the first of these it has), or -- CSV only -- a list
    of paths, one per line and no header (recognised by its first line naming a photo, a
    video, a URL or an existing file). A Parquet manifest of one column is that column.
    Anything else is a :class:`UserValueError` naming the columns found."""
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(p)
        names = table.column_names
        if not names:
            raise UserValueError(f"{p}: the manifest has no columns")
        col = _path_column(names) or (names[0] if len(names) == 1 else None)
        if col is None:
            raise _no_path_column(p, names)
        items = [str(v).strip() for v in table.column(col).to_pylist() if v is not None and str(v).strip()]
    else:
        items = _csv_manifest(p)
    return [str(Path(x)) if Path(x).is_absolute() or "://" in x else str(p.parent / x) for x in items]


def source_identity(path: str | os.PathLike) -> str:
    """What identifies a source across runs and spellings: its resolved absolute path
    (``corpus/a.jpg``, ``$PWD/corpus/a.jpg``, ``../corpus/./a.jpg`` and a symlink to it are
    one source); URLs as given."""
    text = os.fspath(path)
    return text if "://" in text else str(Path(text).resolve())


def list_sources(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Source]:
    """The photos and videos to process, sorted and without duplicates, each named by its
    :func:`source_identity` (resolved path): a folder (searched recursively for image and
    video extensions, hidden files left out), a manifest (``.csv``/``.parquet``), a single
    file, or a list of these."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    media = _image_extensions() | VIDEO_EXTENSIONS
    found: list[str] = []
    for item in items:
        check_input_path(item)  # "" is not "." (the working folder), a URL is not a missing file
        p = Path(item)
        if p.is_dir():
            from fervid.data.imagefile import describe_skipped, scan_folder

            picked, others = scan_folder(p, media)
            found += picked
            if others:  # left out, and said so (issue 25)
                warnings.warn(f"{p}: {describe_skipped(others, 'a photo or video format fervid reads')}", stacklevel=2)
        elif p.suffix.lower() in (".csv", ".parquet") and p.is_file():
            found += read_manifest(p)
        elif p.exists():
            found.append(str(p))
        else:
            raise UserFileNotFoundError(f"{p}: no such file or folder")
    unique = sorted({source_identity(f) for f in found})
    return [Source(s, source_kind(s)) for s in unique]


# --------------------------------------------------------------------------- options and rows


@dataclass(frozen=True, init=False)
class BatchOptions:
    """How each source is processed (the same on every worker): the recognizer's
    :class:`~fervid.inference.config.RecognizerConfig` and the video step.

    ``BatchOptions(RecognizerConfig(model="fast"), video_every=5)``, or the config's fields as
    keywords: ``BatchOptions(model="fast", video_every=5)`` (a field given as ``None`` keeps
    its default)."""

    config: RecognizerConfig
    video_every: int  # process every N-th video frame

    def __init__(self, config: RecognizerConfig | None = None, *, video_every: int = 1, **recognizer: Any):
        if config is not None and recognizer:
            raise UserValueError(f"give a RecognizerConfig or its fields ({', '.join(sorted(recognizer))}), not both")
        known = {f.name for f in dataclasses.fields(RecognizerConfig)}
        unknown = sorted(set(recognizer) - known)
        if unknown:
            raise UserValueError(
                f"unknown batch option(s) {', '.join(map(repr, unknown))}; known: video_every, {', '.join(sorted(known))}"
            )
        if config is None:
            config = RecognizerConfig(**{k: v for k, v in recognizer.items() if v is not None})
        if isinstance(video_every, bool) or not isinstance(video_every, int) or video_every < 1:
            raise UserValueError(f"video_every must be a whole number >= 1, got {video_every!r}")
        object.__setattr__(self, "config", config)  # checked when it was made
        object.__setattr__(self, "video_every", video_every)

    def validate(self) -> None:
        """Nothing to do: the options are checked when they are made (kept for callers of the
        earlier API)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a Ray worker gets its options this way); :meth:`from_dict` reads it."""
        return {"config": self.config.to_dict(), "video_every": self.video_every}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchOptions:
        return cls(RecognizerConfig.from_dict(data["config"]), video_every=int(data["video_every"]))

    def settings(self) -> dict[str, Any]:
        """What decides the rows (recorded with the output; a continued run must match): the
        whole recognizer config but the device and the service's pixel limit, and the video step."""
        cfg = self.config.to_dict()
        return {**{k: v for k, v in cfg.items() if k not in ("device", "max_pixels")}, "video_every": self.video_every}

    def recognizer(self) -> EmotionRecognizer:
        from fervid.inference.recognizer import EmotionRecognizer

        return EmotionRecognizer.from_config(self.config).load()


def file_version(path: str) -> dict[str, int | None]:
    """What tells a source's content changed since it was processed: its size and modification
    time (``bytes``, ``mtime_ns``; None for URLs and files that cannot be read), recorded in
    the sources table. A continued run processes again a source whose version differs."""
    if "://" in path:
        return {"bytes": None, "mtime_ns": None}
    try:
        st = os.stat(path)
    except OSError:
        return {"bytes": None, "mtime_ns": None}
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def process_sources(
    rec: EmotionRecognizer, sources: Iterable[Source], options: BatchOptions
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Face rows and one status row per source. Any failure of one source (unreadable,
    truncated, not an image) becomes its status row; the others go on."""
    rows: list[dict[str, Any]] = []
    status: list[dict[str, Any]] = []
    for s in sources:
        t0 = time.perf_counter()
        st: dict[str, Any] = {
            "source": s.path,
            "kind": s.kind,
            "status": "ok",
            "faces": 0,
            "frames": 0,
            "seconds": 0.0,
            "error_type": None,
            "error": None,
            **file_version(s.path),
        }
        mine: list[dict[str, Any]] = []
        try:
            if s.kind == "video":
                with rec.stream(s.path, every=options.video_every) as frames:
                    for fr in frames:
                        mine += frame_rows(fr, s.path)
                        st["frames"] += 1
                    if frames.stopped_early:
                        st.update(status="partial", error_type="VideoStoppedEarly", error=str(frames.stop_reason))
            else:
                mine = image_rows(rec.predict(s.path), s.path)
                st["frames"] = 1
        except Exception as e:  # noqa: BLE001 - one bad file must not stop a corpus; it is reported
            mine = []
            st.update(status="error", error_type=type(e).__name__, error=str(e) or repr(e))
        st["faces"] = len(mine)
        st["seconds"] = time.perf_counter() - t0
        rows += mine
        status.append(st)
    return rows, status


# --------------------------------------------------------------------------- output files


@dataclass(frozen=True)
class OutputPaths:
    faces: Path
    sources: Path
    errors: Path
    parts: Path

    @classmethod
    def of(cls, out: str | os.PathLike) -> OutputPaths:
        """The four paths of output ``out``. An empty ``out`` or one that names no file (``.``,
        ``/``: ``Path`` has no name to derive the side tables' from) is refused, naming it
        (``--out ''`` was a ValueError traceback from ``Path.with_name``)."""
        text = os.fsdecode(os.fspath(out))
        if not text.strip():
            raise UserValueError('the output path is empty (""): name a Parquet file, e.g. --out faces.parquet')
        p = Path(out)
        if not p.name:
            raise OutputError(f"cannot write {text}: is a folder, not a file (name a Parquet file in it)")
        suffix = p.suffix or ".parquet"
        return cls(
            p,
            p.with_name(f"{p.stem}.sources{suffix}"),
            p.with_name(f"{p.stem}.errors{suffix}"),
            p.with_name(p.name + ".parts"),
        )


META_KEY = b"fervid_batch"
T = TypeVar("T")


PARTS_MARKER = "fervid-batch-parts.json"
"""Written by batch into the ``<out>.parts`` folder it creates: batch uses, and at the end
removes, only a folder holding it, and in it only the files it wrote."""


def _write_atomic(table: pa.Table, path: Path, meta: dict[str, Any] | None = None) -> None:
    """``table`` to ``path`` through a temporary file; a file-system error (a full disk, no
    permission) is an :class:`~fervid.errors.OutputError` naming ``path``."""
    import pyarrow.parquet as pq

    extra = {PARQUET_METADATA_KEY: SCHEMA_VERSION.encode()}
    if meta is not None:
        extra[META_KEY] = json.dumps(meta).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except OSError as e:  # pyarrow's IO errors are OSErrors, without the path
        raise output_error(e, path) from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _claim_parts(paths: OutputPaths, *, create: bool) -> bool:
    """Whether ``paths.parts`` is batch's own working folder (it holds :data:`PARTS_MARKER`);
    with ``create``, make it (and the marker) when missing. A folder of that name that batch
    did not create is refused: batch never adds to, nor deletes, what is not its own."""
    parts = paths.parts
    if parts.exists() or parts.is_symlink():
        if not parts.is_dir() or parts.is_symlink():
            raise OutputError(f"cannot use {parts} as the working folder of {paths.faces}: it is not a folder")
        if not (parts / PARTS_MARKER).is_file():
            raise OutputError(
                f"{parts} exists and was not made by fervid batch (no {PARTS_MARKER} in it): batch keeps the work "
                f"of {paths.faces} in that folder and removes it at the end, so it will not use a folder it did "
                "not create; move it away or choose another --out"
            )
        return True
    if not create:
        return False
    make_dir(parts)
    write_text_atomic(parts / PARTS_MARKER, json.dumps({"output": str(paths.faces.resolve()), "pid": os.getpid()}))
    return True


def _remove_parts(parts: Path) -> None:
    """Remove what batch wrote in ``parts`` (its part files, settings, temporary files, then
    the marker) and the folder once empty; anything else found there is left with the folder
    (and the marker, so the folder stays batch's)."""
    temps = [*parts.glob(".part-*.tmp"), *parts.glob(".settings.json.*.tmp*"), *parts.glob(f".{PARTS_MARKER}.*.tmp*")]
    ours = [*parts.glob("part-*.parquet"), *temps, parts / "settings.json"]
    for f in ours:
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
    if all(f.name == PARTS_MARKER for f in parts.iterdir()):
        (parts / PARTS_MARKER).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            parts.rmdir()


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows with different fields (photos, video frames) as one table: every field a column,
    null where a row lacks it (``pa.Table.from_pylist`` would keep only the first row's fields)."""
    import pyarrow as pa

    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.table({k: [r.get(k) for r in rows] for k in keys})


class PartWriter:
    """Buffers finished sources and commits them to ``parts/`` as a faces part, then the
    part's source list (the commit record), every ``flush_every`` sources or ``flush_seconds``."""

    def __init__(self, parts: Path, flush_every: int = 256, flush_seconds: float = 60.0):
        self.parts = parts
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.rows: list[dict[str, Any]] = []
        self.status: list[dict[str, Any]] = []
        self.last = time.monotonic()

    def add(self, rows: list[dict[str, Any]], status: list[dict[str, Any]]) -> None:
        self.rows += rows
        self.status += status
        if len(self.status) >= self.flush_every or time.monotonic() - self.last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.status:
            name = f"part-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:12]}"
            if self.rows:
                _write_atomic(_table(self.rows), self.parts / f"{name}.faces.parquet")
            _write_atomic(_table(self.status), self.parts / f"{name}.sources.parquet")  # the commit record
        self.rows, self.status = [], []
        self.last = time.monotonic()


def _guarded(read: Callable[[Path], T], path: Path) -> T:
    """``read(path)`` for one of batch's own tables; one that is not readable Parquet (replaced,
    truncated or damaged since batch wrote it) is a :class:`UserValueError` naming it."""
    import pyarrow as pa

    try:
        return read(path)
    except (pa.ArrowException, OSError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserValueError(
            f"{path}: not a readable Parquet table ({reason}); it was changed or damaged after fervid batch "
            "wrote it: restore it, or delete the output's tables (and its .parts folder) to process every source again"
        ) from e


def _read(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A part or output table (only ``columns`` of it, those it has, when given), its ``source``
    column as :func:`source_identity` gives it: tables written before sources were identified by
    their resolved path hold them as the user spelled them (relative to the folder that run
    started in, taken to be this one)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if columns is not None:
        present = set(_guarded(pq.read_schema, path).names)
        columns = [c for c in columns if c in present]
    table = _guarded(lambda p: pq.read_table(p, columns=columns), path)
    if "source" not in table.column_names or not table.num_rows:
        return table
    col = table.column("source")
    spelled = {u for u in pc.unique(col).to_pylist() if u is not None and not os.path.isabs(u) and "://" not in u}
    if not spelled:  # the usual case: written by this version
        return table
    uniques = pc.unique(col)
    mapping = {u: u if u is None or u not in spelled else source_identity(u) for u in uniques.to_pylist()}
    fixed = pa.array([mapping[u] for u in uniques.to_pylist()], type=col.type).take(pc.index_in(col, value_set=uniques))
    return table.set_column(table.column_names.index("source"), "source", fixed)


def _committed_parts(parts: Path) -> list[str]:
    """Names of the complete parts; a faces file without its source list (a crash between the
    two writes) is removed: its sources are not done and run again."""
    if not (parts / PARTS_MARKER).is_file():  # not batch's folder (refused by _claim_parts)
        return []
    for tmp in parts.glob(".part-*.tmp"):
        tmp.unlink(missing_ok=True)
    names = sorted(f.name[: -len(".sources.parquet")] for f in parts.glob("part-*.sources.parquet"))
    for f in parts.glob("part-*.faces.parquet"):
        if f.name[: -len(".faces.parquet")] not in names:
            f.unlink()
    return names


def _settings_of(path: Path) -> dict[str, Any] | None:
    import pyarrow.parquet as pq

    meta = _guarded(pq.read_schema, path).metadata or {}
    return json.loads(meta[META_KEY]) if META_KEY in meta else None


def _check_settings(paths: OutputPaths, settings: dict[str, Any]) -> None:
    """A continued run must produce rows like the ones already there."""
    recorded = None
    if (paths.parts / "settings.json").is_file():
        recorded = json.loads((paths.parts / "settings.json").read_text())
    elif paths.sources.is_file():
        recorded = _settings_of(paths.sources)
    if recorded is not None and recorded != settings:
        diff = {
            k: (recorded.get(k), settings.get(k))
            for k in set(recorded) | set(settings)
            if recorded.get(k) != settings.get(k)
        }
        raise UserValueError(
            f"{paths.faces} was made with other settings ({', '.join(f'{k}: {a!r} then, {b!r} now' for k, (a, b) in sorted(diff.items()))}); "
            "use another --out, or delete it to start again"
        )


def _check_finished_output(paths: OutputPaths) -> None:
    """A finished output is its three tables, its faces table holding, for each source, the
    number of rows its sources table records. Anything else -- the faces table deleted (every
    source would count as "done" and nothing be written), truncated, replaced or edited -- is
    refused before any work, naming the files; the sources of committed parts are left out of
    the count (a merge killed between writing the faces table and the sources table)."""
    import pyarrow.compute as pc

    if not paths.sources.is_file():
        return
    if not paths.faces.is_file():
        raise UserValueError(
            f"{paths.faces} is missing, but {paths.sources} records its sources as done: restore "
            f"{paths.faces.name}, or delete {paths.sources.name} and {paths.errors.name} to process every source again"
        )
    # the faces table's source column only: the check counts rows, and that table is the big one
    src, faces = _read(paths.sources), _read(paths.faces, columns=["source"])
    if "source" not in src.column_names or (faces.num_rows and "source" not in faces.column_names):
        raise UserValueError(f"{paths.sources} or {paths.faces} is not a fervid batch table (no source column)")
    if "faces" not in src.column_names:  # no counts recorded: nothing to compare
        return
    pending: set[str] = set()
    for name in _committed_parts(paths.parts):
        pending |= set(_read(paths.parts / f"{name}.sources.parquet").column("source").to_pylist())
    recorded = {s: int(n or 0) for s, n in zip(src.column("source").to_pylist(), src.column("faces").to_pylist())}
    found: dict[str, int] = {}
    if faces.num_rows:
        counts = pc.value_counts(faces.column("source")).to_pylist()
        found = {c["values"]: int(c["counts"]) for c in counts}
    wrong = sorted(s for s in set(recorded) | set(found) if s not in pending and recorded.get(s, 0) != found.get(s, 0))
    if wrong:
        raise UserValueError(
            f"{paths.faces} does not hold the rows {paths.sources} records for {len(wrong)} source(s) (e.g. {wrong[0]}: "
            f"{recorded.get(wrong[0], 0)} recorded, {found.get(wrong[0], 0)} found): it was changed after fervid batch "
            f"wrote it; restore it, or delete {paths.faces.name}, {paths.sources.name} and {paths.errors.name} to "
            "process every source again"
        )


def _done_sources(paths: OutputPaths) -> dict[str, tuple[int | None, int | None]]:
    """The sources already done (in the finished output or a committed part), each with the
    version (:func:`file_version`) it was processed at; the latest part's wins."""
    tables = [paths.sources] if paths.sources.is_file() else []
    tables += [paths.parts / f"{n}.sources.parquet" for n in _committed_parts(paths.parts)]
    done: dict[str, tuple[int | None, int | None]] = {}
    for path in tables:
        t = _read(path)
        n = t.num_rows
        size = t.column("bytes").to_pylist() if "bytes" in t.column_names else [None] * n
        mtime = t.column("mtime_ns").to_pylist() if "mtime_ns" in t.column_names else [None] * n
        done.update(zip(t.column("source").to_pylist(), zip(size, mtime)))
    return done


def _is_current(source: Source, done: dict[str, tuple[int | None, int | None]]) -> bool:
    """Whether ``source`` is done at its present version: a file replaced or edited since (another
    size or modification time) is not. Tables written before versions were recorded (None) and
    files that cannot be read now count as done."""
    if source.path not in done:
        return False
    then = done[source.path]
    now = file_version(source.path)
    return None in then or None in now.values() or then == (now["bytes"], now["mtime_ns"])


def _ordered(table: pa.Table) -> pa.Table:
    table = table.select(order_columns(table.column_names))
    keys = [(c, "ascending") for c in ("source", "frame", "face") if c in table.column_names]
    return table.sort_by(keys) if keys and table.num_rows else table


def _without(table: pa.Table, sources: set[str]) -> pa.Table:
    """``table``'s rows whose ``source`` is not in ``sources``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not sources or not table.num_rows:
        return table
    mask = pc.is_in(table.column("source"), value_set=pa.array(sorted(sources), type=table.schema.field("source").type))
    return table.filter(pc.invert(mask))


def merge(paths: OutputPaths, settings: dict[str, Any]) -> tuple[int, int]:
    """Everything committed (an earlier output and the parts) into the three output files,
    then the parts removed. Returns (faces, sources).

    Crash-safe: each source's rows come from one place only, the last part that holds it,
    else the earlier output. A run killed after writing some or all of the outputs and before
    the parts are removed merges again to the same files, each row once."""
    import pyarrow as pa

    parts = [
        (_read(paths.parts / f"{n}.sources.parquet"), paths.parts / f"{n}.faces.parquet")
        for n in _committed_parts(paths.parts)
    ]
    last: dict[str, int] = {}  # source -> the last part that holds it
    for i, (src, _) in enumerate(parts):
        last.update(dict.fromkeys(src.column("source").to_pylist(), i))
    faces: list[pa.Table] = []
    sources: list[pa.Table] = []
    if paths.sources.is_file():  # a finished output: its faces file is complete too
        sources.append(_without(_read(paths.sources), set(last)))
        if paths.faces.is_file():
            faces.append(_without(_read(paths.faces), set(last)))
    for i, (src, faces_file) in enumerate(parts):
        later = {s for s, j in last.items() if j > i}  # redone by a later part (not by batch itself)
        sources.append(_without(src, later))
        if faces_file.is_file():
            faces.append(_without(_read(faces_file), later))
    strip = [t.replace_schema_metadata(None) for t in faces]
    face_table = _ordered(pa.concat_tables(strip, promote_options="permissive")) if strip else _table([])
    src_table = pa.concat_tables([t.replace_schema_metadata(None) for t in sources], promote_options="permissive")
    src_table = src_table.sort_by([("source", "ascending")])
    err_table = src_table.filter(pa.compute.not_equal(src_table.column("status"), "ok")).select(
        ["source", "kind", "status", "error_type", "error"]
    )
    make_dir(paths.faces.parent)
    try:
        _write_atomic(face_table, paths.faces, settings)
        _write_atomic(err_table, paths.errors, settings)
        _write_atomic(src_table, paths.sources, settings)  # last: its presence marks a finished output
    except OutputError as e:
        if parts:
            raise OutputError(
                f"{e}; the finished work is kept in {paths.parts}: make room and run the same command again "
                "to write the output (nothing is processed again)"
            ) from e
        raise
    if paths.parts.is_dir():
        _remove_parts(paths.parts)
    return face_table.num_rows, src_table.num_rows


# --------------------------------------------------------------------------- the run


@dataclass
class BatchSummary:
    """What a run did: sources found / done earlier / processed now, faces and frames
    produced now, sources that failed, seconds, and the output files."""

    sources: int
    done_earlier: int
    processed: int
    faces: int
    frames: int
    errors: int
    seconds: float
    engine: str
    workers: int
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def faces_per_s(self) -> float:
        return self.faces / self.seconds if self.seconds > 0 else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "faces_per_s": self.faces_per_s, "frames_per_s": self.frames_per_s}


def chunks(sources: Sequence[Source], chunk_size: int) -> list[list[Source]]:
    """Tasks: each video alone (its frames are tracked in order), photos ``chunk_size`` at a time."""
    videos = [[s] for s in sources if s.kind == "video"]
    images = [s for s in sources if s.kind != "video"]
    return videos + [images[i : i + chunk_size] for i in range(0, len(images), chunk_size)]


def _encode(chunk: Sequence[Source]) -> str:
    return json.dumps([[s.path, s.kind] for s in chunk])


def _decode(text: str) -> list[Source]:
    return [Source(p, k) for p, k in json.loads(text)]


class RayWorker:
    """A Ray Data actor: loads the recognizer once, then turns tasks into rows (JSON, so the
    driver gets exactly the values the local engine computes)."""

    def __init__(self, options: dict[str, Any], threads: int = 1):
        import cv2
        import torch

        torch.set_num_threads(threads)  # the actor's share of the node, not every core
        cv2.setNumThreads(threads)
        self.options = BatchOptions.from_dict(options)
        self.rec = self.options.recognizer()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        faces, status = [], []
        for task in batch["task"]:
            rows, st = process_sources(self.rec, _decode(str(task)), self.options)
            faces.append(json.dumps(rows))
            status.append(json.dumps(st))
        return {"faces": np.asarray(faces, dtype=object), "status": np.asarray(status, dtype=object)}


def _run_local(tasks: list[list[Source]], options: BatchOptions) -> Iterator[tuple[list[dict], list[dict]]]:
    rec = options.recognizer()
    for t in tasks:
        yield process_sources(rec, t, options)


def _run_ray(
    tasks: list[list[Source]], options: BatchOptions, address: str | None, workers: int | None, threads: int
) -> tuple[Iterator[tuple[list[dict], list[dict]]], int]:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise UserValueError("--engine ray needs Ray: pip install 'fervid[ray]' (or use --engine local)") from e
    if not ray.is_initialized():  # else: the caller's Ray (a test's local cluster, a notebook's)
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local Ray instance on this machine
            ray.init(num_cpus=workers * threads if workers else None, log_to_driver=False, include_dashboard=False)
    n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # fervid's own bar counts sources, faces and frames
    gpus = 1 if options.config.device.startswith("cuda") else 0
    items = ray.data.from_items([{"task": _encode(t)} for t in tasks], override_num_blocks=len(tasks))
    ds = items.map_batches(
        RayWorker,
        fn_constructor_kwargs={"options": options.to_dict(), "threads": threads},
        batch_size=1,
        concurrency=n,
        num_cpus=threads,
        num_gpus=gpus,
    )

    def results() -> Iterator[tuple[list[dict], list[dict]]]:
        for row in ds.iter_rows():
            yield json.loads(row["faces"]), json.loads(row["status"])

    return results(), n


def _check_parts_not_input(paths: OutputPaths, identities: Iterable[str]) -> None:
    """The working folder ``<out>.parts`` is removed at the end: it must not be, nor hold,
    an input (``fervid batch x.parquet.parts --out x.parquet``). ``identities``: the inputs'
    :func:`source_identity`."""
    parts = source_identity(paths.parts)
    for inp in identities:
        if inp == parts or inp.startswith(parts + os.sep):
            raise OutputError(
                f"the working folder of {paths.faces} would be {paths.parts}, which is or holds the input {inp}: "
                "choose another --out"
            )


@contextlib.contextmanager
def _output_lock(paths: OutputPaths) -> Iterator[None]:
    """Hold ``out``'s lock (a hidden ``.<out name>.lock`` beside it, removed at the end) for
    the whole run: a second run on the same output at once is refused (it did all the work
    again, then failed with "the folder does not exist" while the first removed its parts)."""
    from filelock import FileLock, Timeout

    make_dir(paths.faces.parent)
    path = paths.faces.with_name(f".{paths.faces.name}.lock")
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout as e:
        raise OutputError(
            f"{paths.faces} is being written by another fervid batch run (it holds {path}): wait for it to "
            "finish, or choose another --out"
        ) from e
    except OSError as e:
        raise output_error(e, path) from e
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the release: no other run can hold this file's lock now
        lock.release()


def _commit(
    writer: PartWriter,
    paths: OutputPaths,
    rows: list[dict[str, Any]] | None = None,
    status: list[dict[str, Any]] | None = None,
) -> None:
    """Add results to ``writer`` (or, without them, flush it); a write that fails (a full
    disk) says what is kept and how to go on."""
    pending = len(writer.status) + len(status or [])
    try:
        if status is None:
            writer.flush()
        else:
            writer.add(rows or [], status)
    except OutputError as e:
        kept = len(_done_sources(paths))
        raise OutputError(
            f"{e}; {kept} finished source(s) are kept in {paths.parts} and the last {pending} could not be "
            "saved: make room and run the same command again to continue from there"
        ) from e


def run_batch(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    options: BatchOptions | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    chunk_size: int = 16,
    flush_every: int = 256,
    progress: bool = True,
) -> BatchSummary:
    """Process every photo and video of ``source`` into ``out`` (Parquet; see the module
    docstring for the rows, side tables, resuming and engines). Returns a summary."""
    from fervid.runtime import progress_bar

    options = options or BatchOptions()
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise UserValueError("fervid batch writes Parquet: pip install 'fervid[batch]' (or 'fervid[ray]')") from e
    if engine not in ENGINES:
        raise UserValueError(f"unknown engine {engine!r}; available: {', '.join(ENGINES)}")
    if chunk_size < 1 or flush_every < 1 or threads_per_worker < 1 or (workers is not None and workers < 1):
        raise UserValueError("chunk_size, flush_every, threads_per_worker and workers must be >= 1")
    paths = OutputPaths.of(out)
    all_sources = list_sources(source)
    if not all_sources:
        raise UserValueError(f"{source}: no photos or videos found")
    # Issue 12: no output lands on an input (the manifest, a photo, a video), and a path that
    # cannot be written fails now, not after the work.
    named = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    label = ", ".join(str(x) for x in named)
    check_outputs_not_inputs(
        [(p, label) for p in (paths.faces, paths.sources, paths.errors)],
        [*named, *(s.path for s in all_sources)],
        "Parquet output",
    )
    preflight_output(paths.faces)
    _check_parts_not_input(paths, [*map(source_identity, named), *(s.path for s in all_sources)])
    with _output_lock(paths):  # one run at a time writes an output
        _claim_parts(paths, create=False)  # a folder of that name that batch did not make is refused now
        # the schema's version too: a run continued on rows of another schema would mix column names
        settings = {**options.settings(), "schema_version": SCHEMA_VERSION}
        _check_finished_output(paths)
        _check_settings(paths, settings)
        done = _done_sources(paths)
        todo = [s for s in all_sources if not _is_current(s, done)]  # new, or changed since
        t0 = time.perf_counter()
        faces = frames = errors = 0
        n_workers = 1
        if todo:
            _claim_parts(paths, create=True)
            write_text_atomic(paths.parts / "settings.json", json.dumps(settings))
            tasks = chunks(todo, chunk_size)
            if engine == "local":
                results: Iterator[tuple[list[dict], list[dict]]] = _run_local(tasks, options)
            else:
                results, n_workers = _run_ray(tasks, options, address, workers, threads_per_worker)
            writer = PartWriter(paths.parts, flush_every)
            bar = progress_bar(total=len(todo), desc=f"fervid batch ({engine})", unit="src", enabled=progress)
            for rows, status in results:
                _commit(writer, paths, rows, status)
                faces += len(rows)
                frames += sum(int(s["frames"]) for s in status)
                errors += sum(s["status"] != "ok" for s in status)
                bar.update(len(status))
                el = time.perf_counter() - t0
                bar.set_postfix(faces=faces, errors=errors, fps=f"{frames / el:.1f}", faces_s=f"{faces / el:.1f}")
            bar.close()
            _commit(writer, paths)
        seconds = time.perf_counter() - t0
        pending = paths.parts.is_dir() and _committed_parts(paths.parts)
        if (
            todo or pending or not paths.sources.is_file() or not paths.errors.is_file()
        ):  # a lost errors table is rewritten
            merge(paths, settings)
        return BatchSummary(
            len(all_sources),
            len(all_sources) - len(todo),
            len(todo),
            faces,
            frames,
            errors,
            seconds,
            engine,
            n_workers,
            {"faces": str(paths.faces), "sources": str(paths.sources), "errors": str(paths.errors)},
        )


__all__ = [
    "ENGINES",
    "VIDEO_EXTENSIONS",
    "BatchOptions",
    "BatchSummary",
    "OutputPaths",
    "Source",
    "list_sources",
    "process_sources",
    "read_manifest",
    "run_batch",
    "source_identity",
]
