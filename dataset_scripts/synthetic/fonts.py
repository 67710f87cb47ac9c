"""Finding the fonts plates are rendered with, installed reproducibly from package registries.

- Latin letters and digits: DejaVu Sans Bold, which matplotlib (a project dependency) ships in `mpl-data`, so it is
  there after `pip install`; Debian's `fonts-dejavu-core` is the fallback.
- Chinese province characters: WenQuanYi Micro Hei from Debian's `fonts-wqy-microhei` (1.6 MB download,
  Apache-2.0), installed by `dataset_scripts/install_fonts.sh`; Noto Sans CJK (`fonts-noto-cjk`) or the PyPI
  package `pylopdf-fonts-zh-cn` (Noto Sans SC, OFL) are used if present instead.

`LPLLM_LATIN_FONT` / `LPLLM_CJK_FONT` name a font file to use instead. A missing font is an error that names the
font and the command that installs it.
"""

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from fontTools.ttLib import TTFont

from modeling_lpllm.tokenization_lpllm import CN_PROVINCES, CN_SPECIAL_SUFFIXES

from ..regions import ALNUM

INSTALL_HINT = (
    "run `bash dataset_scripts/install_fonts.sh` (Debian/Ubuntu: apt-get install -y fonts-wqy-microhei "
    "fonts-dejavu-core), or `pip install pylopdf-fonts-zh-cn`, "
    "or point LPLLM_CJK_FONT / LPLLM_LATIN_FONT at a font file"
)

SYSTEM_LATIN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
)
SYSTEM_CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
)
CJK_CHARACTERS = CN_PROVINCES + CN_SPECIAL_SUFFIXES


class FontNotFoundError(RuntimeError):
    """No installed font can render the characters a build needs."""


@dataclass(frozen=True)
class FontSet:
    """Font files for plate text: `latin` for letters and digits, `cjk` for Chinese characters (None when the
    build renders no Chinese plate)."""

    latin: str
    cjk: str | None = None


def _package_file(package: str, *parts: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations)), *parts))


def latin_candidates() -> list[str]:
    candidates = [os.environ.get("LPLLM_LATIN_FONT")]
    candidates.append(_package_file("matplotlib", "mpl-data", "fonts", "ttf", "DejaVuSans-Bold.ttf"))
    candidates.extend(SYSTEM_LATIN_FONTS)
    return [candidate for candidate in candidates if candidate]


def cjk_candidates() -> list[str]:
    candidates = [os.environ.get("LPLLM_CJK_FONT")]
    candidates.extend(SYSTEM_CJK_FONTS)
    candidates.append(_package_file("pylopdf_fonts_zh_cn", "NotoSansSC-Regular.otf"))
    return [candidate for candidate in candidates if candidate]


def missing_characters(path: str, characters: str) -> str:
    """The characters of `characters` that the font at `path` has no glyph for (all of them if it cannot be read)."""
    try:
        font = TTFont(path, fontNumber=0, lazy=True)
        cmap = font.getBestCmap() or {}
        font.close()
    except Exception:  # noqa: BLE001 - an unreadable font covers nothing
        return characters
    return "".join(char for char in characters if ord(char) not in cmap)


def _first_covering(candidates: list[str], characters: str) -> str | None:
    for candidate in candidates:
        if Path(candidate).is_file() and not missing_characters(candidate, characters):
            return candidate
    return None


def find_fonts(need_cjk: bool = True) -> FontSet:
    """The fonts to render plates with.

    Args:
        need_cjk: Whether Chinese plates will be rendered (then a font with the 31 province characters and the
            special suffixes is required).

    Raises:
        FontNotFoundError: naming the missing font and how to install it.
    """
    latin = _first_covering(latin_candidates(), ALNUM)
    if latin is None:
        raise FontNotFoundError(
            f"No Latin plate font found (DejaVu Sans Bold; looked at {latin_candidates()}): {INSTALL_HINT}."
        )
    cjk = None
    if need_cjk:
        cjk = _first_covering(cjk_candidates(), CJK_CHARACTERS)
        if cjk is None:
            raise FontNotFoundError(
                "No CJK font with the Chinese province characters found (WenQuanYi Micro Hei or Noto Sans CJK; "
                f"looked at {cjk_candidates()}). Chinese plates cannot be rendered: {INSTALL_HINT}; "
                "or render other regions only (--regions BR AR EU US)."
            )
    return FontSet(latin=latin, cjk=cjk)


__all__ = ["FontNotFoundError", "FontSet", "find_fonts", "missing_characters"]
