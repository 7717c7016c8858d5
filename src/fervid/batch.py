"""Batch inference over corpora: folders of photos, many videos, or a manifest of paths, in
this process or on a Ray cluster, into one Parquet table.

    fervid batch photos/ --out results.parquet                               # in-process
    fervid batch manifest.parquet --out results.parquet --engine ray --address auto

>>> from fervid.batch import BatchOptions, run_batch
>>> summary = run_batch("photos/", "results.parquet", options=BatchOptions(model="fast"))

**Rows.** One row per face per image or processed video frame: ``source`` (the path), ``kind``
(``image``/``video``), ``frame`` and ``time`` (videos; null for images), ``width``/``height``,
``face`` (its index in the image or frame), then the face's own fields exactly as
:meth:`fervid.inference.recognizer.FaceResult.to_dict` (photos, as ``fervid predict --json``) or
:meth:`fervid.inference.video.TrackedFace.to_dict` (videos, as ``fervid video``) give them:
the box as ``x, y, w, h``, ``probabilities`` as one ``p_<label>`` column per emotion,
``smoothed`` as ``smoothed_<label>``, other nested fields (landmarks, when the detector gives
them) kept as they are. Rows are built from :meth:`EmotionRecognizer.predict` and
:meth:`EmotionRecognizer.stream`: detection and classification are not re-implemented here.

**Side tables.** ``<out stem>.sources.parquet``: one row per source (``status`` ok, error or
partial -- a video that ended early --, faces, frames, seconds, the error); ``<out
stem>.errors.parquet``: the sources that failed, with the exception type and message. A bad
file never stops the run. The errors table has a ``source`` column, so it is itself a manifest
to retry.

**Resumable.** Finished work is committed to ``<out>.parts/`` as Parquet part files (the faces,
then the list of sources it covers, each written to a temporary name and renamed: a part is
there whole or not at all). A run started again with the same output skips the sources already
committed (or already in a finished output) and merges everything into ``out`` at the end,
sorted by source, frame and face, so no source is counted twice and the engines give the same
file. The settings that change rows (model, detector, backend, video step) are recorded and must
match when a run is continued.

**Engines.** ``local``: this process, one recognizer. ``ray``: Ray Data over a Ray cluster
(``address``: ``auto`` for the cluster this machine belongs to, ``ray://host:10001`` through
Ray Client, none: a local Ray instance); the work is split into tasks (a video, or
``chunk_size`` photos) run by ``workers`` actors that each load the model once; results stream
back to this process, which writes the output. Sources must be readable at the same path on
every node (a shared file system or a mounted bucket). Needs ``pip install 'fervid[ray]'``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fervid.errors import UserFileNotFoundError, UserValueError
from fervid.safety import check_outputs_not_inputs, preflight_output, write_text_atomic

if TYPE_CHECKING:
    import pyarrow as pa

    from fervid.inference.recognizer import EmotionRecognizer

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
ENGINES = ("local", "ray")
MANIFEST_COLUMNS = ("path", "source", "file", "filename")
"""A manifest's path column: the first of these it has (else its first column)."""

# The order of the leading columns; the probability columns and any others follow.
COLUMNS = (
    "source",
    "kind",
    "frame",
    "time",
    "width",
    "height",
    "face",
    "face_id",
    "x",
    "y",
    "w",
    "h",
    "score",
    "label",
    "confidence",
    "raw_label",
    "ambiguity",
    "top2_margin",
    "ambiguous",
    "labels_above",
    "key_frame",
)


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


