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
that is mostly background above and below the short end. With `rectify`, two straight lines bounding the plate's
text are found and the quadrilateral between them is stretched onto the whole crop height, so every character spans
the strip as an upright plate's do. The lines are the two strongest near-horizontal edge lines of the crop (a
Hough-style search over slopes and offsets of the horizontal-edge map: plate borders, character tops and bottoms)
that lie apart across the whole width. A fit through each column strip's edge band instead, the first version, was
pulled off the plate by textured background beside a strongly slanted plate and by a coloured bar above its text, and
cut the characters' feet or tops off in the strip (7 of the 8 perspective plates the embedded default misread in
one run).
"""

import numpy as np
from PIL import Image


# The tilt is searched on a copy this wide (keeping the aspect ratio): plenty for a plate's long edges, and cheap.
_ANALYSIS_WIDTH = 96
# Coarse steps over the whole range, then 1-degree steps around the best coarse angle.
_COARSE_STEP_DEGREES = 4.0
# Tilts below this are within the search's 1-degree grid: not worth a resampling of the crop.
MIN_TILT_DEGREES = 2.0
# Rectification searches its lines on a copy at most this wide (keeping the aspect ratio).
_RECTIFY_ANALYSIS_WIDTH = 128
# Line slopes searched first, in rows per column: a keystone's edges slant by up to ~22 degrees after levelling. Each
# line found is then refined within one step of this grid and a few rows of its offset.
_RECTIFY_SLOPES = np.linspace(-0.4, 0.4, 17)
_RECTIFY_REFINE_ROWS = 2
# Squared gradients weigh the plate's strong edges (characters, border) over background texture.
_RECTIFY_EDGE_POWER = 2
# The two lines are at least this share of the crop height apart at the plate's taller end, and do not come closer
# than the second share at its shorter end (a plate seen from the side can be a quarter of the crop tall there): a
# border and the text line next to it, or the two edges of a bar, are never taken as the plate's top and bottom.
_RECTIFY_MIN_SEPARATION = 0.3
_RECTIFY_MIN_END_SEPARATION = 0.1
# The plate between the lines is widened by this share of its height above and below, so character tops and feet stay
# in when the lines are the text's own.
_RECTIFY_MARGIN = 0.08


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


def _horizontal_edge_map(gray: np.ndarray) -> Image.Image:
    """Absolute vertical difference (central) as a float image: the edges of horizontal lines only, so a line across
    a row of characters gains nothing from their vertical strokes."""
    gray = gray.astype(np.float32)
    vertical = np.zeros_like(gray)
    vertical[1:-1] = np.abs(gray[2:] - gray[:-2])
    return Image.fromarray(vertical)


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


def _line_scores(weights: np.ndarray, slopes: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Mean of `weights` along every line `row = offset + slope * (column - centre)`: shape (slopes, offsets), for
    `offsets` (default: one per row of `weights`). Lines leaving the map count zero where they are outside it."""
    height, width = weights.shape
    offsets = np.arange(height) if offsets is None else offsets
    columns = np.arange(width)
    rows = np.rint(offsets[None, :, None] + slopes[:, None, None] * (columns - (width - 1) / 2)).astype(np.int64)
    inside = (rows >= 0) & (rows < height)
    values = np.where(inside, weights[np.clip(rows, 0, height - 1), columns], 0.0)
    return values.sum(axis=2) / width


def _refined(weights: np.ndarray, slope: float, offset: int) -> tuple[float, float]:
    """The best line within one coarse slope step and `_RECTIFY_REFINE_ROWS` rows of `(slope, offset)`, its slope on
    a grid that drifts by about one row across the map's width."""
    height, width = weights.shape
    step = _RECTIFY_SLOPES[1] - _RECTIFY_SLOPES[0]
    slopes = slope + np.linspace(-step, step, 2 * max(1, int(np.ceil(step * width))) + 1)
    offsets = np.arange(max(0, offset - _RECTIFY_REFINE_ROWS), min(height, offset + _RECTIFY_REFINE_ROWS + 1))
    scores = _line_scores(weights, slopes, offsets)
    best_slope, best_offset = np.unravel_index(np.argmax(scores), scores.shape)
    return float(slopes[best_slope]), float(offsets[best_offset])


