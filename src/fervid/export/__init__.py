"""Export: ONNX (fp32 and int8 with a chosen fp32 tail), with parity checks against PyTorch."""


def __getattr__(name: str):  # ``from fervid.export import export_onnx`` as before the move
    if name in ("export_onnx", "ExportReport"):
        from fervid.export import onnx

        return getattr(onnx, name)
    raise AttributeError(f"module 'fervid.export' has no attribute {name!r}")
