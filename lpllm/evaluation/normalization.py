"""Label normalisation applied to references and predictions alike before any metric is computed.

Plates are written in many ways that denote the same registration ("ab-123 cd", "AB123CD"), and some regions
never use certain letters, so a reader that outputs one for the other has read the plate right. Every rule below is
explicit, configurable, and recorded in `results.json` so that two reports can be checked for comparability.
"""

from dataclasses import asdict, dataclass, field


# Characters that separate groups on a plate but are not part of the registration.
DEFAULT_SEPARATORS = " -_.·•:/|\t"

# Region conventions: `{region: {seen: meant}}`. US plates use the digit 0 for the letter O (the openalpr_us labels
# follow this), so a reader that says "O" has read the plate right. Other regions are left as they are by default.
DEFAULT_REGION_MAPS = {"US": {"O": "0"}}


@dataclass
class PlateNormalizer:
    """Normalises a plate string: optional upper-casing, separator removal, then the region's character map.

    Args:
        uppercase: compare case-insensitively (plates have no lower case; readers sometimes emit it).
        separators: characters removed wherever they occur (spaces, dashes, dots...).
        letters_and_digits_only: also remove every character that is neither a letter nor a digit, in any script:
            plates print emblems, seals and hyphens between character groups that readers emit as `=`, `*` or `'`,
            and none of them is part of a registration.
        region_maps: `{region: {character: replacement}}`, applied to every string of a sample of that region.
            Region keys are matched case-insensitively.

    Example:

    ```python
    >>> PlateNormalizer()("ab-12 o3", region="US")
    'AB1203'
    ```
    """

    uppercase: bool = True
    separators: str = DEFAULT_SEPARATORS
    letters_and_digits_only: bool = True
    region_maps: dict[str, dict[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_REGION_MAPS.items()}
    )

    def __post_init__(self):
        for region, mapping in self.region_maps.items():
            for source, target in mapping.items():
                if len(source) != 1 or len(target) > 1:
                    raise ValueError(
                        f"Region map {region!r} maps {source!r} to {target!r}; each rule must map one character to"
                        " one character (or to '' to drop it)."
                    )
        # str.translate tables, built once per normaliser rather than per string.
        self._drop = {ord(char): None for char in self.separators}
        self._tables = {
            region.upper(): {ord(source): (target or None) for source, target in mapping.items()}
            for region, mapping in self.region_maps.items()
        }

    def __call__(self, text: str | None, region: str | None = None) -> str:
        text = "" if text is None else str(text).strip()
        if self.uppercase:
            text = text.upper()
        text = text.translate(self._drop)
        if self.letters_and_digits_only:
            text = "".join(char for char in text if char.isalnum())
        table = self._tables.get((region or "").upper())
        return text.translate(table) if table else text

    def to_dict(self) -> dict:
        """The settings, for `results.json`."""
        return asdict(self)


def parse_region_maps(specs: list[str] | None, use_defaults: bool = True) -> dict[str, dict[str, str]]:
    """Parses command-line region rules such as `["US:O=0", "CN:O=0,I=1"]` on top of (or instead of) the defaults.

    Raises:
        ValueError: naming the malformed rule.
    """
    maps = {region: dict(mapping) for region, mapping in DEFAULT_REGION_MAPS.items()} if use_defaults else {}
    for spec in specs or []:
        region, sep, rules = spec.partition(":")
        if not sep or not region.strip():
            raise ValueError(f"Region rule {spec!r} must look like 'REGION:A=B[,C=D]', e.g. 'US:O=0'.")
        mapping = maps.setdefault(region.strip().upper(), {})
        for rule in filter(None, (part.strip() for part in rules.split(","))):
            source, eq, target = rule.partition("=")
            if not eq or len(source) != 1 or len(target) > 1:
                raise ValueError(
                    f"Region rule {spec!r}: {rule!r} must map one character to one character, e.g. 'O=0'."
                )
            mapping[source] = target
    return maps


__all__ = ["PlateNormalizer", "parse_region_maps", "DEFAULT_REGION_MAPS", "DEFAULT_SEPARATORS"]
