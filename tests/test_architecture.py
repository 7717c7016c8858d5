"""The package's layering, read from its own imports (function-level ones included).

Layers, bottom first; a module may import its own layer or lower ones, never a higher one:

0. ``emotions``, ``errors``, ``runtime``,  vocabulary, the user-error type, device/cache helpers,
   ``safety``, ``version``                 atomic writes, output-over-input refusal, SIGTERM; the version
1. ``data``                                readers, image I/O, preprocessing, statistics
2. ``models``, ``detectors``               architectures, registry, checkpoints; face detectors (beside
                                           the models: they may read the bundled weights, models never
                                           import detectors)
3. ``inference``                           the torch path, ONNX Runtime, crops, recognizer, video
4. ``evaluation``                          metrics, calibration, reports
5. ``training``, ``export``                (siblings: neither imports the other)
6. ``bench``, ``batch``, ``serve``, ``cli`` applications

The package root ``fervid`` (``__init__.py``) is the public facade, above every layer: it may
name any layer, but only lazily (its PEP 562 ``__getattr__``; at import time it loads
``fervid.version`` alone), and no module of the package imports from it: ``from fervid
import X`` inside ``src/`` would make a lower layer depend on the whole API (and on the order
in which the facade loads), so modules import ``X`` from where it is defined.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = {
    "emotions": 0,
    "errors": 0,
    "runtime": 0,
    "safety": 0,
    "version": 0,
    "data": 1,
    "models": 2,
    "detectors": 2,
    "inference": 3,
    "evaluation": 4,
    "training": 5,
    "export": 5,
    "bench": 6,
    "batch": 6,
    "serve": 6,
    "cli": 6,
}

# Same-layer packages that must not import each other in the direction given: training and export
# are independent; models never import detectors (the weights' layer must not depend on a user of them).
SIBLINGS_APART = {("training", "export"), ("export", "training"), ("models", "detectors")}


def _modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "fervid").rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of the fervid modules ``path`` imports, TYPE_CHECKING blocks left out."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("fervid.")}


def _layer(module: str) -> tuple[str, int] | None:
    top = module.split(".")[1] if module.count(".") else ""
    return (top, LAYERS[top]) if top in LAYERS else None


def test_every_module_has_a_layer():
    missing = [m for m in _modules() if m not in ("fervid", "fervid.__main__") and _layer(m) is None]
    assert not missing, f"modules outside the layer map (add them to LAYERS and docs/architecture.md): {missing}"


def test_nothing_imports_upward():
    mods = _modules()
    bad = []
    for name, path in mods.items():
        me = _layer(name)
        if me is None:
            continue
        for imp in _imports(name, path):
            other = _layer(imp)
            if other is None or other[0] == me[0]:
                continue
            if other[1] > me[1] or (me[0], other[0]) in SIBLINGS_APART:
                bad.append(f"{name} (layer {me[1]}) imports {imp} (layer {other[1]})")
    assert not bad, "\n".join(bad)


def _root_imports(path: Path, root: Path = SRC / "fervid") -> list[tuple[int, str]]:
    """``(line, statement)`` of each import of the package root itself in ``path``: ``from fervid
    import X``, ``import fervid``, or a relative import that resolves to the root (TYPE_CHECKING
    blocks included: a type-only import names the defining module too)."""
    rel = path.relative_to(root).parts
    depth = len(rel) - 1  # folders below the root
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            to_root = node.module == "fervid" if node.level == 0 else (node.level - 1 == depth and not node.module)
            if to_root:
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Import) and any(a.name == "fervid" for a in node.names):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_nothing_imports_the_package_root():
    """The facade sits above every layer, so no module imports from it (``__version__`` comes
    from ``fervid.version``, ``EmotionRecognizer`` from ``fervid.inference.recognizer``...)."""
    bad = [
        f"{name}:{line}: {stmt}"
        for name, path in _modules().items()
        if name != "fervid"
        for line, stmt in _root_imports(path)
    ]
    assert not bad, "import from where the name is defined, not the package root:\n" + "\n".join(bad)


def test_the_package_root_imports_lazily():
    """The root imports only ``fervid.version`` at import time (outside TYPE_CHECKING); every other
    public name is a lazy attribute of a module in a layer."""
    import fervid

    path = _modules()["fervid"]
    tree = ast.parse(path.read_text())
    eager = set()
    for node in tree.body:  # module level only: __getattr__ imports on first use
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fervid"):
            eager.add(node.module)
        elif isinstance(node, ast.Import):
            eager.update(a.name for a in node.names if a.name.startswith("fervid"))
    assert eager == {"fervid.version"}, eager
    assert fervid.__version__ is __import__("fervid.version").version.__version__
    unlayered = [f"{name}: fervid.{mod}" for name, mod in fervid._LAZY.items() if _layer(f"fervid.{mod}") is None]
    assert not unlayered, unlayered


def test_the_root_rule_catches_an_offender(tmp_path: Path):
    """The check above sees each spelling of a root import (it would pass vacuously otherwise)."""
    pkg = tmp_path / "fervid" / "sub"
    pkg.mkdir(parents=True)
    f = pkg / "mod.py"
    f.write_text(
        "from fervid import __version__\nimport fervid\nfrom .. import errors\nfrom . import sibling\n"
        "from fervid.version import __version__ as v\nimport fervid.errors\n"
    )
    found = [stmt for _, stmt in _root_imports(f, root=tmp_path / "fervid")]
    assert found == ["from fervid import __version__", "import fervid", "from .. import errors"]


def test_train_is_always_the_function():
    """``fervid.train`` is the training function whatever was imported before."""
    code = (
        "import fervid, fervid.training.loop, fervid.training.config; import fervid.training; "
        "f = fervid.train; import fervid.training.finetune; assert callable(f) and fervid.train is f "
        "and f.__module__ == 'fervid.training.loop', fervid.train"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_does_no_work():
    """``import fervid`` (and the subpackages' __init__) loads neither torch nor OpenCV."""
    code = (
        "import sys, fervid, fervid.inference, fervid.detectors, fervid.evaluation, fervid.training, fervid.export; "
        "heavy = [m for m in ('torch', 'cv2', 'onnxruntime', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "name",
    [
        "EmotionRecognizer",
        "RecognizerConfig",
        "load_model",
        "create_model",
        "list_models",
        "TrainConfig",
        "train",
        "load_dataset",
        "FervidError",
    ],
)
def test_public_api_names(name):
    import fervid

    assert getattr(fervid, name) is not None


def test_architecture_page_lists_every_module():
    """The documentation's layout page stays true: every module of the package is named there."""
    section = (SRC.parent / "docs" / "architecture.md").read_text()
    missing = []
    for name in _modules():
        parts = name.split(".")[1:]
        if not parts or parts[-1] == "__main__":
            continue
        leaf = parts[-1] + ("/" if (SRC / "fervid" / "/".join(parts)).is_dir() else ".py")
        if parts[0] in ("cli", "serve") and len(parts) > 1:
            continue  # one module per verb / the service's internals: named as a folder
        if leaf not in section and not (leaf == "__init__.py"):
            missing.append(name)
    assert not missing, f"modules missing from docs/architecture.md: {missing}"


def test_no_import_cycles():
    """No cycle between modules, not even within a layer (function-level imports included)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for imp in _imports(name, path):
            while imp and imp not in mods:  # `from fervid.x import name` -> module fervid.x
                imp = imp.rsplit(".", 1)[0] if "." in imp else ""
            # a package's __init__ importing its own modules (re-exports) is not a dependency
            if imp and imp != name and imp != "fervid" and not name.startswith(imp + "."):
                targets.add(imp)
        graph[name] = targets
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t) :] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_public_names_match_the_lazy_attributes():
    """``fervid.__all__`` (spelled out for linters) and the lazy attribute map name the same API, and each resolves."""
    import fervid

    assert sorted(fervid.__all__) == sorted(["__version__", *fervid._LAZY])
    for name in fervid._LAZY:
        assert getattr(fervid, name) is not None
