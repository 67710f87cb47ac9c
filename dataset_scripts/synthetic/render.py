"""Rendering clean plates: background, decorations and label characters laid out by a `PlateStyle`.

Glyphs are rendered once per font and character (at a large size, cropped to their ink) and then resized into
each character box, so a plate costs a few small resizes and blends rather than a font rasterisation per
character. All randomness comes from the `numpy.random.Generator` passed in, so a plate is a pure function of
its text, style and generator state.
"""

from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..regions import LAYOUTS
from .fonts import FontSet
from .styles import PlateStyle, TextRow

GLYPH_SIZE = 96
# Share of a character box's advance that the glyph may fill; the rest is spacing.
_CHAR_FILL = 0.88
# Width of an extra gap (between character groups), in character advances.
_GAP = 0.5


@lru_cache(maxsize=8)
def _font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, GLYPH_SIZE, index=0)


@lru_cache(maxsize=1024)
def glyph_mask(font_path: str, char: str) -> np.ndarray:
    """The ink of `char` in the font at `font_path`: a float32 coverage mask in [0, 1] cropped to its ink."""
    font = _font(font_path)
    left, top, right, bottom = font.getbbox(char)
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), char, font=font, fill=255)
    mask = np.asarray(canvas, dtype=np.float32) / 255.0
    rows, columns = np.nonzero(mask > 0.05)
    if rows.size == 0:
        raise ValueError(f"Font {font_path} draws nothing for {char!r}.")
    return np.ascontiguousarray(mask[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1])


def _font_for(char: str, fonts: FontSet) -> str:
    if ord(char) < 128:
        return fonts.latin
    if fonts.cjk is None:
        raise ValueError(f"Character {char!r} needs a CJK font, but none was given.")
    return fonts.cjk


