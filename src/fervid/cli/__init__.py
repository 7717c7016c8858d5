"""The ``fervid`` command line: a thin layer over the Python API.

Each verb lives in its own module here (``fervid.cli.<verb>``) with two functions:
``add_parser(subparsers)`` and ``run(args) -> int``. Argument names match the API's.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fervid.errors import FervidError, UserValueError

# Verb -> module in this package. Modules are imported only when the CLI runs.
VERBS: dict[str, str] = {
    "data": "data",
    "train": "train",
    "evaluate": "evaluate",
    "study": "study",
    "predict": "predict",
    "video": "video",
    "export": "export",
    "bench": "bench",
    "finetune": "finetune",
    "models": "models",
    "calibrate": "calibrate",
    "serve": "serve",
    "batch": "batch",
}


# An optional dependency -> the extra that brings it (pyproject.toml). A core install
# (`pip install fervid`) predicts, reads videos and runs batches on onnxruntime; the rest
# says in one line which extra it needs.
EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "train",
    "safetensors": "train",
    "sklearn": "train",
    "matplotlib": "plots",
    "onnx": "train",
    "yaml": "train",
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "pyarrow": "batch",
    "ray": "ray",
    "pandas": "pandas",
}


def missing_extra_message(verb: str, e: ModuleNotFoundError) -> str | None:
    """The one line for a missing optional dependency (``None`` when ``e`` is not one)."""
    top = (e.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    from fervid.version import __version__

    return (
        f"fervid {verb}: error: needs {top}, which is not installed: install the {extra!r} extra "
        f"(pip install '.[{extra}]' in a checkout, or 'fervid-{__version__}-py3-none-any.whl[{extra}]')"
    )


def add_set_option(p: argparse.ArgumentParser, what: str = "training config") -> None:
    """``--set KEY=VALUE ...``: any other config key, shared by the verbs that train."""
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help=f"any other {what} key, YAML-typed (e.g. --set optimizer=adamw label_smoothing=0.1)",
    )


def parse_set(pairs: Sequence[str]) -> dict[str, Any]:
    """``["lr=0.1", "augment={mixup: 0.2}"]`` -> ``{"lr": 0.1, "augment": {"mixup": 0.2}}`` (values YAML-typed)."""
    from fervid.training.schema import load_yaml

    out: dict[str, Any] = {}  # any YAML value: the config that receives it type-checks it
    for kv in pairs:
        if "=" not in kv:
            raise UserValueError(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        if k in out:
            raise UserValueError(f"--set: key {k!r} is given twice")
        out[k] = load_yaml(v, f"--set {kv}")
    return out


def build_parser(verbs: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``verbs`` (default: every verb). ``main`` builds only the verb it runs:
    importing the other verbs' modules (and what their options list) costs start-up time."""
    from fervid.version import __version__

    parser = argparse.ArgumentParser(prog="fervid", description="Facial emotion recognition toolkit.")
    parser.add_argument("--version", action="version", version=f"fervid {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, mod in VERBS.items():
        if verbs is not None and verb not in verbs:
            continue
        module = importlib.import_module(f".{mod}", __name__)  # each keeps its heavy imports inside run()
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


@contextlib.contextmanager
def _plain_warnings(verb: str) -> Iterator[None]:
    """fervid's own warnings (a skipped file, a clipped image) as one line named after the verb,
    like its errors, instead of Python's ``file:line: UserWarning`` and a line of fervid's source;
    warnings from other packages keep Python's form. Only the text changes (``formatwarning``):
    where and whether a warning is shown, or recorded by a caller, stays Python's."""
    formatted = warnings.formatwarning
    package = str(Path(__file__).resolve().parents[1])

    def fmt(
        message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
    ) -> str:
        if issubclass(category, UserWarning) and str(Path(filename).resolve()).startswith(package):
            return f"fervid {verb}: warning: {message}\n"
        return formatted(message, category, filename, lineno, line)

    with warnings.catch_warnings():
        warnings.formatwarning = fmt
        yield


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = argv[0] if argv else None
    parser = build_parser([verb] if verb in VERBS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from fervid.runtime import progress_off, progress_seconds

    if hasattr(sys.stdout, "reconfigure"):  # a line printed reaches a log or a pipe at once, not at exit
        sys.stdout.reconfigure(line_buffering=True)
    try:
        progress_seconds()  # a bad $FERVID_PROGRESS_SECONDS is refused before anything runs
        with progress_off(getattr(args, "progress", True) is False), _plain_warnings(args.verb):
            return int(args._run(args) or 0)  # progress_off: --no-progress silences every bar and step
    except FervidError as e:
        # A user error (bad input, argument or output location): one clear line, no traceback.
        print(f"fervid {args.verb}: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        message = missing_extra_message(args.verb, e)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 1
    except OSError as e:
        # The file system said no (missing file, permissions, full disk, a folder where a file
        # was expected): the environment, not a bug. Anything else keeps its traceback.
        where = f"{e.filename}: " if e.filename else ""
        print(f"fervid {args.verb}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fervid {args.verb}: interrupted", file=sys.stderr)
        return 130
