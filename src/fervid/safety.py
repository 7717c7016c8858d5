"""Nothing lost, nothing silently wrong: how fervid writes outputs and opens inputs.

The policy (README, "Safety of inputs and outputs"), one helper per rule:

- every write is atomic: :func:`atomic_write` (a file object) and :func:`atomic_path` (a
  path, for writers that want one: matplotlib, ONNX, OpenCV) write a temporary file in the
  destination's folder, fsync it, and rename it over the destination; on any failure the
  temporary file is removed and the destination is as it was;
- an output never overwrites an input: :func:`check_not_input` (same file after symlinks,
  ``..`` and hard links);
- an existing run directory needs ``resume`` or ``overwrite``: :func:`prepare_run_dir`;
- a file-system error on an output is a user error naming the path and the reason:
  :func:`output_error` turns ``OSError`` into :class:`~fervid.errors.OutputError`;
- inputs that would block or never end (FIFOs, devices, sockets) are refused before they are
  opened: :func:`check_input_file`; a path that cannot name an input (empty, a URL, a
  symbolic-link loop, a dangling link, missing) is said so: :func:`check_input_path`;
- SIGTERM stops a long job the way Ctrl-C does (outputs flushed and finalised):
  :func:`sigterm_as_interrupt`.

Only the standard library and :mod:`fervid.errors`: any layer may use it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from fervid.errors import OutputError, UserFileNotFoundError, UserValueError

PathLike = str | os.PathLike

_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (file system or process file-size limit)",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file of that name is in the way",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOENT: "the folder does not exist",
    errno.EIO: "input/output error",
}


def describe_os_error(e: OSError) -> str:
    """A short reason for an ``OSError`` (``"no space left on the device"``)."""
    if e.errno in _REASONS:
        return _REASONS[e.errno]
    return e.strerror or str(e) or type(e).__name__


def output_error(e: OSError, path: PathLike, action: str = "cannot write") -> OutputError:
    """``OSError`` -> :class:`OutputError` whose one-line message names ``path`` and the reason.
    An :class:`OutputError` passes through unchanged."""
    if isinstance(e, OutputError):
        return e
    out = OutputError(f"{action} {path}: {describe_os_error(e)}")
    out.errno = e.errno  # callers may still branch on it (OSError attribute)
    return out


def make_dir(path: PathLike) -> Path:
    """``mkdir -p path`` with a named :class:`OutputError` (a file in the way, no permission...)."""
    p = Path(path)
    if p.is_dir():
        return p
    if p.exists():
        raise OutputError(f"cannot create folder {p}: a file of that name exists")
    blocker = _blocking_file(p)
    if blocker is not None:
        raise OutputError(f"cannot create folder {p}: {blocker} is a file, not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno == errno.EEXIST:  # a parent is a file
            raise OutputError(f"cannot create folder {p}: {_REASONS[errno.ENOTDIR]}") from e
        raise output_error(e, p, "cannot create folder") from e
    return p


def preflight_output(path: PathLike, *, folder: bool = False) -> None:
    """Check an output location before the work that produces it (minutes of evaluation or
    export): a folder where a file is wanted (or the reverse), a file in the middle of the
    path, or a parent folder that cannot be written is an :class:`OutputError` now, not after
    the work. Creates nothing."""
    p = Path(path)
    if p.exists():
        if folder and not p.is_dir():
            raise OutputError(f"cannot use {p} as the output folder: it is a file")
        if not folder and p.is_dir():
            raise OutputError(f"cannot write {p}: {_REASONS[errno.EISDIR]}")
    blocker = _blocking_file(p if folder else p.parent)
    if blocker is not None:
        raise OutputError(f"cannot write {p}: {blocker} is a file, not a folder")
    parent = p if folder else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        reason = errno.EROFS if _read_only(parent) else errno.EACCES
        raise OutputError(f"cannot write {p}: {_REASONS[reason]} ({parent})")


def _read_only(path: Path) -> bool:
    """Whether ``path`` is on a file system mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def _blocking_file(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) if it is not a folder."""
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p if p.exists() and not p.is_dir() else None


def _temp_name(path: Path) -> Path:
    # Hidden, unique, in the same folder (rename is atomic only within one file system), and
    # ending in the destination's suffix: writers that pick the format from the extension
    # (matplotlib, OpenCV's VideoWriter) still do. The stem is shortened to stay under NAME_MAX.
    return path.with_name(f".{path.name[:80]}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every file system allows it (ignore those).
    with contextlib.suppress(OSError):
        _fsync(path)


class PendingFile:
    """A temporary file next to ``path`` (``.tmp``) that becomes ``path`` on :meth:`commit`
    and disappears on :meth:`discard`: for writers with their own open/close life cycle
    (a video container). :func:`atomic_path` is the context-manager form."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            raise OutputError(f"cannot write {self.path}: {_REASONS[errno.EISDIR]}")
        blocker = _blocking_file(self.path.parent)
        if blocker is not None:
            raise OutputError(f"cannot write {self.path}: {blocker} is a file, not a folder")
        make_dir(self.path.parent if str(self.path.parent) else Path("."))
        self.tmp = _temp_name(self.path)
        try:
            # Created here (O_EXCL, mode 0666 & ~umask like any new file) so that a folder we
            # cannot write fails before the writer starts, with the destination's name.
            os.close(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as e:
            raise output_error(e, self.path) from e

    def commit(self, verify: Callable[[Path], None] | None = None) -> Path:
        """fsync the temporary file and rename it over ``path`` (atomic on POSIX).

        ``verify(tmp)``: reads back what the writer wrote (a media file's frames, an image's
        pixels) and raises :class:`OutputError` when it is not whole; writers that report
        failures silently (OpenCV's ``VideoWriter`` on a full disk) are caught here, before
        ``path`` is touched."""
        try:
            if not self.tmp.is_file():
                raise OutputError(f"cannot write {self.path}: the writer left no file")
            _fsync(self.tmp)
            if verify is not None:
                verify(self.tmp)
            os.replace(self.tmp, self.path)
            _fsync_dir(self.path.parent)
        except (OSError, ValueError) as e:
            hint = space_hint(self.path)  # before the temporary file frees its space
            self.discard()
            if isinstance(e, OSError):
                raise output_error(e, self.path) from e
            out = OutputError(f"cannot write {self.path}: {e}{hint}")
            out.errno = errno.ENOSPC if hint else None  # callers stop on a full disk (every later write fails too)
            raise out from e
        return self.path

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def space_hint(path: Path) -> str:
    """``" (no space left on the device)"`` when the file system of ``path`` is (nearly)
    full: the likely cause of a writer that failed without saying why."""
    with contextlib.suppress(OSError):
        st = os.statvfs(path.parent if str(path.parent) else ".")
        if st.f_bavail * st.f_frsize < 64 * 1024:
            return f" ({_REASONS[errno.ENOSPC]})"
    return ""


@contextlib.contextmanager
def atomic_path(path: PathLike, verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; write the file there. On normal exit the
    file is fsynced, checked by ``verify(tmp)`` when given (see :meth:`PendingFile.commit`)
    and renamed over ``path``; on any exception it is removed, ``path`` is untouched and an
    ``OSError`` becomes a named :class:`OutputError`.

    >>> with atomic_path("plot.png") as tmp:
    ...     fig.savefig(tmp)
    """
    pending = PendingFile(path)
    try:
        yield pending.tmp
        pending.commit(verify)
    except OSError as e:
        raise output_error(e, pending.path) from e
    finally:
        pending.discard()


@contextlib.contextmanager
def atomic_write(
    path: PathLike, mode: str = "wb", *, encoding: str | None = None, newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing (``mode`` ``"wb"`` or ``"w"``);
    see :func:`atomic_path` for what happens on exit.

    >>> with atomic_write("model.pt") as f:
    ...     torch.save(obj, f)
    """
    if not mode.startswith("w"):
        raise ValueError(f"atomic_write writes whole files (mode 'w' or 'wb'), not {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as tmp:
        try:
            with open(tmp, mode, encoding=encoding, newline=newline) as f:
                yield f
        except OSError as e:
            raise output_error(e, path) from e


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: PathLike, text: str) -> Path:
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def json_safe(obj: Any) -> Any:
    """NaN and infinities -> ``None`` (JSON ``null``), recursively (numpy scalars included),
    for results where a value can be undefined: the output stays strict JSON."""
    if isinstance(obj, float) or type(obj).__name__ in ("float32", "float64", "float16"):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomic(path: PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Strict JSON (``NaN``/``Infinity`` raise ``ValueError``: they are not JSON), atomically."""
    text = json.dumps(obj, indent=indent, allow_nan=False)
    return write_text_atomic(path, text + "\n")


# ------------------------------------------------------------------------ outputs vs inputs


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (symlinks, ``..`` and hard links resolved;
    paths that do not exist yet are compared by their resolved names)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_not_input(out: PathLike | None, inputs: Iterable[Any], what: str = "output") -> None:
    """Refuse (:class:`OutputError`) when ``out`` resolves to one of ``inputs``, or is an
    existing file inside an input folder (an image folder's images are inputs too: ``fervid
    data show faces/ --out faces/happy/1.jpg`` would replace one). Entries that are not paths,
    such as bundled model names or arrays, are ignored."""
    if out is None:
        return
    for inp in inputs:
        if not isinstance(inp, (str, os.PathLike)) or not str(inp):
            continue
        if os.path.exists(inp) and same_file(out, inp):
            raise OutputError(f"{what} {out} is the input {inp}: refusing to overwrite an input (choose another path)")
        if os.path.isdir(inp) and os.path.isfile(out) and Path(out).resolve().is_relative_to(Path(inp).resolve()):
            raise OutputError(
                f"{what} {out} is a file inside the input folder {inp}: refusing to overwrite it (choose another path)"
            )


def check_outputs_not_inputs(
    pairs: Iterable[tuple[PathLike, PathLike]], inputs: Iterable[PathLike], what: str = "output"
) -> None:
    """For many ``(output, the input it derives from)`` pairs at once (compared by device
    and inode, so in linear time): refuse (:class:`OutputError`, before anything is written)
    when any output would land on any of ``inputs``."""
    ids: dict[tuple[int, int], str] = {}
    for inp in inputs:
        with contextlib.suppress(OSError):
            st = os.stat(inp)
            ids[(st.st_dev, st.st_ino)] = str(inp)
    for out, src in pairs:
        try:
            st = os.stat(out)
        except OSError:
            continue  # a new file cannot be an input
        hit = ids.get((st.st_dev, st.st_ino))
        if hit is not None:
            target = "itself" if os.path.exists(src) and same_file(hit, src) else f"the input {hit}"
            raise OutputError(
                f"the {what} of {src} would be written to {out}, over {target}: "
                "refusing to overwrite an input (choose another output folder)"
            )


RUN_FILES: tuple[str, ...] = ("last.pt", "best.pt", "metrics.jsonl", "config.json", "final.json")
"""What a training run writes into its directory: any of them marks the directory as a run."""


def prepare_run_dir(
    path: PathLike, *, resume: bool = False, overwrite: bool = False, artefacts: Iterable[str] = RUN_FILES
) -> Path:
    """Make ``path`` ready for a run: created if missing. A directory already holding any of
    ``artefacts`` is an earlier run: it needs ``resume`` (continue it) or ``overwrite`` (its
    artefacts are deleted first, so no stale checkpoint survives next to the new run's).
    Other files in the folder are never touched."""
    p = Path(path)
    if resume and overwrite:
        raise UserValueError("--resume and --overwrite exclude each other")
    if p.exists() and not p.is_dir():
        raise OutputError(f"cannot use {p} as the run folder: it is a file")
    found = [a for a in artefacts if (p / a).exists()] if p.is_dir() else []
    if found and not (resume or overwrite):
        raise OutputError(
            f"{p} already holds a run ({', '.join(found)}): pass --resume to continue it or --overwrite to replace it"
        )
    if found and overwrite:
        for a in found:
            target = p / a
            try:
                if target.is_dir() and not target.is_symlink():
                    raise OutputError(f"cannot overwrite the run in {p}: {target} is a folder")
                target.unlink()
            except OutputError:
                raise
            except OSError as e:
                raise output_error(e, target, "cannot remove") from e
    return make_dir(p)


# ------------------------------------------------------------------------------ inputs


def _kind(mode: int) -> str | None:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def special_file_kind(path: PathLike) -> str | None:
    """``"a FIFO (named pipe)"``, ``"a character device"``... for a path that is not a
    regular file or folder, else ``None`` (also for a path that does not exist). Uses
    ``stat``, which never opens the file and so cannot block."""
    try:
        return _kind(os.stat(path).st_mode)
    except OSError:
        return None


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def input_path_problem(path: PathLike) -> str | None:
    """Why ``path`` cannot name an input file or folder, in words, or ``None`` when it
    exists: an empty path, a URL (``http://...``: fervid reads local files), a
    symbolic-link loop, a link to nothing, a missing file. Looked at as typed (never
    through ``Path``, which turns ``http://x`` into ``http:/x`` and ``""`` into ``"."``)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.strip():
        return 'an empty path ("") is not a file name'
    if _URL.match(text):
        return "a URL: fervid reads local files only (download it first, e.g. with curl -O)"
    try:
        os.stat(text)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a loop of symbolic links (following them never reaches a file)"
        if os.path.islink(text):
            return f"a symbolic link to {os.readlink(text)}, which does not exist"
        if e.errno == errno.ENOENT:
            return "no such file or folder"
        return describe_os_error(e)
    except ValueError:  # an embedded NUL byte
        return "not a valid file name (it contains a NUL character)"
    return None


def check_input_path(path: PathLike, what: str = "file or folder") -> None:
    """Raise when ``path`` cannot name an input (:func:`input_path_problem`): a missing one
    is :class:`~fervid.errors.UserFileNotFoundError` (``"<path>: no such <what>"``), the
    rest :class:`UserValueError`; the message starts with the path as given."""
    problem = input_path_problem(path)
    if problem is None:
        return
    text = os.fsdecode(os.fspath(path))
    if problem == "no such file or folder":
        raise UserFileNotFoundError(f"{text}: no such {what}")
    raise UserValueError(f"{text}: {problem}" if text.strip() else problem)


def check_input_file(path: PathLike, what: str = "input", *, allow_char_device: bool = False) -> None:
    """Refuse (:class:`UserValueError`) a FIFO, device or socket before anything opens it
    (opening a FIFO blocks until a writer comes; ``/dev/zero`` never ends). A missing path
    is left to the caller (its own not-found error). ``allow_char_device``: for cameras
    named by their device file (``/dev/video0``)."""
    try:
        st = os.stat(path)  # stat never opens the file, so it cannot block
    except OSError:
        return
    kind = _kind(st.st_mode)
    if kind is None or (allow_char_device and stat.S_ISCHR(st.st_mode)):
        return
    raise UserValueError(f"{path}: is {kind}, not a regular file; fervid reads {what}s from regular files only")


# ------------------------------------------------------------------------------ signals


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread, like
    Ctrl-C: the code that already finalises outputs on Ctrl-C (close the video container,
    write the summary, keep the last checkpoint) runs for ``kill`` and service managers too.
    Outside the main thread (where handlers cannot be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        # None: the previous handler was not set from Python; the default is what it was
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
