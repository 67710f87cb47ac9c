"""Folder entry point: `evaluate.load("lpllm_metrics")` loads the same module as
`evaluate.load("lpllm_metrics/plate_metrics.py")` (evaluate looks for `<folder>/<folder>.py`)."""

from .plate_metrics import PlateMetrics


__all__ = ["PlateMetrics"]
