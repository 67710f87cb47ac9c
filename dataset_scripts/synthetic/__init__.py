"""Synthetic degraded plates: fonts, plate styles, rendering, degradations and the `synthetic` builder."""

from .degrade import DEGRADATION_TYPES, SEVERITIES, SEVERITY_TABLE
from .fonts import FontNotFoundError, FontSet, find_fonts
from .generate import SyntheticConfig, build_synthetic
from .styles import DEFAULT_LAYOUTS, STYLES

__all__ = [
    "DEFAULT_LAYOUTS",
    "DEGRADATION_TYPES",
    "FontNotFoundError",
    "FontSet",
    "SEVERITIES",
    "SEVERITY_TABLE",
    "STYLES",
    "SyntheticConfig",
    "build_synthetic",
    "find_fonts",
]
