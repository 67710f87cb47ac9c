"""What each region's plates look like, position by position: the one table behind the synthetic generator, label
checks, pattern matching of readings and constrained decoding (`plate_constraints.py`).

A pattern is written as in OpenALPR's `runtime_data/postprocess/*.patterns`, one symbol per plate position:

    @        a letter A-Z
    #        a digit 0-9
    *        a letter or a digit
    [ABC]    one of the characters listed; `X-Y` inside the brackets is the range X..Y (`[A-HJ-NP-Z]`)
    space -  separators between character groups, ignored: plate texts are compared without them
    other    the character itself (a Chinese province character, a fixed letter)

`parse_plate_pattern("@@@#@##")` gives the allowed characters of each position (7 strings); a text fits a pattern
when it has as many characters, each among those allowed at its position.
"""

import string
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

from .tokenization_lpllm import CN_PROVINCES, CN_SPECIAL_SUFFIXES


LETTERS = string.ascii_uppercase
DIGITS = string.digits
ALNUM = LETTERS + DIGITS
# Ignored in patterns and in generated text: the spaces and dashes printed between groups of characters.
SEPARATORS = " -"
_SYMBOLS = {"@": LETTERS, "#": DIGITS, "*": ALNUM}


def parse_plate_pattern(pattern: str) -> tuple[str, ...]:
    """The allowed characters of each position of `pattern` (syntax in the module docstring), in the order written,
    without repeats. `"@@[DF]#"` -> `("A..Z", "A..Z", "DF", "0..9")`.

    Raises:
        ValueError: naming `pattern` and the problem: empty, an unclosed `[`, a `]` without `[`, an empty class, a
            reversed or dangling range, or a character that cannot be on a plate (whitespace other than the space,
            control characters).
    """
    if not isinstance(pattern, str):
        raise ValueError(f"A plate pattern must be a string such as '@@@####'; got {pattern!r}.")
    positions, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "[":
            end = pattern.find("]", index + 1)
            if end < 0:
                raise ValueError(f"Plate pattern {pattern!r}: the '[' at position {index} is never closed by ']'.")
            positions.append(_parse_class(pattern, index, end))
            index = end + 1
            continue
        if char == "]":
            raise ValueError(f"Plate pattern {pattern!r}: the ']' at position {index} closes no '['.")
        if char not in SEPARATORS:
            _check_plate_char(pattern, char)
            positions.append(_SYMBOLS.get(char, char))
        index += 1
    if not positions:
        raise ValueError(f"Plate pattern {pattern!r} has no character position; write one like '@@@####'.")
    return tuple(positions)


def _parse_class(pattern: str, start: int, end: int) -> str:
    """The characters of the class `pattern[start:end + 1]` (`[...]`), ranges expanded."""
    body, chars, index = pattern[start + 1 : end], [], 0
    where = f"Plate pattern {pattern!r}: the class {pattern[start : end + 1]!r} at position {start}"
    if not body:
        raise ValueError(f"{where} is empty; list at least one character.")
    while index < len(body):
        char = body[index]
        if char == "[":
            raise ValueError(f"{where} holds a '['; classes do not nest.")
        if char == "-":
            raise ValueError(f"{where} has a '-' that is not between two characters (X-Y is a range).")
        _check_plate_char(pattern, char)
        if index + 2 < len(body) and body[index + 1] == "-":
            last = body[index + 2]
            if last < char:
                raise ValueError(f"{where} has the reversed range {char}-{last}.")
            chars.extend(chr(code) for code in range(ord(char), ord(last) + 1))
            index += 3
        else:
            chars.append(char)
            index += 1
    return "".join(dict.fromkeys(chars))


def _check_plate_char(pattern: str, char: str):
    if char.isspace() or not char.isprintable():
        raise ValueError(f"Plate pattern {pattern!r} holds {char!r}, which is not a plate character.")


def strip_separators(text: str) -> str:
    """`text` without the `SEPARATORS` (spaces, dashes) printed between groups of characters."""
    return text.replace(" ", "").replace("-", "")


def fits_pattern(text: str, positions: Sequence[str]) -> bool:
    """Whether `text` (separators ignored) fits the pattern given by its `positions` (`parse_plate_pattern`)."""
    text = strip_separators(text)
    return len(text) == len(positions) and all(char in allowed for char, allowed in zip(text, positions))


class LayoutPattern(NamedTuple):
    """One way a region's plates are written.

    Args:
        region: Code of the region, e.g. `"CN"`.
        pattern: The layout in pattern syntax.
        positions: `parse_plate_pattern(pattern)`: the characters allowed at each position.
        rows: Characters per printed row, top to bottom (`(7,)` one row, `(2, 5)` two rows); labels read the rows
            top to bottom without separators.
        description: What the layout is, for people.
    """

    region: str
    pattern: str
    positions: tuple[str, ...]
    rows: tuple[int, ...]
    description: str


def _layout(region: str, pattern: str, description: str, rows: tuple[int, ...] | None = None) -> LayoutPattern:
    positions = parse_plate_pattern(pattern)
    return LayoutPattern(region, pattern, positions, rows or (len(positions),), description)


# Chinese plates never use I or O after the province character (they read as 1 and 0); new-energy plates mark the
# energy type with D (battery electric) or F (other new energy).
_CN_PROVINCE = f"[{CN_PROVINCES}]"
_CN_LETTER = "[A-HJ-NP-Z]"
_CN_ALNUM = "[A-HJ-NP-Z0-9]"
_CN_ENERGY = "[DF]"
CN_LETTERS = parse_plate_pattern(_CN_LETTER)[0]
CN_ALNUM = parse_plate_pattern(_CN_ALNUM)[0]

