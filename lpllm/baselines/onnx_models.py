"""What the readers that run an ONNX graph (fast-plate-ocr exports, RapidOCR) share."""

from pathlib import Path

import numpy as np


def onnx_parameter_counts(onnx_file: str | Path) -> dict | None:
    """Weights of an ONNX graph (its initializers), when the `onnx` package is there to read them; else None."""
    try:
        import onnx
    except ImportError:
        return None
    total = sum(int(np.prod(tensor.dims)) for tensor in onnx.load(str(onnx_file)).graph.initializer)
    return {"total": total, "trainable": total}


__all__ = ["onnx_parameter_counts"]