def _plate_edges(row_edges: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Lines `(slope, intercept)` over the columns of `row_edges` (a trimmed crop's horizontal-edge map) bounding the
    plate's text, top line first: the strongest line, and the strongest one apart from it (by at least
    `_RECTIFY_MIN_SEPARATION` of the height at one end, `_RECTIFY_MIN_END_SEPARATION` at the other), each found on a
    coarse grid of slopes and then refined. None when the map has no edges or no such pair."""
    height, width = row_edges.shape
    scale = min(1.0, _RECTIFY_ANALYSIS_WIDTH / width)
    small_width, small_height = max(8, round(width * scale)), max(8, round(height * scale))
    small = Image.fromarray(row_edges.astype(np.float32)).resize((small_width, small_height), Image.BILINEAR)
    weights = np.power(np.asarray(small, dtype=np.float64), _RECTIFY_EDGE_POWER)
    if weights.sum() <= 0:
        return None
    scores = _line_scores(weights, _RECTIFY_SLOPES)
    first_slope, first_offset = np.unravel_index(np.argmax(scores), scores.shape)
    ends = np.array([-(small_width - 1) / 2, (small_width - 1) / 2])
    first_ends = first_offset + _RECTIFY_SLOPES[first_slope] * ends
    gaps = np.arange(small_height)[None, :, None] + _RECTIFY_SLOPES[:, None, None] * ends - first_ends
    distances = np.abs(gaps)
    apart = (
        (distances.max(axis=2) >= _RECTIFY_MIN_SEPARATION * small_height)
        & (distances.min(axis=2) >= _RECTIFY_MIN_END_SEPARATION * small_height)
        & (np.sign(gaps[..., 0]) == np.sign(gaps[..., 1]))
    )
    if not apart.any():
        return None
    second_slope, second_offset = np.unravel_index(np.argmax(np.where(apart, scores, -1.0)), scores.shape)
    lines = []
    for slope_index, offset in ((first_slope, first_offset), (second_slope, second_offset)):
        slope, offset = _refined(weights, _RECTIFY_SLOPES[slope_index], offset)
        # From the small map's coordinates (offset at its centre column) to the crop's: row = intercept + slope * column.
        crop_slope = slope * (small_width / width) / (small_height / height)
        intercept = (offset - slope * (small_width - 1) / 2) * height / small_height
        lines.append(np.array([crop_slope, intercept]))
    return tuple(sorted(lines, key=lambda line: np.polyval(line, width / 2)))


def _rectified(turned: Image.Image, row_edges: np.ndarray, box: tuple[int, int, int, int], fill) -> Image.Image:
    """The plate inside `box` of `turned`, the lines bounding its text (found on `row_edges`, the horizontal-edge map
    turned alike) stretched onto the output's top and bottom rows (a bilinear quad warp): the crop of `box` when no
    such lines are found."""
    left, top, right, bottom = box
    lines = _plate_edges(row_edges[top:bottom, left:right])
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

    With `rectify`, every crop (turned or not) is also trimmed to the plate and its keystone undone: the two lines
    bounding the plate's text (with a margin) become the crop's top and bottom rows."""
    tilt = estimate_tilt(image, max_degrees)
    turn = abs(tilt) >= MIN_TILT_DEGREES
    if not turn and not rectify:
        return image
    fill = image.getpixel((0, 0))
    turned = image.rotate(tilt, resample=Image.BICUBIC, expand=True, fillcolor=fill) if turn else image
    # The band comes from the edge map turned alike, where the fill adds no edges (the colour image's fill border would).
    gray = np.asarray(image.convert("L"))
    edges = _edge_map(gray)
    edges = _turned(edges, tilt) if turn else np.asarray(edges, dtype=np.float32)
    top, bottom = _band(edges.sum(axis=1), 0.02, 0.98, margin=0.08)
    left, right = _band(edges[top:bottom].sum(axis=0), 0.01, 0.99, margin=0.03)
    if rectify:
        row_edges = _horizontal_edge_map(gray)
        row_edges = _turned(row_edges, tilt) if turn else np.asarray(row_edges, dtype=np.float32)
        return _rectified(turned, row_edges, (left, top, right, bottom), fill)
    return turned.crop((left, top, right, bottom))


__all__ = ["MIN_TILT_DEGREES", "check_max_degrees", "check_rectify", "deskew", "estimate_tilt"]