def read_manifest(path: str | os.PathLike) -> list[str]:
    """The paths in a CSV or Parquet manifest (column ``path``, ``source``, ``file`` or
    ``filename``, else the first); relative paths are taken from the manifest's folder."""
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(p)
        names = table.column_names
        values = None
    else:
        import csv

        with open(p, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise UserValueError(f"{p}: empty manifest")
        names, values = rows[0], rows[1:]
    if not names:
        raise UserValueError(f"{p}: the manifest has no columns")
    col = next((c for c in MANIFEST_COLUMNS if c in names), names[0])
    if values is None:
        items = [str(v) for v in table.column(col).to_pylist() if v not in (None, "")]
    else:
        i = names.index(col)
        items = [r[i] for r in values if len(r) > i and r[i].strip()]
    return [str(Path(x)) if Path(x).is_absolute() or "://" in x else str(p.parent / x) for x in items]


def list_sources(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Source]:
    """The photos and videos to process, sorted and without duplicates: a folder (searched
    recursively for image and video extensions, hidden files left out), a manifest
    (``.csv``/``.parquet``), a single file, or a list of these."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    media = _image_extensions() | VIDEO_EXTENSIONS
    found: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found += [
                str(f)
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in media
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            ]
        elif p.suffix.lower() in (".csv", ".parquet") and p.is_file():
            found += read_manifest(p)
        elif p.exists():
            found.append(str(p))
        else:
            raise UserFileNotFoundError(f"{p}: no such file or folder")
    unique = sorted(set(found))
    return [Source(s, source_kind(s)) for s in unique]


# --------------------------------------------------------------------------- options and rows


@dataclass(frozen=True)
class BatchOptions:
    """How each source is processed (the same on every worker)."""

    model: str = "default"
    detector: str | None = None  # None: the recognizer's default detector
    backend: str = "auto"
    device: str = "auto"
    video_every: int = 1  # process every N-th video frame
    threshold: float | None = None  # labels_above threshold (None: the recognizer's default)

    def validate(self) -> None:
        from fervid.inference.options import BACKENDS

        if self.video_every < 1:
            raise UserValueError(f"video_every must be >= 1, got {self.video_every}")
        if self.backend not in BACKENDS:
            raise UserValueError(f"unknown backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise UserValueError(f"threshold must be in [0, 1], got {self.threshold}")

    def settings(self) -> dict[str, Any]:
        """What decides the rows (recorded with the output; a continued run must match)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "device"}

    def recognizer(self) -> EmotionRecognizer:
        from fervid.inference.recognizer import EmotionRecognizer

        kw: dict[str, Any] = {"model": self.model, "device": self.device, "backend": self.backend}
        if self.detector is not None:
            kw["detector"] = self.detector
        if self.threshold is not None:
            kw["threshold"] = self.threshold
        return EmotionRecognizer(**kw).load()


