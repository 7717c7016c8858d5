from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list registered architectures and bundled models")
    p.add_argument("--json", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    from fervid.models import count_parameters, create_model, describe_models
    from fervid.models.checkpoint import bundled_models

    archs: dict[str, dict] = {}
    for n, d in describe_models().items():
        try:
            archs[n] = {"description": d, "parameters": count_parameters(create_model(n))}
        except ImportError as e:  # an optional backend (timm) that is not installed
            archs[n] = {"description": d, "parameters": None, "unavailable": str(e)}
    bundled = {n: {"file": b.file, "description": b.description} for n, b in bundled_models().items()}
    if args.json:
        print(json.dumps({"architectures": archs, "bundled": bundled}, indent=2))
        return 0
    print("architectures (fervid train --model NAME):")
    for n, a in archs.items():
        size = f"{a['parameters'] / 1e6:6.2f} M params" if a["parameters"] else "  (not installed)"
        print(f"  {n:16s} {size}  {a['description']}")
    print("bundled models (load_model(NAME), fervid predict --model NAME):")
    for n, b in bundled.items():
        print(f"  {n:16s} {b['file']}  {b['description']}")
    return 0
