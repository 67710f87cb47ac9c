"""How each synthetic layout looks: plate proportions, colours, where the characters go, and the printed
decorations that are not part of the label (Mercosur band, EU strip, state names, separators).

Geometry is in fractions of the plate's width and height, so a style renders at any size. The texts and
positions of the layouts themselves live in `dataset_scripts.regions`.
"""

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class TextRow:
    """A row of label characters: its box (fractions of the plate) and where extra gaps or printed separators go.

    Args:
        box: (left, top, right, bottom) of the row.
        gap_after: Character indices (within the row) after which a wider gap is left.
        separator: Printed in those gaps ("·" on Chinese plates, "-" on old Brazilian ones), or "".
    """

    box: tuple[float, float, float, float]
    gap_after: tuple[int, ...] = ()
    separator: str = ""


@dataclass(frozen=True)
class PlateStyle:
    """The look of one layout.

    Args:
        layout: The layout name in `dataset_scripts.regions.LAYOUTS`.
        aspect: Plate width / height.
        backgrounds: Background colours to pick from (RGB), or two colours for a gradient (see `gradient`).
        text_colors: Character colours to pick from.
        rows: One `TextRow` per printed row of the layout.
        gradient: "" for a flat background, "vertical" or "horizontal" to blend `backgrounds[0]` into `[1]`.
        border: Border colour, or None.
        band: (height fraction, colour, caption choices) of a band across the top (Mercosur, state name), or None.
        band_text_color: Colour of the band caption.
        strip: (width fraction, colour, caption choices) of a strip down the left side (EU), or None.
        condense: Horizontal squeeze of the glyphs (plate fonts are narrower than DejaVu Sans).
    """

    layout: str
    aspect: float
    backgrounds: tuple[tuple[int, int, int], ...]
    text_colors: tuple[tuple[int, int, int], ...]
    rows: tuple[TextRow, ...]
    gradient: str = ""
    border: tuple[int, int, int] | None = None
    band: tuple | None = None
    band_text_color: tuple[int, int, int] = (255, 255, 255)
    strip: tuple | None = None
    condense: float = 0.72


_WHITE = (242, 242, 240)
_BLACK = (22, 22, 24)
_BR_CITIES = ("ES VITORIA", "SP SAO PAULO", "RJ RIO DE JANEIRO", "MG BELO HORIZONTE", "PR CURITIBA", "BA SALVADOR")
_US_STATES = ("CALIFORNIA", "NEW YORK", "TEXAS", "FLORIDA", "OHIO", "ARIZONA", "OREGON")
_EU_CODES = ("I", "SK", "D", "F", "E", "NL", "PL", "CZ", "P", "B")

_STYLES = (
    PlateStyle(
        "cn_blue",
        440 / 140,
        ((14, 64, 170), (20, 72, 185), (10, 55, 150)),
        (_WHITE,),
        (TextRow((0.05, 0.14, 0.95, 0.86), gap_after=(1,), separator="·"),),
        border=(230, 230, 230),
    ),
    PlateStyle(
        "cn_green_small",
        480 / 140,
        ((236, 248, 236), (70, 190, 100)),
        (_BLACK,),
        (TextRow((0.05, 0.16, 0.95, 0.86), gap_after=(1,), separator="·"),),
        gradient="vertical",
        border=(40, 40, 40),
    ),
    PlateStyle(
        "cn_green_large",
        480 / 140,
        ((235, 205, 40), (70, 180, 95)),
        (_BLACK,),
        (TextRow((0.05, 0.16, 0.95, 0.86), gap_after=(1,), separator="·"),),
        gradient="horizontal",
        border=(40, 40, 40),
    ),
    PlateStyle(
        "cn_yellow_two_row",
        440 / 220,
        ((245, 190, 25), (238, 178, 20)),
        (_BLACK,),
        (TextRow((0.25, 0.07, 0.75, 0.36), gap_after=(0,), separator="·"), TextRow((0.06, 0.42, 0.94, 0.93))),
        border=(30, 30, 30),
        condense=0.78,
    ),
    PlateStyle(
        "br_old",
        400 / 130,
        ((190, 192, 194), (175, 178, 180)),
        (_BLACK,),
        (TextRow((0.05, 0.28, 0.95, 0.92), gap_after=(2,), separator="-"),),
        border=(60, 60, 60),
        band=(0.2, None, _BR_CITIES),
        band_text_color=(40, 40, 40),
    ),
    PlateStyle(
        "br_mercosur",
        400 / 130,
        (_WHITE,),
        (_BLACK,),
        (TextRow((0.05, 0.3, 0.95, 0.93)),),
        border=(40, 40, 40),
        band=(0.22, (0, 51, 153), ("BRASIL",)),
    ),
    PlateStyle(
        "ar_old",
        294 / 129,
        (_BLACK, (30, 30, 34)),
        (_WHITE,),
        (TextRow((0.06, 0.3, 0.94, 0.9), gap_after=(2,)),),
        border=(200, 200, 200),
        band=(0.22, None, ("ARGENTINA",)),
        band_text_color=(220, 220, 220),
    ),
    PlateStyle(
        "ar_mercosur",
        400 / 130,
        (_WHITE,),
        (_BLACK,),
        (TextRow((0.05, 0.3, 0.95, 0.93), gap_after=(1, 4)),),
        border=(40, 40, 40),
        band=(0.22, (0, 51, 153), ("REPUBLICA ARGENTINA",)),
    ),
    PlateStyle(
        "eu_llnnnll",
        520 / 110,
        (_WHITE, (250, 250, 245)),
        (_BLACK,),
        (TextRow((0.12, 0.12, 0.97, 0.9), gap_after=(1, 4)),),
        border=(30, 30, 30),
        strip=(0.085, (0, 51, 153), _EU_CODES),
        condense=0.7,
    ),
    PlateStyle(
        "us_nlllnnn",
        305 / 152,
        (_WHITE, (235, 240, 250), (250, 245, 230)),
        ((20, 40, 120), (25, 25, 30), (150, 20, 30)),
        (TextRow((0.06, 0.3, 0.94, 0.85)),),
        border=(120, 120, 130),
        band=(0.24, None, _US_STATES),
        band_text_color=(170, 25, 35),
        condense=0.62,
    ),
    PlateStyle(
        "us_lllnnnn",
        305 / 152,
        (_WHITE, (245, 235, 200), (230, 240, 250)),
        ((20, 40, 120), (25, 25, 30)),
        (TextRow((0.06, 0.3, 0.94, 0.85), gap_after=(2,), separator="-"),),
        border=(120, 120, 130),
        band=(0.24, None, _US_STATES),
        band_text_color=(20, 40, 120),
        condense=0.6,
    ),
)

#: Layout name -> PlateStyle for every layout the generator can render. Read-only.
STYLES = MappingProxyType({style.layout: style for style in _STYLES})

#: Layouts rendered by default, by region.
DEFAULT_LAYOUTS = MappingProxyType(
    {
        "CN": ("cn_blue", "cn_green_small", "cn_green_large", "cn_yellow_two_row"),
        "BR": ("br_old", "br_mercosur"),
        "AR": ("ar_old", "ar_mercosur"),
        "EU": ("eu_llnnnll",),
        "US": ("us_nlllnnn", "us_lllnnnn"),
    }
)


__all__ = ["DEFAULT_LAYOUTS", "PlateStyle", "STYLES", "TextRow"]
