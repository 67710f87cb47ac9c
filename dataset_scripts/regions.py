"""What a plate of each region may say: its charset, its length range and its layouts, position by position.

The layouts are built from `modeling_lpllm.plate_patterns.PLATE_LAYOUTS`, the one table of plate patterns that
constrained decoding and pattern matching of readings also use. The synthetic generator draws plate texts from these
layouts and the dataset builders validate labels against the region charsets. Chinese province characters come
from `modeling_lpllm.tokenization_lpllm` so that the tokenizer and the data agree on one table, and every region
charset is a subset of `DEFAULT_PLATE_CHARSET` (the tokenizer's charset). Labels of a region not in this table (or
of none) may hold letters and digits of any script: training adds the characters the tokenizer lacks.
"""

import re
import unicodedata
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from modeling_lpllm.plate_patterns import ALNUM, CN_ALNUM, CN_LETTERS, DIGITS, LETTERS, PLATE_LAYOUTS
from modeling_lpllm.tokenization_lpllm import CN_PROVINCES, CN_SPECIAL_SUFFIXES

# Characters a label may contain as decoration, dropped by `normalize_plate_text`: spaces, the dashes and dots
# printed between character groups, and the middle dot of Chinese plates.
_SEPARATORS = re.compile(r"[\s\-_.·•・]+")


@dataclass(frozen=True)
class PlateLayout:
    """One way a plate of a region is written: the allowed characters at each position.

    Args:
        name: Unique layout name, e.g. `"cn_blue"`.
        region: Code of the region this layout belongs to, e.g. `"CN"`.
        positions: For each character position, the string of characters allowed there.
        rows: Characters per printed row (`(7,)` for a one-row plate, `(2, 5)` for a two-row one); the label always
            reads the rows top to bottom, left to right, without separators.
        description: What the layout is, for people.
    """

    name: str
    region: str
    positions: tuple[str, ...]
    rows: tuple[int, ...]
    description: str = ""

    def __post_init__(self):
        if sum(self.rows) != len(self.positions):
            raise ValueError(
                f"Layout {self.name!r}: rows {self.rows} do not add up to {len(self.positions)} positions."
            )

    @property
    def length(self) -> int:
        return len(self.positions)

    def matches(self, text: str) -> bool:
        """Whether `text` (already normalised) fits this layout position by position."""
        return len(text) == self.length and all(char in allowed for char, allowed in zip(text, self.positions))

    def sample(self, rng: np.random.Generator) -> str:
        """A random plate text of this layout, one uniform draw per position from `rng`."""
        return "".join(allowed[rng.integers(len(allowed))] for allowed in self.positions)

    def split_rows(self, text: str) -> list[str]:
        """`text` cut into its printed rows; the last row takes whatever is left, so a one-row layout prints a text
        of any length whole."""
        rows, start = [], 0
        for count in self.rows[:-1]:
            rows.append(text[start : start + count])
            start += count
        rows.append(text[start:])
        return rows


def is_letter_or_digit(char: str) -> bool:
    """Whether `char` is a letter, a combining mark (the vowel signs of Thai or Devanagari, Arabic diacritics) or a
    decimal digit, of any script: what a plate of a region without a charset of its own may hold."""
    category = unicodedata.category(char)
    return category[0] in "LM" or category == "Nd"


@dataclass(frozen=True)
class Region:
    """A plate region: every character its plates may hold, their length range and their known layouts.

    Labels are validated against `charset` and the length range only, not against the layouts: real data holds
    vanity, diplomatic and old plates that no layout list covers, and they are still correct labels. A `charset`
    of None accepts letters and digits of any script (`is_letter_or_digit`).
    """

    code: str
    name: str
    charset: str | None
    min_length: int
    max_length: int
    layouts: tuple[PlateLayout, ...] = ()

    def allows(self, char: str) -> bool:
        """Whether a plate of this region may hold `char`."""
        return is_letter_or_digit(char) if self.charset is None else char in self.charset

    def validate(self, text: str) -> str | None:
        """Returns what is wrong with the normalised label `text` for this region, or None if it is acceptable."""
        if not text:
            return "label is empty"
        outside = sorted({char for char in text if not self.allows(char)})
        if outside:
            return (
                f"label {text!r} has character(s) {''.join(outside)!r} outside the {self.code} charset "
                f"({self.name}: {_describe_charset(self.charset)})"
            )
        if not self.min_length <= len(text) <= self.max_length:
            return (
                f"label {text!r} has {len(text)} characters; {self.code} plates have "
                f"{self.min_length} to {self.max_length}"
            )
        return None

    def layout_of(self, text: str) -> PlateLayout | None:
        """The first layout of this region that `text` fits, or None."""
        return next((layout for layout in self.layouts if layout.matches(text)), None)


