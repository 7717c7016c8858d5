"""Rebuild the bundled ONNX files (``src/fervid/weights/{default,fast,ferplus}.onnx``) from
their fp16 safetensors, at half the size of a plain fp32 export, losslessly.

The graph is exported without constant folding (BatchNormalization stays a node), so every
initializer is one of the module's tensors, which the fp16 safetensors hold exactly. Each float
initializer that is exactly fp16-representable is stored as fp16 followed by a
``Cast(to=float)`` node (checked: max |fp16 -> fp32 - original| == 0); any other stays fp32.
onnxruntime folds the casts and fuses Conv + BatchNorm when it creates the session. The
``fervid.*`` metadata is the same as ``fervid export``'s. Prints the new sha256 for
``manifest.json``.

    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/bundle_onnx.py [--out src/fervid/weights]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fervid.models.bundled import file_sha256
from fervid.models.checkpoint import load_model
from fervid.models.onnx import set_metadata, to_onnx_bytes

NAMES = ("default", "fast", "ferplus")


def fp16_initializers(proto: onnx.ModelProto) -> int:
    """Store each exactly fp16-representable float initializer as fp16 + ``Cast``; returns how
    many were converted."""
    graph = proto.graph
    casts = []
    n = 0
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        h = a.astype(np.float16)
        if not np.all(np.isfinite(h)) or np.max(np.abs(h.astype(np.float32) - a), initial=0.0) != 0.0:
            continue
        name = init.name
        half = name + "_fp16"
        init.CopyFrom(numpy_helper.from_array(h, half))
        casts.append(helper.make_node("Cast", [half], [name], to=TensorProto.FLOAT, name=name + "_cast"))
        n += 1
    nodes = casts + list(graph.node)  # casts first: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    return n


def bundle(name: str, out: Path) -> Path:
    m = load_model(name, device="cpu").eval().float()
    proto = onnx.load_from_string(to_onnx_bytes(m, fold=False))
    n_float = sum(i.data_type == TensorProto.FLOAT for i in proto.graph.initializer)
    n = fp16_initializers(proto)
    set_metadata(proto, m, "none")
    onnx.checker.check_model(proto)
    path = out / f"{name}.onnx"
    onnx.save(proto, str(path))
    print(f"{name}: {n}/{n_float} float initializers as fp16, {path.stat().st_size} bytes, sha256 {file_sha256(path)}")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "src/fervid/weights")
    ap.add_argument("--names", nargs="+", default=list(NAMES))
    args = ap.parse_args()
    for name in args.names:
        bundle(name, args.out)


if __name__ == "__main__":
    main()