#: Layout name -> LayoutPattern, regions in the order CN, BR, AR, EU, US. Read-only.
PLATE_LAYOUTS = MappingProxyType(
    {
        "cn_blue": _layout("CN", _CN_PROVINCE + _CN_LETTER + _CN_ALNUM * 5, "blue, 7 characters"),
        "cn_green_small": _layout(
            "CN",
            _CN_PROVINCE + _CN_LETTER + _CN_ENERGY + _CN_ALNUM + "####",
            "green new-energy car, 8 characters, energy letter third",
        ),
        "cn_green_large": _layout(
            "CN",
            _CN_PROVINCE + _CN_LETTER + "#####" + _CN_ENERGY,
            "green-yellow new-energy truck/bus, 8 characters, energy letter last",
        ),
        "cn_yellow_two_row": _layout(
            "CN",
            _CN_PROVINCE + _CN_LETTER + _CN_ALNUM * 5,
            "yellow two-row large vehicle, province and letter on top",
            rows=(2, 5),
        ),
        "cn_special": _layout(
            "CN",
            _CN_PROVINCE + _CN_LETTER + _CN_ALNUM * 4 + f"[{CN_SPECIAL_SUFFIXES}]",
            "coach/police/trailer/HK-Macau plates ending with a special character",
        ),
        "br_old": _layout("BR", "@@@####", "grey plate before Mercosur, LLLNNNN"),
        "br_mercosur": _layout("BR", "@@@#@##", "Mercosur, LLLNLNN"),
        "ar_old": _layout("AR", "@@@###", "black plate 1995-2016, LLLNNN"),
        "ar_mercosur": _layout("AR", "@@###@@", "Mercosur, LLNNNLL"),
        "eu_llnnnll": _layout("EU", "@@###@@", "EU strip, LL NNN LL"),
        "us_nlllnnn": _layout("US", "#@@@###", "NLLLNNN (e.g. California)"),
        "us_lllnnnn": _layout("US", "@@@####", "LLLNNNN (e.g. New York)"),
    }
)

#: Region code -> the position tuples of its layouts (layouts written alike counted once), in table order. Read-only.
REGION_PATTERNS = MappingProxyType(
    {
        code: tuple(dict.fromkeys(layout.positions for layout in PLATE_LAYOUTS.values() if layout.region == code))
        for code in dict.fromkeys(layout.region for layout in PLATE_LAYOUTS.values())
    }
)


def all_region_patterns(extra: Mapping[str, Sequence[str]] | None = None) -> Mapping[str, tuple[tuple[str, ...], ...]]:
    """`REGION_PATTERNS` with the regions of `extra` added: region code -> position tuples, codes upper-cased.

    Args:
        extra: region code -> pattern strings, e.g. `{"UZ": ["##@###@@", "##[A-Z]###@@"]}` for a region the table
            lacks. A code of the table given here is replaced by these patterns.

    Raises:
        ValueError: naming the region and the pattern when an entry of `extra` is not a non-empty list of valid
            patterns.
    """
    if extra is not None and not isinstance(extra, Mapping):
        raise ValueError(f"`extra` must map region codes to lists of plate patterns; got {extra!r}.")
    table = dict(REGION_PATTERNS)
    for code, patterns in (extra or {}).items():
        if not isinstance(code, str) or not code.strip():
            raise ValueError(f"Plate pattern regions must be non-blank codes such as 'UZ'; got {code!r}.")
        if isinstance(patterns, str) or not isinstance(patterns, Sequence) or not patterns:
            raise ValueError(
                f"Plate patterns of region {code!r} must be a non-empty list of pattern strings; got {patterns!r}."
            )
        try:
            table[code.strip().upper()] = tuple(dict.fromkeys(parse_plate_pattern(pattern) for pattern in patterns))
        except ValueError as error:
            raise ValueError(f"Region {code!r}: {error}") from None
    return MappingProxyType(table)


def resolve_patterns(region: str, extra: Mapping[str, Sequence[str]] | None = None) -> tuple[tuple[str, ...], ...]:
    """The position tuples of `region` (a code, any case) in `all_region_patterns(extra)`.

    Raises:
        ValueError: for a bad `extra`, or a region with no patterns, listing the known codes.
    """
    table = all_region_patterns(extra)
    code = region.strip().upper() if isinstance(region, str) else None
    if code not in table:
        raise ValueError(
            f"No plate patterns for region {region!r}; known regions: {', '.join(table)}. Give patterns for "
            "another region with `extra`, e.g. {'UZ': ['##@###@@']}."
        )
    return table[code]


def matching_regions(text: str, patterns_by_region: Mapping[str, Sequence[Sequence[str]]] | None = None) -> list[str]:
    """The codes of the regions with a pattern that `text` (upper case; separators ignored) fits, in table order.

    Args:
        patterns_by_region: region code -> position tuples; None for `REGION_PATTERNS`.
    """
    table = REGION_PATTERNS if patterns_by_region is None else patterns_by_region
    return [code for code, patterns in table.items() if any(fits_pattern(text, positions) for positions in patterns)]


__all__ = [
    "ALNUM",
    "CN_ALNUM",
    "CN_LETTERS",
    "DIGITS",
    "LETTERS",
    "LayoutPattern",
    "PLATE_LAYOUTS",
    "REGION_PATTERNS",
    "SEPARATORS",
    "all_region_patterns",
    "fits_pattern",
    "matching_regions",
    "parse_plate_pattern",
    "resolve_patterns",
    "strip_separators",
]
