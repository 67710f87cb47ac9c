"""Levelling tilted plate crops before they are squashed into a plate strip.

A plate crop turned by 15 degrees, resized to a 32x448 strip (7x taller than wide squashed into 14x wider than tall),
becomes a diagonal: its first characters sit at the bottom of the strip, its last ones at the top, each straddling
the two rows of 16-pixel patches differently. A small vision tower trained from scratch on a few thousand plates
reads those worst of all (perspective was a third of the embedded default's errors). Levelling the crop first costs
~1.5 ms per image on a CPU and leaves upright crops untouched.

The tilt is the angle whose rotation of the crop's edge map (gradient magnitude) concentrates the most edge energy
into the fewest rows: a plate's character tops and bottoms and its border are long horizontal edges when level
(projection-profile skew estimation, as document OCR deskews scanned pages).

Levelling leaves the keystone of a plate seen from the side: one end taller than the other, and a levelled crop
that is mostly background above and below the short end. With `rectify`, the plate's top and bottom edges are
fitted as two lines (from the edge-energy band of each of a few column strips) and the quadrilateral between them is
stretched onto the whole crop height, so every character spans the strip as an upright plate's do.
"""

import numpy as np
from PIL import Image


# The tilt is searched on a copy this wide (keeping the aspect ratio): plenty for a plate's long edges, and cheap.
_ANALYSIS_WIDTH = 96
# Coarse steps over the whole range, then 1-degree steps around the best coarse angle.
_COARSE_STEP_DEGREES = 4.0
# Tilts below this are within the search's 1-degree grid: not worth a resampling of the crop.
MIN_TILT_DEGREES = 2.0
# Rectification fits the plate's top and bottom edges through the edge band of this many column strips.
_RECTIFY_STRIPS = 8
# Squared gradients weigh the plate's strong edges (characters, border) over background texture.
_RECTIFY_EDGE_POWER = 2
# Each strip's band holds these quantiles of its edge energy; the fitted plate is then widened by this share of its
# height above and below, so the border and character tops stay in.
_RECTIFY_QUANTILES = (0.03, 0.97)
_RECTIFY_MARGIN = 0.06


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


def check_rectify(rectify_plate) -> bool:
    """`rectify_plate` itself when it is a bool; ValueError naming the field otherwise."""
    if not isinstance(rectify_plate, bool):
        raise ValueError(f"`rectify_plate` must be true or false; got {rectify_plate!r}.")
    return rectify_plate


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


def _plate_edges(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Lines `(slope, intercept)` of the plate's top and bottom edges across the columns of `edges` (a trimmed crop's
    edge map), or None when too few column strips hold edges to fit them."""
    weights = np.power(edges, _RECTIFY_EDGE_POWER)
    bounds = np.linspace(0, weights.shape[1], _RECTIFY_STRIPS + 1).astype(int)
    centres, tops, bottoms = [], [], []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        profile = weights[:, start:stop].sum(axis=1)
        if stop <= start or profile.sum() <= 0:
            continue
        top, bottom = _band(profile, *_RECTIFY_QUANTILES, margin=0.0)
        centres.append((start + stop - 1) / 2)
        tops.append(top)
        bottoms.append(bottom)
    if len(centres) < 3:
        return None
    return np.polyfit(centres, tops, 1), np.polyfit(centres, bottoms, 1)


def _rectified(turned: Image.Image, edges: np.ndarray, box: tuple[int, int, int, int], fill) -> Image.Image:
    """The plate inside `box` of `turned`, its fitted top and bottom edges stretched onto the output's top and bottom
    rows (a bilinear quad warp): the crop of `box` when no edges can be fitted."""
    left, top, right, bottom = box
    lines = _plate_edges(edges[top:bottom, left:right])
    if lines is None:
        return turned.crop(box)
    width = right - left
    top_line, bottom_line = lines
    ends = np.array([0.0, width - 1.0])
    upper, lower = np.polyval(top_line, ends), np.polyval(bottom_line, ends)
    heights = lower - upper
    if np.any(heights < 2):
        return turned.crop(box)
    upper, lower = upper - _RECTIFY_MARGIN * heights, lower + _RECTIFY_MARGIN * heights
    # Source corners for PIL's QUAD transform: upper left, lower left, lower right, upper right.
    quad = (left, top + upper[0], left, top + lower[0], right, top + lower[1], right, top + upper[1])
    height = max(8, int(round(heights.max() * (1 + 2 * _RECTIFY_MARGIN))))
    return turned.transform((width, height), Image.QUAD, quad, resample=Image.BICUBIC, fillcolor=fill)


def deskew(image: Image.Image, max_degrees: float, rectify: bool = False) -> Image.Image:
    """Levels an RGB plate crop tilted by up to `max_degrees`: turns it (the corners filled with the crop's corner
    colour), then trims what the turn added around the plate, rows above and below its edges, then columns left and
    right of them, so the characters keep their height in the strip and span its width as an upright crop's do.
    Crops tilted by less than `MIN_TILT_DEGREES` come back unchanged (the same object), unless `rectify`.

    With `rectify`, every crop (turned or not) is also trimmed to the plate and its keystone undone: the plate's
    fitted top and bottom edges become the crop's top and bottom rows."""
    tilt = estimate_tilt(image, max_degrees)
    turn = abs(tilt) >= MIN_TILT_DEGREES
    if not turn and not rectify:
        return image
    fill = image.getpixel((0, 0))
    turned = image.rotate(tilt, resample=Image.BICUBIC, expand=True, fillcolor=fill) if turn else image
    # The band comes from the edge map turned alike, where the fill adds no edges (the colour image's fill border would).
    edges = _edge_map(np.asarray(image.convert("L")))
    edges = _turned(edges, tilt) if turn else np.asarray(edges, dtype=np.float32)
    top, bottom = _band(edges.sum(axis=1), 0.02, 0.98, margin=0.08)
    left, right = _band(edges[top:bottom].sum(axis=0), 0.01, 0.99, margin=0.03)
    if rectify:
        return _rectified(turned, edges, (left, top, right, bottom), fill)
    return turned.crop((left, top, right, bottom))


__all__ = ["MIN_TILT_DEGREES", "check_max_degrees", "check_rectify", "deskew", "estimate_tilt"]
