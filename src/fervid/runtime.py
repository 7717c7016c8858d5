"""Runtime helpers shared by every layer: device, autocast, cache and data locations, softmax,
progress bars.

Nothing here imports another fervid module, so any module may use it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fervid.errors import UserValueError

if TYPE_CHECKING:
    import torch


def torch_available() -> bool:
    """Whether torch can be imported (the ``train`` extra), without importing it: inference
    runs on onnxruntime without it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a finder that refuses it; sys.modules["torch"] = None
        return False


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA, else Apple MPS, else the CPU; any other name as ``torch.device``.

    Asking for CUDA on a build or machine without it is a user error, not an assertion.
    """
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise UserValueError(f"unknown device {name!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserValueError(f"device {name!r} asked for, but this torch build or machine has no CUDA")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserValueError(f"device {name!r} asked for, but MPS is not available here")
    return dev


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 (AVX512-BF16 or AMX): only then is bf16 autocast faster."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported()) or bool(
            getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
    except AttributeError:
        return False


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on CUDA, and on CPUs with native bf16; a no-op context elsewhere."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled and cpu_has_bf16())
    return torch.autocast(device.type, enabled=False)


def cache_dir(*sub: str) -> Path:
    """fervid's cache folder (``$FERVID_CACHE``, else ``$XDG_CACHE_HOME/fervid`` or
    ``~/.cache/fervid``), joined with ``sub``. Not created here: writers create it."""
    env = os.environ.get("FERVID_CACHE")
    if env:
        root = Path(env)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fervid"
    return root.joinpath(*sub)


def data_root() -> Path | None:
    """Where the FER2013 data lives when none is named: ``$FERVID_DATA``, else ``shared/data``
    or ``../shared/data`` from the working directory, else the same next to this checkout
    (the development layout); ``None`` when none has a ``fer2013/`` folder."""
    env = os.environ.get("FERVID_DATA")
    candidates = [Path(env)] if env else []
    candidates += [Path("shared/data"), Path("../shared/data")]
    here = Path(__file__).resolve()
    candidates += [parent / "shared" / "data" for parent in here.parents]
    for c in candidates:
        if (c / "fer2013").is_dir():
            return c
    return None


def fer2013_csv() -> Path | None:
    """The FER2013 CSV under :func:`data_root` (``fer2013.csv.gz`` or ``fer2013.csv``), if any."""
    root = data_root()
    if root is None:
        return None
    for name in ("fer2013.csv.gz", "fer2013.csv"):
        if (root / "fer2013" / name).is_file():
            return root / "fer2013" / name
    return None


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``N x K`` logits divided by ``temperature``, computed in float64
    (probabilities that sum to 1 to the last digit whatever the backend's dtype)."""
    if not temperature > 0:
        raise UserValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


class _LineStream:
    """A text stream for tqdm that turns its carriage-return redraws into whole lines: what a
    log file or a pipe should get instead of a bar redrawn in place (cursor moves dropped).
    Once the bar closes (:meth:`closing`), a line equal to the one before is dropped: tqdm draws
    the final state on the last update and again when it closes. (Before that, a repeat is a
    keep-alive line, which a log should get.)"""

    _CURSOR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, stream: Any):
        self._stream = stream
        self._last = ""
        self._closing = False

    def closing(self) -> None:
        self._closing = True

    def write(self, text: str) -> None:
        line = self._CURSOR.sub("", text).replace("\r", "").strip()
        if line and not (self._closing and line == self._last):
            self._stream.write(line + "\n")
            self._last = line

    def flush(self) -> None:
        self._stream.flush()


#: Seconds between two plain progress lines when stderr is not a terminal (``$FERVID_PROGRESS_SECONDS``):
#: under half of the 10 s that a command may stay silent, so that a slow step between two
#: updates still leaves no gap of 10 s in a log.
LOG_PROGRESS_SECONDS = 5.0


def progress_seconds() -> float:
    """``$FERVID_PROGRESS_SECONDS`` (unset or empty: :data:`LOG_PROGRESS_SECONDS`), a finite
    number of seconds >= 0; anything else is a :class:`~fervid.errors.UserValueError` naming
    the variable (``abc`` was a ValueError traceback from the first progress bar, in the middle
    of a run; ``nan`` and ``-1`` reached tqdm). The CLI checks it before a verb runs."""
    text = os.environ.get("FERVID_PROGRESS_SECONDS", "").strip()
    if not text:
        return LOG_PROGRESS_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise UserValueError(
            f"FERVID_PROGRESS_SECONDS must be a finite number of seconds, 0 or more, got {text!r} "
            f"(unset it for the default, {LOG_PROGRESS_SECONDS:g})"
        )
    return seconds


