"""MkDocs hook: the CLI reference page is the live ``--help`` of every verb, so it cannot drift
from the parser. A page line ``<!-- fervid-cli -->`` is replaced by one section per verb."""

from __future__ import annotations

import argparse
from typing import Any

MARKER = "<!-- fervid-cli -->"


def _help(parser: argparse.ArgumentParser) -> str:
    import os

    # A fixed width: the page does not depend on the terminal that built it.
    os.environ["COLUMNS"] = "100"
    return parser.format_help()


def cli_reference() -> str:
    from fervid.cli import VERBS, build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = ["## fervid", "", "```text", _help(parser).rstrip(), "```", ""]
    for verb in VERBS:
        parts += [f"## fervid {verb}", "", "```text", _help(subparsers.choices[verb]).rstrip(), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
