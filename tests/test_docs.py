"""The documentation site builds with ``mkdocs build --strict`` (broken links, missing pages, bad
docstring references and a failing CLI hook are errors), the README stays a quickstart, and the
changelog's newest version is the one ``fervid --version`` prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def need_docs_tools() -> None:
    """Skip without the docs extra on a user's machine; in CI (``$CI`` set, as .ci/run and hosted
    CI set it) a missing tool fails, so that a broken install cannot pass as a skipped build."""
    import importlib.util

    def found(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its parent package is missing
            return False

    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python") if not found(m)]
    if missing:
        reason = f"the docs tools {missing} are not installed (pip install 'fervid[docs]')"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)


def test_ci_fails_without_the_docs_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without mkdocs-material the docs build skips on a user's machine and fails in CI."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "material" else real(name, *a))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="material"):
        need_docs_tools()
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI: .*material"):
        need_docs_tools()


def test_docs_build_strict(tmp_path: Path) -> None:
    need_docs_tools()
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    pages = sorted(p.parent.name for p in site.glob("*/index.html"))
    for page in ("getting-started", "main-job", "models", "limits-and-ethics", "training", "scale-out",
                 "result-schema", "cli", "api", "faq", "changelog", "examples"):  # fmt: skip
        assert page in pages, f"docs page {page} not built (built: {pages})"
    assert not (site / "hooks").exists(), "the build hook was published as a page"
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    from fervid.cli import VERBS

    for verb in VERBS:  # the CLI reference is each verb's live --help
        assert f"usage: fervid {verb}" in cli, f"CLI reference lacks fervid {verb}"
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("EmotionRecognizer.predict", "FaceResult", "TrainConfig", "export_onnx"):
        assert name in api, f"API reference lacks {name}"
    from fervid import __version__

    assert __version__ in (site / "changelog" / "index.html").read_text(encoding="utf-8")


def test_readme_is_a_quickstart() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README has {len(lines)} lines (a quickstart has at most 150)"
    head = "\n".join(lines[:60])
    assert "fervid predict" in head and "EmotionRecognizer" in head, (
        "the main job is not in the README's first 60 lines"
    )
    # Headings other engineers' edits (install / set-up commands) are merged into.
    assert "## Install" in lines and "## Set up and test (fresh machine)" in lines


def test_changelog_version_is_the_package_version() -> None:
    from fervid import __version__

    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    released = re.findall(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", text, flags=re.M)
    assert released, "CHANGELOG.md has no released version heading (## [X.Y.Z] - DATE)"
    assert released[0] == __version__, f"newest CHANGELOG entry {released[0]} != fervid {__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "fervid", "--version"],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == f"fervid {__version__}"


def test_supported_pythons_declared() -> None:
    """requires-python, the classifiers, ruff's and mypy's target agree, and the interpreter
    running the tests is one of the declared versions."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    declared = sorted(
        int(c.rsplit(".", 1)[1])
        for c in meta["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert declared == list(range(declared[0], declared[-1] + 1)), f"a gap in the declared versions 3.{declared}"
    assert meta["project"]["requires-python"] == f">=3.{declared[0]}"
    assert meta["tool"]["ruff"]["target-version"] == f"py3{declared[0]}"
    assert meta["tool"]["mypy"]["python_version"] == f"3.{declared[0]}"
    assert sys.version_info[:2] >= (3, declared[0]) and sys.version_info.minor <= declared[-1], (
        f"Python {sys.version_info[:2]} is not among the declared 3.{declared}"
    )


def _interpreter(minor: int) -> str | None:
    """A ``python3.<minor>`` on PATH that runs, else one of pyenv's (not selected by pyenv's shims)."""
    import glob
    import shutil

    found = [shutil.which(f"python3.{minor}")] + sorted(
        glob.glob(str(Path.home() / ".pyenv" / "versions" / f"3.{minor}.*" / "bin" / f"python3.{minor}"))
    )
    for exe in filter(None, found):
        ok = subprocess.run([exe, "-c", "import sys; print(sys.version_info[1])"], capture_output=True, text=True)
        if ok.returncode == 0 and ok.stdout.strip() == str(minor):
            return exe
    return None


def test_source_compiles_on_the_declared_pythons() -> None:
    """Every declared Python found on this machine compiles the package, its tests and examples,
    and imports ``fervid`` (torch-free: the full suite runs on the development venv's Python)."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    minors = [
        int(c.rsplit(".", 1)[1])
        for c in meta["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    code = (
        "import pathlib, sys\n"
        "for root in sys.argv[1:]:\n"
        "    for p in sorted(pathlib.Path(root).rglob('*.py')):\n"
        "        compile(p.read_text(encoding='utf-8'), str(p), 'exec', dont_inherit=True)\n"
        "import fervid\n"
        "print(fervid.__version__)\n"
    )
    checked = []
    for minor in minors:
        exe = _interpreter(minor)
        if exe is None:
            continue
        out = subprocess.run(
            [exe, "-c", code, "src", "tests", "examples"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONDONTWRITEBYTECODE": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, f"Python 3.{minor} ({exe}): {out.stderr[-2000:]}"
        from fervid import __version__

        assert out.stdout.strip() == __version__
        checked.append(minor)
    assert sys.version_info.minor in checked or sys.version_info.minor not in minors
    print(f"compiled and imported on Python 3.{checked}")


def test_the_commands_in_the_docs_parse() -> None:
    """Every ``fervid VERB ...`` line in a code block of the docs and the README is accepted by
    the CLI's parser (training.md gave ``export --int8 ... --data``, which export refuses)."""
    import contextlib
    import io
    import shlex

    from fervid.cli import build_parser

    parser = build_parser()
    pages = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
    checked, refused = 0, []
    for page in pages:
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
            for line in block.splitlines():
                line = line.split(" #")[0].strip()
                if not line.startswith("fervid ") or any(c in line for c in ("...", "\\", "|", ">", "$(")):
                    continue  # elided or shell-composed lines
                checked += 1
                err = io.StringIO()
                try:
                    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                        parser.parse_args(shlex.split(line)[1:])
                except SystemExit as e:
                    if e.code not in (0, None):
                        refused.append(f"{page.name}: {line}: {err.getvalue().strip().splitlines()[-1]}")
    assert checked >= 20, f"only {checked} commands found in the docs"
    assert not refused, "\n".join(refused)