def _blend(canvas: np.ndarray, mask: np.ndarray, color, x: int, y: int) -> None:
    """Paints `color` onto `canvas` through `mask` with its top-left at (x, y), clipped to the canvas."""
    height, width = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + width, canvas.shape[1]), min(y + height, canvas.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    alpha = mask[y0 - y : y1 - y, x0 - x : x1 - x, None]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (region * (1 - alpha) + np.asarray(color, np.float32) * alpha).astype(np.uint8)


def draw_glyph(canvas, char, fonts, color, box, condense) -> None:
    """Draws `char` centred in the `box` (x, y, w, h), the full box height (a plate prints every character at
    one height, Chinese ones included), squeezed horizontally by `condense` for Latin glyphs, and further when
    still wider than the box."""
    x, y, width, height = box
    mask = glyph_mask(_font_for(char, fonts), char)
    natural_width = mask.shape[1] * height / mask.shape[0] * (condense if ord(char) < 128 else 1.0)
    target_width, target_height = max(1, round(min(natural_width, width))), max(1, round(height))
    resized = cv2.resize(mask, (target_width, target_height), interpolation=cv2.INTER_AREA)
    _blend(canvas, resized, color, round(x + (width - target_width) / 2), round(y + (height - target_height) / 2))


def draw_text_line(canvas, text, fonts, color, box, condense=0.8, gap_after=(), separator="") -> None:
    """Lays `text` out evenly across `box` (x, y, w, h) with wider gaps after the indices in `gap_after`, where
    `separator` ("·" or "-") is printed."""
    x, y, width, height = box
    advance = width / (len(text) + _GAP * len(gap_after))
    cursor = x
    for index, char in enumerate(text):
        if char != " ":
            draw_glyph(
                canvas,
                char,
                fonts,
                color,
                (cursor + advance * (1 - _CHAR_FILL) / 2, y, advance * _CHAR_FILL, height),
                condense,
            )
        cursor += advance
        if index in gap_after:
            center = (round(cursor + advance * _GAP / 2), round(y + height / 2))
            if separator == "·":
                cv2.circle(canvas, center, max(1, round(height * 0.06)), color, -1, lineType=cv2.LINE_AA)
            elif separator == "-":
                half = max(1, round(advance * _GAP * 0.35))
                thickness = max(1, round(height * 0.08))
                cv2.line(
                    canvas, (center[0] - half, center[1]), (center[0] + half, center[1]), color, thickness, cv2.LINE_AA
                )
            cursor += advance * _GAP


def _jitter(color, rng, amount=10):
    return tuple(int(np.clip(channel + rng.integers(-amount, amount + 1), 0, 255)) for channel in color)


def _background(style: PlateStyle, width: int, height: int, rng) -> np.ndarray:
    if style.gradient:
        start, end = (np.asarray(_jitter(color, rng), np.float32) for color in style.backgrounds[:2])
        steps = np.linspace(0, 1, height if style.gradient == "vertical" else width, dtype=np.float32)[:, None]
        ramp = start + (end - start) * steps
        canvas = (
            ramp[:, None, :].repeat(width, 1) if style.gradient == "vertical" else ramp[None, :, :].repeat(height, 0)
        )
        return canvas.astype(np.uint8)
    color = _jitter(style.backgrounds[rng.integers(len(style.backgrounds))], rng)
    return np.full((height, width, 3), color, dtype=np.uint8)


def _box(fractions, width, height):
    left, top, right, bottom = fractions
    return left * width, top * height, (right - left) * width, (bottom - top) * height


def _draw_band(canvas, style, fonts, rng) -> None:
    fraction, color, captions = style.band
    height, width = canvas.shape[:2]
    band_height = max(2, round(fraction * height))
    if color is not None:
        canvas[:band_height] = _jitter(color, rng, 6)
    caption = captions[rng.integers(len(captions))]
    text_width = min(0.8, 0.045 * len(caption) + 0.05) * width
    draw_text_line(
        canvas,
        caption,
        fonts,
        style.band_text_color,
        ((width - text_width) / 2, band_height * 0.18, text_width, band_height * 0.64),
        condense=0.9,
    )


def _draw_strip(canvas, style, fonts, rng) -> None:
    fraction, color, codes = style.strip
    height, width = canvas.shape[:2]
    strip_width = max(3, round(fraction * width))
    canvas[:, :strip_width] = _jitter(color, rng, 6)
    # The ring of twelve stars, as small yellow dots.
    center, radius = (strip_width / 2, height * 0.3), min(strip_width, height) * 0.28
    for step in range(12):
        angle = 2 * np.pi * step / 12
        point = (round(center[0] + radius * np.cos(angle)), round(center[1] + radius * np.sin(angle)))
        cv2.circle(canvas, point, max(1, round(height * 0.018)), (250, 205, 0), -1, lineType=cv2.LINE_AA)
    code = codes[rng.integers(len(codes))]
    draw_text_line(
        canvas,
        code,
        fonts,
        (245, 245, 245),
        (strip_width * 0.1, height * 0.6, strip_width * 0.8, height * 0.28),
        condense=0.9,
    )


def render_plate(
    text: str, layout_name: str, style: PlateStyle, fonts: FontSet, rng: np.random.Generator, height: int = 56
) -> np.ndarray:
    """A clean, frontal plate showing `text` in `style`: an H x W x 3 uint8 RGB array, `height` pixels high
    (x0.9-1.1 at random) for a one-row plate and proportionally more for taller layouts."""
    layout = LAYOUTS[layout_name]
    rows_text = layout.split_rows(text)
    # A text that does not follow the layout (a free text) is spaced evenly: the layout's gaps belong to its pattern.
    follows_layout = layout.matches(text)
    plate_height = round(height * rng.uniform(0.9, 1.1) * (1.6 if len(style.rows) > 1 else 1.0))
    plate_width = round(plate_height * style.aspect)
    canvas = _background(style, plate_width, plate_height, rng)
    if style.band is not None:
        _draw_band(canvas, style, fonts, rng)
    if style.strip is not None:
        _draw_strip(canvas, style, fonts, rng)
    color = _jitter(style.text_colors[rng.integers(len(style.text_colors))], rng, 8)
    for row_text, row in zip(rows_text, style.rows):
        row: TextRow
        draw_text_line(
            canvas,
            row_text,
            fonts,
            color,
            _box(row.box, plate_width, plate_height),
            style.condense,
            row.gap_after if follows_layout else (),
            row.separator,
        )
    if style.border is not None:
        thickness = max(1, round(plate_height / 36))
        inset = thickness
        cv2.rectangle(
            canvas,
            (inset, inset),
            (plate_width - 1 - inset, plate_height - 1 - inset),
            _jitter(style.border, rng, 8),
            thickness,
        )
    return canvas


def add_surroundings(plate: np.ndarray, rng: np.random.Generator, max_margin: float = 0.12) -> np.ndarray:
    """The plate inside a margin of car body (a random flat colour with a little texture), as a detector's crop
    would show it: up to `max_margin` of the plate height on each side."""
    height = plate.shape[0]
    top, bottom, left, right = (int(rng.integers(0, max(1, round(max_margin * height)) + 1)) for _ in range(4))
    color = tuple(int(value) for value in rng.integers(10, 230, size=3))
    framed = cv2.copyMakeBorder(plate, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    if top or bottom or left or right:
        texture = rng.normal(0, 6, size=framed.shape[:2]).astype(np.float32)[..., None]
        mask = np.ones(framed.shape[:2], dtype=bool)
        mask[top : top + plate.shape[0], left : left + plate.shape[1]] = False
        framed = np.where(mask[..., None], np.clip(framed + texture, 0, 255), framed).astype(np.uint8)
    return framed


__all__ = ["add_surroundings", "draw_text_line", "glyph_mask", "render_plate"]