def _flatten_face(face: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in face.items():
        if k == "box":
            out.update({c: int(v[c]) for c in ("x", "y", "w", "h")})
        elif k == "probabilities":
            out.update({f"p_{lab}": float(p) for lab, p in v.items()})
        elif k == "landmarks":  # as results_to_dataframe names them: right_eye_x, right_eye_y, ...
            out.update({f"{name}_{c}": float(xy[i]) for name, xy in (v or {}).items() for i, c in enumerate("xy")})
        elif isinstance(v, dict):
            out.update({f"{k}_{sub}": x for sub, x in v.items()})
        else:
            out[k] = v
    return out


def image_rows(result: Any, source: str) -> list[dict[str, Any]]:
    """Rows of one :class:`~fervid.inference.recognizer.ImageResult`."""
    return [
        {
            "source": source,
            "kind": "image",
            "frame": None,
            "time": None,
            "width": result.width,
            "height": result.height,
            "face": i,
            **_flatten_face(f.to_dict()),
        }
        for i, f in enumerate(result.faces)
    ]


def frame_rows(frame: Any, source: str) -> list[dict[str, Any]]:
    """Rows of one :class:`~fervid.inference.video.FrameResult`."""
    return [
        {
            "source": source,
            "kind": "video",
            "frame": int(frame.index),
            "time": float(frame.time),
            "width": frame.width,
            "height": frame.height,
            "face": i,
            **_flatten_face(f.to_dict()),
        }
        for i, f in enumerate(frame.faces)
    ]


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
        p = Path(out)
        suffix = p.suffix or ".parquet"
        return cls(
            p,
            p.with_name(f"{p.stem}.sources{suffix}"),
            p.with_name(f"{p.stem}.errors{suffix}"),
            p.with_name(p.name + ".parts"),
        )


META_KEY = b"fervid_batch"


def _write_atomic(table: pa.Table, path: Path, meta: dict[str, Any] | None = None) -> None:
    import pyarrow.parquet as pq

    if meta is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def _read(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(path)


def _committed_parts(parts: Path) -> list[str]:
    """Names of the complete parts; a faces file without its source list (a crash between the
    two writes) is removed: its sources are not done and run again."""
    if not parts.is_dir():
        return []
    for tmp in parts.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    names = sorted(f.name[: -len(".sources.parquet")] for f in parts.glob("part-*.sources.parquet"))
    for f in parts.glob("part-*.faces.parquet"):
        if f.name[: -len(".faces.parquet")] not in names:
            f.unlink()
    return names


def _settings_of(path: Path) -> dict[str, Any] | None:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
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


def _done_sources(paths: OutputPaths) -> set[str]:
    done: set[str] = set()
    if paths.sources.is_file():
        done |= set(_read(paths.sources).column("source").to_pylist())
    for name in _committed_parts(paths.parts):
        done |= set(_read(paths.parts / f"{name}.sources.parquet").column("source").to_pylist())
    return done


def _ordered(table: pa.Table) -> pa.Table:
    names = table.column_names
    lead = [c for c in COLUMNS if c in names]
    probs = [c for c in names if c.startswith("p_")]
    smooth = [c for c in names if c.startswith("smoothed_")]
    rest = sorted(c for c in names if c not in set(lead) | set(probs) | set(smooth))
    table = table.select(lead + probs + smooth + rest)
    keys = [(c, "ascending") for c in ("source", "frame", "face") if c in table.column_names]
    return table.sort_by(keys) if keys and table.num_rows else table


def merge(paths: OutputPaths, settings: dict[str, Any]) -> tuple[int, int]:
    """Everything committed (an earlier output and the parts) into the three output files,
    then the parts removed. Returns (faces, sources)."""
    import shutil

    import pyarrow as pa

    faces: list[pa.Table] = []
    sources: list[pa.Table] = []
    if paths.sources.is_file():
        sources.append(_read(paths.sources))
        if paths.faces.is_file():
            faces.append(_read(paths.faces))
    for name in _committed_parts(paths.parts):
        sources.append(_read(paths.parts / f"{name}.sources.parquet"))
        if (paths.parts / f"{name}.faces.parquet").is_file():
            faces.append(_read(paths.parts / f"{name}.faces.parquet"))
    strip = [t.replace_schema_metadata(None) for t in faces]
    face_table = _ordered(pa.concat_tables(strip, promote_options="permissive")) if strip else _table([])
    src_table = pa.concat_tables([t.replace_schema_metadata(None) for t in sources], promote_options="permissive")
    src_table = src_table.sort_by([("source", "ascending")])
    err_table = src_table.filter(pa.compute.not_equal(src_table.column("status"), "ok")).select(
        ["source", "kind", "status", "error_type", "error"]
    )
    paths.faces.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(face_table, paths.faces, settings)
    _write_atomic(err_table, paths.errors, settings)
    _write_atomic(src_table, paths.sources, settings)  # last: its presence marks a finished output
    shutil.rmtree(paths.parts, ignore_errors=True)
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
        self.options = BatchOptions(**options)
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
    gpus = 1 if options.device.startswith("cuda") else 0
    items = ray.data.from_items([{"task": _encode(t)} for t in tasks], override_num_blocks=len(tasks))
    ds = items.map_batches(
        RayWorker,
        fn_constructor_kwargs={"options": dataclasses.asdict(options), "threads": threads},
        batch_size=1,
        concurrency=n,
        num_cpus=threads,
        num_gpus=gpus,
    )

    def results() -> Iterator[tuple[list[dict], list[dict]]]:
        for row in ds.iter_rows():
            yield json.loads(row["faces"]), json.loads(row["status"])

    return results(), n


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
    options.validate()
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
    settings = options.settings()
    _check_settings(paths, settings)
    done = _done_sources(paths)
    todo = [s for s in all_sources if s.path not in done]
    t0 = time.perf_counter()
    faces = frames = errors = 0
    n_workers = 1
    if todo:
        paths.parts.mkdir(parents=True, exist_ok=True)
        write_text_atomic(paths.parts / "settings.json", json.dumps(settings))
        tasks = chunks(todo, chunk_size)
        if engine == "local":
            results: Iterator[tuple[list[dict], list[dict]]] = _run_local(tasks, options)
        else:
            results, n_workers = _run_ray(tasks, options, address, workers, threads_per_worker)
        writer = PartWriter(paths.parts, flush_every)
        bar = progress_bar(total=len(todo), desc=f"fervid batch ({engine})", unit="src", enabled=progress)
        for rows, status in results:
            writer.add(rows, status)
            faces += len(rows)
            frames += sum(int(s["frames"]) for s in status)
            errors += sum(s["status"] != "ok" for s in status)
            bar.update(len(status))
            el = time.perf_counter() - t0
            bar.set_postfix(faces=faces, errors=errors, fps=f"{frames / el:.1f}", faces_s=f"{faces / el:.1f}")
        bar.close()
        writer.flush()
    seconds = time.perf_counter() - t0
    if todo or (paths.parts.is_dir() and _committed_parts(paths.parts)) or not paths.sources.is_file():
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
]
