"""``fervid models``: the registered architectures with their bundled weights (as timm ties
pretrained weights to architectures), the bundled emotion models and the detector weights."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fervid.models import count_parameters, create_model, describe_models
from fervid.models.bundled import bundled_models, pretrained, weight_files


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list registered architectures and bundled models")
    p.add_argument("--json", action="store_true")
    return p


def _bundled() -> dict[str, dict[str, Any]]:
    """Every name a bundled model answers to (aliases included), as before, with its
    architecture and files."""
    return {
        n: {
            "name": b.name,
            "architecture": b.architecture,
            "pretrained_name": b.pretrained_name,
            "file": b.file,
            "sha256": b.sha256,
            "onnx": b.onnx,
            "onnx_sha256": b.onnx_sha256,
            "description": b.description,
        }
        for n, b in bundled_models().items()
    }


def run(args: argparse.Namespace) -> int:
    weights = pretrained()
    archs: dict[str, dict] = {}
    for n, d in describe_models().items():
        try:
            archs[n] = {
                "description": d,
                "parameters": count_parameters(create_model(n)),
                "weights": weights.get(n, []),
            }
        except ImportError as e:  # an optional backend (timm) that is not installed
            archs[n] = {"description": d, "parameters": None, "weights": weights.get(n, []), "unavailable": str(e)}
    bundled = _bundled()
    detectors = [
        {"name": w.name, "runtime": w.runtime, "file": w.file, "sha256": w.sha256, "licence": w.licence}
        for w in weight_files()
        if w.name not in bundled
    ]
    if args.json:
        print(json.dumps({"architectures": archs, "bundled": bundled, "detectors": detectors}, indent=2))
        return 0
    print("architectures (fervid train --model NAME) and their bundled weights:")
    for n, a in archs.items():
        size = f"{a['parameters'] / 1e6:6.2f} M params" if a["parameters"] else "  (not installed)"
        tied = ", ".join(a["weights"]) or "-"
        print(f"  {n:16s} {size}  weights: {tied:14s} {a['description']}")
    print("bundled models (load_model(NAME), fervid predict --model NAME):")
    for n, b in bundled_models(aliases=False).items():
        others = sorted(k for k, v in bundled.items() if v["name"] == n and k != n)
        print(f"  {n:16s} {b.architecture:16s} {b.file}, {b.onnx or 'no ONNX'}  {b.description}")
        if others:
            print(f"  {'':16s} also: {', '.join(others)}")
    print("face detector weights:")
    for det in detectors:
        print(f"  {det['name']:16s} {det['runtime']:16s} {det['file']}  {det['licence']}")
    return 0