#: A job done within this many seconds writes no progress line to a log (a later one writes its
#: first line then: the bar's wait adds to whatever silent work came before it).
LOG_FIRST_LINE_SECONDS = 2.0

_progress_off = 0  # > 0 within progress_off(): every bar and stage is disabled (``--no-progress``)


@contextlib.contextmanager
def progress_off(off: bool = True) -> Iterator[None]:
    """Within the block every :func:`progress_bar` and :func:`progress_stage` is disabled when
    ``off`` (in every thread): what ``--no-progress`` does for the steps of a command that take
    no ``progress`` argument of their own (reading a dataset the first time, ...)."""
    global _progress_off
    if not off:
        yield
        return
    _progress_off += 1
    try:
        yield
    finally:
        _progress_off -= 1


def progress_bar(
    iterable: Any = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    bar_format: str | None = None,
) -> Any:
    """A tqdm progress bar on stderr for a long job: redrawn in place on a terminal (shown after
    one second, so quick jobs stay quiet), one plain line every :data:`LOG_PROGRESS_SECONDS`
    (the first after :data:`LOG_FIRST_LINE_SECONDS`, and one at the end) when stderr goes to a
    log or a pipe, nothing when ``enabled`` is false
    (``--no-progress``). Use it as tqdm: iterate, or ``update(n)`` and ``close()``;
    ``bar_format`` replaces the layout (tqdm's)."""
    from tqdm.auto import tqdm

    stream = sys.stderr
    if not enabled or _progress_off or stream is None:
        return tqdm(iterable, total=total, disable=True)
    if stream.isatty():
        sized = _terminal_columns(stream) > 0  # a pseudo-terminal of size 0 (script, docker -t) drew nothing
        bar = tqdm(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            delay=1.0,
            dynamic_ncols=sized,
            ncols=None if sized else 80,
            nrows=None if sized else 24,  # tqdm draws nothing on a terminal of 0 rows
            leave=False,
            bar_format=bar_format,
        )
        return _keep_alive(bar, 1.0, 1.0)
    seconds = progress_seconds()
    lines = _LineStream(stream)
    bar = tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=lines,
        delay=min(seconds, LOG_FIRST_LINE_SECONDS),  # a job done sooner writes no line at all
        mininterval=seconds,
        maxinterval=seconds,
        bar_format=bar_format
        or (
            "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {elapsed} elapsed, {remaining} left{postfix}"
            if total is not None or hasattr(iterable, "__len__")
            else "{desc}: {n_fmt} {unit}, {elapsed} elapsed{postfix}"
        ),
    )
    return _keep_alive(bar, seconds, min(seconds, LOG_FIRST_LINE_SECONDS), lines.closing)


def _terminal_columns(stream: Any) -> int:
    """The width of the terminal ``stream`` writes to; 0 when it has none or reports none."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def _keep_alive(bar: Any, every: float, first: float, on_close: Callable[[], None] | None = None) -> Any:
    """Redraws ``bar`` ``first`` seconds after it starts and then whenever it has been quiet for
    ``every`` seconds, until it is closed: a step slower than that between two updates (a batch
    on a loaded machine, the work before the first update) still moves the elapsed time on a
    terminal and writes a line to a log at least every ``1.5 * every`` seconds (tqdm itself
    draws only when it is updated)."""
    done = threading.Event()
    ref = weakref.ref(bar)  # the thread does not keep an abandoned bar alive

    def beat() -> None:
        while not done.wait(max(min(every, first) / 2, 0.02)):
            b = ref()
            if b is None or b.disable:
                return
            wait = every if b.last_print_t > b.start_t else first  # shown yet?
            if time.time() - b.last_print_t >= wait:  # tqdm's clock (time.time)
                b.refresh()
                b.last_print_t = time.time()  # refresh() does not note it, update() does
            del b

    close = bar.close

    def closing() -> None:
        done.set()
        if on_close is not None:
            on_close()
        close()

    bar.close = closing  # tqdm closes itself through self.close (end of iteration, with, __del__)
    threading.Thread(target=beat, name=f"fervid-progress-{bar.desc}", daemon=True).start()
    return bar


@contextlib.contextmanager
def progress_stage(desc: str, enabled: bool = True) -> Iterator[None]:
    """A long step with nothing to count (an export, one big computation): on a terminal a
    line with the elapsed time, redrawn every second; in a log ``desc: MM:SS elapsed`` every
    :data:`LOG_PROGRESS_SECONDS` and at the end, so that no long step is silent."""
    bar = progress_bar(desc=desc, enabled=enabled, bar_format="{desc}: {elapsed} elapsed")
    try:
        yield
    finally:
        bar.close()