def _describe_charset(charset: str | None) -> str:
    if charset is None:
        return "letters and digits of any script"
    parts = []
    if set(DIGITS) <= set(charset):
        parts.append("0-9")
    letters = "".join(char for char in LETTERS if char in charset)
    if letters == LETTERS:
        parts.append("A-Z")
    elif letters:
        missing = "".join(char for char in LETTERS if char not in charset)
        parts.append(f"A-Z without {missing}")
    others = "".join(char for char in charset if char not in ALNUM)
    if others:
        parts.append(others)
    return ", ".join(parts)


#: Layout name -> PlateLayout, over all regions, built from `modeling_lpllm.plate_patterns.PLATE_LAYOUTS`. Read-only.
LAYOUTS = MappingProxyType(
    {
        name: PlateLayout(name, spec.region, spec.positions, spec.rows, spec.description)
        for name, spec in PLATE_LAYOUTS.items()
    }
)


def _layouts_of(code: str) -> tuple[PlateLayout, ...]:
    return tuple(layout for layout in LAYOUTS.values() if layout.region == code)


_REGIONS = (
    Region("CN", "China", CN_PROVINCES + CN_ALNUM + CN_SPECIAL_SUFFIXES, 7, 8, _layouts_of("CN")),
    Region("BR", "Brazil", ALNUM, 7, 7, _layouts_of("BR")),
    Region("AR", "Argentina", ALNUM, 6, 7, _layouts_of("AR")),
    # EU and US labels vary by country/state and include vanity plates: any 1-10 letters and digits.
    Region("EU", "European Union", ALNUM, 1, 10, _layouts_of("EU")),
    Region("US", "United States", ALNUM, 1, 8, _layouts_of("US")),
)

#: Region code -> Region. Read-only.
REGIONS = MappingProxyType({region.code: region for region in _REGIONS})

#: The region of labels whose region is unknown or not in the table: letters and digits of any script (a new
#: region's alphabet; training grows the tokenizer to it), 1-12 characters.
GENERIC_REGION = Region("XX", "unspecified", None, 1, 12)

# Region names seen in the wild (fast-plate-ocr's `plate_region`, folder names) -> region code.
_REGION_ALIASES = MappingProxyType(
    {
        "china": "CN",
        "cn": "CN",
        "chinese": "CN",
        "brazil": "BR",
        "brasil": "BR",
        "br": "BR",
        "argentina": "AR",
        "ar": "AR",
        "europe": "EU",
        "eu": "EU",
        "european union": "EU",
        "usa": "US",
        "us": "US",
        "united states": "US",
        "united states of america": "US",
    }
)


def normalize_plate_text(text: str) -> str:
    """The canonical form of a plate label: Unicode NFKC (full-width letters become ASCII, Arabic presentation
    forms their letters), upper case, and no spaces, dashes, dots or underscores. `" 皖a-12345 "` -> `"皖A12345"`.

    Letters and digits of every script are kept as written (Eastern Arabic digits stay Eastern Arabic digits: NFKC
    does not map them) and in the order given, never reordered: the convention is the order seen on the plate, left
    to right (top row first), right-to-left scripts included (dataset_scripts/README.md). Letters are upper-cased
    one by one where that gives one letter (Latin, Cyrillic, Greek); scripts without case are unchanged.
    """
    text = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    return "".join(upper if len(upper := char.upper()) == 1 else char for char in text)


def resolve_region_code(name: str | None) -> str | None:
    """Maps a region name or code (`"Brazil"`, `"br"`, `"CN"`) to a region code; None or empty -> None. A name
    that is neither a known code nor a known alias is returned upper-cased, so it stays visible in the data."""
    if name is None or not name.strip():
        return None
    key = name.strip().lower()
    if key.upper() in REGIONS:
        return key.upper()
    return _REGION_ALIASES.get(key, name.strip().upper())


def get_region(code: str | None) -> Region:
    """The Region for `code` (a code or a known alias); the generic region for None or an unknown code."""
    resolved = resolve_region_code(code)
    return REGIONS.get(resolved, GENERIC_REGION) if resolved else GENERIC_REGION


def infer_region_code(text: str) -> str | None:
    """A region code when the label itself says it (a Chinese province character first), else None."""
    return "CN" if text and text[0] in CN_PROVINCES else None


__all__ = [
    "CN_ALNUM",
    "CN_LETTERS",
    "CN_PROVINCES",
    "GENERIC_REGION",
    "LAYOUTS",
    "PlateLayout",
    "REGIONS",
    "Region",
    "get_region",
    "infer_region_code",
    "is_letter_or_digit",
    "normalize_plate_text",
    "resolve_region_code",
]
