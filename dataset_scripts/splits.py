"""Deterministic train/validation/test assignment.

Each item's split depends only on the seed and the item's group key (not on the other items), so adding,
removing or skipping inputs never moves the rest between splits, and the same seed always gives the same
splits. Items that share a group key (frames of one MDLP group, photos of one CCPD plate) land in the same split,
which keeps near-duplicates out of the test set.
"""

import hashlib
import math

SPLITS = ("train", "validation", "test")
DEFAULT_RATIOS = (0.9, 0.05, 0.05)

# Split names found in dataset folders and split files -> our split names.
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "trainval": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


def parse_ratios(text: str | tuple | list) -> tuple[float, float, float]:
    """`"0.9,0.05,0.05"` (or a 3-sequence) -> train/validation/test fractions that add up to 1.

    Raises:
        ValueError: unless there are three finite non-negative numbers with a positive sum.
    """
    values = [float(value) for value in (text.split(",") if isinstance(text, str) else text)]
    # NaN passes every comparison, and an infinity divides the others to 0 and itself to NaN: either would send
    # every item to one split without a word.
    if len(values) != 3 or not all(math.isfinite(value) and value >= 0 for value in values) or sum(values) <= 0:
        raise ValueError(
            f"Split ratios must be three finite non-negative numbers train,validation,test, not all 0; got {text!r}."
        )
    total = sum(values)
    return tuple(value / total for value in values)


def split_alias(name: str) -> str | None:
    """Our split name for a folder or split-file name like `training`, `val`, `test`; None if it is not one."""
    return _SPLIT_ALIASES.get(name.strip().lower())


def assign_split(group: str, seed: int, ratios=DEFAULT_RATIOS) -> str:
    """The split of the item with group key `group` under `seed`: a hash of both mapped to [0, 1).

    Sources group by the normalised plate text, so that every crop of one plate (`ABC0001.png`, `ABC0001_2.png`)
    lands in one split: a plate seen in training must not be read again as a test sample."""
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < ratios[0]:
        return "train"
    if position < ratios[0] + ratios[1]:
        return "validation"
    return "test"


__all__ = ["DEFAULT_RATIOS", "SPLITS", "assign_split", "parse_ratios", "split_alias"]
