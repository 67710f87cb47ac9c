"""Levelling tilted plate crops before they are squashed into a plate strip.

A plate crop turned by 15 degrees, resized to a 32x448 strip (7x taller than wide squashed into 14x wider than tall),
becomes a diagonal: its first characters sit at the bottom of the strip, its last ones at the top, each straddling
the two rows of 16-pixel patches differently. A small vision tower trained from scratch on a few thousand plates
reads those worst of all (perspective was a third of the embedded default's errors). Levelling the crop first costs
~1.5 ms per image on a CPU and leaves upright crops untouched.

The tilt is the angle whose rotation of the crop's edge map (gradient magnitude) concentrates the most edge energy
into the fewest rows: a plate's character tops and bottoms and its border are long horizontal edges when level
(projection-profile skew estimation, as document OCR deskews scanned pages).
"""

import numpy as np
from PIL import Image


# The tilt is searched on a copy this wide (keeping the aspect ratio): plenty for a plate's long edges, and cheap.
_ANALYSIS_WIDTH = 96
# Coarse steps over the whole range, then 1-degree steps around the best coarse angle.
_COARSE_STEP_DEGREES = 4.0
# Tilts below this are within the search's 1-degree grid: not worth a resampling of the crop.
MIN_TILT_DEGREES = 2.0


def check_max_degrees(max_degrees) -> float:
    """`max_degrees` as a float in [0, 45) (0: deskewing off); ValueError otherwise."""
    try:
        value = float(max_degrees)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(max_degrees, bool) or not 0 <= value < 45:
        raise ValueError(
            f"`deskew_max_degrees` must be an angle in [0, 45) degrees (0: off), the largest tilt corrected; "
            f"got {max_degrees!r}."
        )
    return value


def _edge_map(gray: np.ndarray) -> Image.Image:
    """Gradient magnitude (central differences) as a float image: zero on flat areas and on rotation fill."""
    gray = gray.astype(np.float32)
    vertical = np.zeros_like(gray)
    vertical[1:-1] = gray[2:] - gray[:-2]
    horizontal = np.zeros_like(gray)
    horizontal[:, 1:-1] = gray[:, 2:] - gray[:, :-2]
    return Image.fromarray(np.hypot(horizontal, vertical))  # float32: mode "F"


def _turned(edges: Image.Image, degrees: float) -> np.ndarray:
    """The edge map turned counter-clockwise inside its grown bounding box, as an array (the fill adds no edges)."""
    return np.asarray(edges.rotate(degrees, resample=Image.BILINEAR, expand=True), dtype=np.float32)


def _concentration(edges: Image.Image, degrees: float) -> float:
    # Rotation keeps the total edge energy; the sum of squared row sums grows as it gathers into fewer rows.
    return float(np.square(_turned(edges, degrees).sum(axis=1)).sum())


def estimate_tilt(image: Image.Image, max_degrees: float) -> float:
    """The counter-clockwise angle, in whole degrees within `±max_degrees`, that levels the crop's text
    (`image.rotate(angle)` levels it; 0.0 for an upright crop)."""
    if max_degrees <= 0:
        return 0.0
    gray = image.convert("L")
    height = max(8, round(gray.height * _ANALYSIS_WIDTH / gray.width))
    edges = _edge_map(np.asarray(gray.resize((_ANALYSIS_WIDTH, height), Image.BILINEAR)))

    def best_of(angles) -> float:
        angles = [float(angle) for angle in angles if abs(angle) <= max_degrees + 1e-9]
        scores = np.array([_concentration(edges, angle) for angle in angles])
        # Among (near) ties, the smallest turn: a crop without edges (a flat image) is left as it is.
        tied = [angle for angle, score in zip(angles, scores) if score >= scores.max() * (1 - 1e-6)]
        return min(tied, key=abs)

    steps = int(np.ceil(max_degrees / _COARSE_STEP_DEGREES))
    coarse = best_of(np.linspace(-steps * _COARSE_STEP_DEGREES, steps * _COARSE_STEP_DEGREES, 2 * steps + 1))
    return best_of(coarse + np.arange(-2.0, 3.0))


def _band(profile: np.ndarray, low: float, high: float, margin: float) -> tuple[int, int]:
    """The index range holding the `low`..`high` quantiles of `profile`'s mass, widened by `margin` of its length."""
    total = float(profile.sum())
    if total <= 0:
        return 0, len(profile)
    cumulative = np.cumsum(profile) / total
    start, stop = int(np.searchsorted(cumulative, low)), int(np.searchsorted(cumulative, high)) + 1
    pad = int(round(margin * (stop - start)))
    return max(0, start - pad), min(len(profile), stop + pad)


def deskew(image: Image.Image, max_degrees: float) -> Image.Image:
    """Levels an RGB plate crop tilted by up to `max_degrees`: turns it (the corners filled with the crop's corner
    colour), then trims what the turn added around the plate, rows above and below its edges, then columns left and
    right of them, so the characters keep their height in the strip and span its width as an upright crop's do.
    Crops tilted by less than `MIN_TILT_DEGREES` come back unchanged (the same object)."""
    tilt = estimate_tilt(image, max_degrees)
    if abs(tilt) < MIN_TILT_DEGREES:
        return image
    turned = image.rotate(tilt, resample=Image.BICUBIC, expand=True, fillcolor=image.getpixel((0, 0)))
    # The band comes from the edge map turned alike, where the fill adds no edges (the colour image's fill border would).
    edges = _turned(_edge_map(np.asarray(image.convert("L"))), tilt)
    top, bottom = _band(edges.sum(axis=1), 0.02, 0.98, margin=0.08)
    left, right = _band(edges[top:bottom].sum(axis=0), 0.01, 0.99, margin=0.03)
    return turned.crop((left, top, right, bottom))


__all__ = ["MIN_TILT_DEGREES", "check_max_degrees", "deskew", "estimate_tilt"]
