"""Count function-level imports in the package's source (issue 21).

    python benchmarks/function_imports.py [SRC] [--list] [--files PATH ...]

An import inside a function is counted once per statement (``TYPE_CHECKING`` blocks left out).
It *repeats* a top-level import when its file already imports the same module at top level
(``import m`` or ``from m import ...``): moving it up costs nothing. A *fervid* import names a
module of the package: it can move up unless it is heavy behind it or would close a cycle, which
this script does not judge (tests/test_architecture.py and ../shared/tools/import_graph.py do).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def _skipped(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _module(node: ast.Import | ast.ImportFrom, pkg: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
        return [".".join(base + ([node.module] if node.module else []))]
    return [node.module or ""]


def scan(path: Path, src: Path) -> list[tuple[int, str, bool]]:
    """``(line, module, repeats_top_level)`` for each function-level import statement of ``path``."""
    tree = ast.parse(path.read_text())
    skip = _skipped(tree)
    parts = list(path.relative_to(src).with_suffix("").parts)
    pkg = ".".join(parts if parts[-1] == "__init__" else parts[:-1]).removesuffix(".__init__")
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            top.update(_module(node, pkg))
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
                for mod in _module(node, pkg):
                    found.append((node.lineno, mod, mod in top))
    return sorted(set(found))  # nested functions are walked twice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="?", default="src")
    ap.add_argument("--files", nargs="*", help="only these files (paths under SRC)")
    ap.add_argument("--list", action="store_true", help="print each import")
    args = ap.parse_args()
    src = Path(args.src)
    files = [Path(f) for f in args.files] if args.files else sorted(src.rglob("*.py"))
    total = repeats = fervid = 0
    for f in files:
        for line, mod, rep in scan(f, src):
            total += 1
            repeats += rep
            fervid += mod.startswith("fervid")
            if args.list:
                print(f"{f}:{line}: {mod}{'  (repeats a top-level import)' if rep else ''}")
    print(
        f"{len(files)} files: {total} function-level imports, {repeats} repeating a top-level import, {fervid} of fervid modules"
    )


if __name__ == "__main__":
    main()
