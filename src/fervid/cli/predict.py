"""``fervid predict``: emotions of the faces in photos.

    fervid predict PATH [PATH ...] [--json] [--out DIR] [--adabn] [--no-progress]
                   [--model NAME] [--detector NAME] [--photo-max-side PX] [--backend auto|torch|onnx]
                   [--device D] [--threshold P] [... the other recognizer arguments]

PATH: image files, folders (searched recursively for images) or glob patterns
(``"photos/**/*.jpg"``). Prints one line per image (``--json``: one JSON object per line:
``{"path", "width", "height", "faces": [...]}``; each face has its box, label, confidence,
every probability, and the ambiguity outputs ``ambiguity``, ``top2_margin``, ``ambiguous``
and ``labels_above``). ``--out DIR`` writes an annotated copy of
each image there. An unreadable file gets an error line on stderr naming it; the other
files are still processed and the exit status is 1 at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import glob
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from fervid.cli.argtypes import output_path
from fervid.cli.recognizer_args import add_recognizer_args, config_from_args
from fervid.errors import FervidError, OutputError
from fervid.safety import atomic_path, check_outputs_not_inputs, input_path_problem, make_dir, preflight_output


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="recognise the emotions of the faces in photos",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.add_argument("--out", type=output_path, metavar="DIR", help="write annotated copies of the images here")
    p.add_argument(
        "--adabn",
        action="store_true",
        help="AdaBN: re-estimate the model's BatchNorm statistics on all the faces in PATH(s) first "
        "(unlabelled photos sharing a domain shift: camera, blur, light); torch backend only",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_recognizer_args(p)
    return p


def expand_paths(paths: list[str], skipped: list[str] | None = None) -> Iterator[tuple[str, str | None]]:
    """Yield ``(path, None)`` per image to process, or ``(pattern, error)`` for inputs that
    match nothing. Folders are searched recursively for the formats fervid decodes
    (:func:`fervid.data.imagefile.image_extensions`); the other files found there are
    appended to ``skipped`` (for the caller to report). An explicit file is always yielded
    (so a bad file is reported, not skipped)."""
    from fervid.data.imagefile import scan_folder

    seen: set[str] = set()

    def emit(p: str) -> Iterator[tuple[str, str | None]]:
        key = os.path.normpath(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            yield p, None

    for raw in paths:
        if raw.strip() and os.path.isdir(raw):
            found, others = scan_folder(raw)
            if skipped is not None:
                skipped += others
            if not found:
                yield raw, "folder contains no images" + (f" ({len(others)} other files)" if others else "")
            for f in found:
                yield from emit(f)
        elif os.path.lexists(raw) and input_path_problem(raw) is None:
            yield from emit(raw)
        elif raw.strip() and glob.has_magic(raw):
            matched = sorted(f for f in glob.glob(raw, recursive=True) if os.path.isfile(f))
            if not matched:
                yield raw, "pattern matches no files"
            for f in matched:
                yield from emit(f)
        else:
            yield raw, input_path_problem(raw) or "no such file or folder"


def _out_path(out_dir: Path, src: str, used: set[Path]) -> Path:
    p = Path(src)
    suffix = p.suffix.lower() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp") else ".png"
    cand = out_dir / f"{p.stem}{suffix}"
    i = 1
    while cand in used:
        cand = out_dir / f"{p.stem}_{i}{suffix}"
        i += 1
    used.add(cand)
    return cand


_FATAL_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _summary(res) -> str:
    if not res.faces:
        return f"{res.source}: no face found"
    parts = [f"{f.label} {f.confidence:.2f} at ({f.box[0]},{f.box[1]},{f.box[2]},{f.box[3]})" for f in res.faces]
    return f"{res.source}: {len(res.faces)} face{'s' if len(res.faces) != 1 else ''}: " + "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    from fervid.data.io import load_image
    from fervid.inference.recognizer import EmotionRecognizer

    rec = EmotionRecognizer.from_config(config_from_args(args))
    rec.load()  # a bad --model fails here, once, before any file is read

    out_dir = Path(args.out) if args.out else None
    skipped: list[str] = []
    items = list(expand_paths(args.paths, skipped))
    if skipped:
        from fervid.data.imagefile import describe_skipped

        print(f"fervid predict: note: {describe_skipped(skipped)}", file=sys.stderr)
    used: set[Path] = set()
    dests: dict[str, Path] = {}
    if out_dir is not None:
        # Every destination is known before anything is written: one that is an input (e.g.
        # `predict photos/ --out photos/`) stops the run before any image is touched.
        dests = {p: _out_path(out_dir, p, used) for p, problem in items if problem is None}
        check_outputs_not_inputs(((d, p) for p, d in dests.items()), dests, "annotated copy")
        preflight_output(out_dir, folder=True)  # an unwritable --out fails once, before any image
        make_dir(out_dir)
    if getattr(args, "adabn", False):
        # A first pass over every readable image: the adaptation needs the whole set's faces.
        n = rec.adapt([p for p, problem in items if problem is None], strict=False, progress=args.progress)
        print(f"fervid predict: AdaBN statistics from {n} faces", file=sys.stderr)
    failed = 0
    from fervid.runtime import progress_bar

    bar = progress_bar(items, desc="predict", unit="img", enabled=args.progress and len(items) >= 2)

    def err(msg: str) -> None:
        nonlocal failed
        failed += 1
        bar.clear()
        print(f"fervid predict: error: {msg}", file=sys.stderr, flush=True)
        bar.refresh()

    for path, problem in bar:
        if problem is not None:
            err(f"{path}: {problem}" if path.strip() else problem)
            continue
        try:
            rgb = load_image(path)
            res = rec.predict(rgb)
            res = dataclasses.replace(res, source=path)
        except (FervidError, OSError) as e:  # this file's problem: report it, go on
            err(str(e) if str(path) in str(e) else f"{path}: {e}")
            continue
        line = json.dumps(res.to_dict(), allow_nan=False) if args.json else _summary(res)
        try:
            if bar.disable:
                print(line, flush=True)
            else:
                bar.write(line, file=sys.stdout)
        except BrokenPipeError:  # e.g. `fervid predict ... | head`: the reader is gone, stop quietly
            bar.close()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141
        if out_dir is not None:
            from PIL import Image

            from fervid.data.imagefile import verify_image
            from fervid.inference.draw import annotate

            dest = dests[path]
            size = (rgb.shape[1], rgb.shape[0])
            try:
                # a full disk never leaves a truncated image; what was written is decoded back first
                with atomic_path(dest, verify=functools.partial(verify_image, size=size)) as tmp:
                    Image.fromarray(annotate(rgb, res.faces)).save(tmp)
            except OutputError as e:
                if e.errno in _FATAL_WRITE_ERRNOS:
                    bar.close()
                    raise  # every later image would fail the same way
                err(str(e))
    bar.close()
    if failed:
        print(f"fervid predict: {failed} of {len(items)} input{'s' if len(items) != 1 else ''} failed", file=sys.stderr)
    return 1 if failed else 0
