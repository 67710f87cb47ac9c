"""`ccpd`: CCPD 2019/2020 scene images, whose file names carry the plate text and its four corners.

A CCPD file name has seven `-`-separated fields, e.g.
`025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg`:
area ratio, tilt, bounding box, the four corners (from the bottom-right corner, clockwise: bottom-right,
bottom-left, top-left, top-right), the character indices (province table, alphabet table, then the "ads" table
for every further character: 7 characters on CCPD 2019 blue plates, 8 on CCPD 2020 green ones), brightness and
blurriness. The plate is cut out by its corners with a perspective warp, so it comes out upright and rectangular.

Splits: files under a `train`/`val`/`test` folder (CCPD 2020) or listed in `splits/{train,val,test}.txt`
(CCPD 2019) keep that split; CCPD 2019's per-subset test lists (`splits/ccpd_blur.txt`, ...) mean test. The rest is
drawn from the seed, grouped by plate text so that photos of one plate never straddle splits.
"""

from dataclasses import dataclass
from pathlib import Path

from modeling_lpllm.tokenization_lpllm import CN_PROVINCES

from .images import image_files
from .labels import checked_label
from .listing import skip_hidden
from .pipeline import BuildOptions, BuildResult, Task, run_build
from .reports import InputProblem, SkipLog
from .scenes import scene_crop_sample
from .schema import Sample
from .splits import split_alias

SOURCE = "ccpd"

# CCPD's index tables. The last entry of each, "O", means "no character" (CCPD never uses the letter O).
CCPD_PROVINCES = tuple(CN_PROVINCES) + ("警", "学", "O")
CCPD_ALPHABETS = tuple("ABCDEFGHJKLMNPQRSTUVWXYZ") + ("O",)
CCPD_ADS = tuple("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") + ("O",)
_NO_CHARACTER = "O"
_EXAMPLE_NAME = "025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg"


@dataclass(frozen=True)
class CCPDAnnotation:
    """What a CCPD file name says. `corners` are (x, y) in CCPD's order: bottom-right, bottom-left, top-left,
    top-right."""

    text: str
    corners: tuple[tuple[int, int], ...]
    bbox: tuple[tuple[int, int], tuple[int, int]]
    brightness: int
    blurriness: int


def _point(text: str) -> tuple[int, int]:
    x, y = text.split("&")
    return int(x), int(y)


def parse_ccpd_name(stem: str) -> CCPDAnnotation:
    """Decodes a CCPD file name (without extension).

    Raises:
        ValueError: naming the field that does not follow the CCPD format.
    """
    fields = stem.split("-")
    if len(fields) != 7:
        raise ValueError(
            f"expected 7 '-'-separated fields (area-tilt-bbox-corners-indices-brightness-blur), found {len(fields)}"
        )
    try:
        bbox_points = [_point(point) for point in fields[2].split("_")]
    except ValueError:
        raise ValueError(f"bounding box field {fields[2]!r} is not 'x1&y1_x2&y2'") from None
    try:
        corners = [_point(point) for point in fields[3].split("_")]
    except ValueError:
        raise ValueError(f"corners field {fields[3]!r} is not four 'x&y' points joined by '_'") from None
    if len(bbox_points) != 2 or len(corners) != 4:
        raise ValueError(f"expected 2 bounding-box points and 4 corners, found {len(bbox_points)} and {len(corners)}")
    try:
        indices = [int(index) for index in fields[4].split("_")]
    except ValueError:
        raise ValueError(f"character index field {fields[4]!r} is not integers joined by '_'") from None
    if len(indices) not in (7, 8):
        raise ValueError(f"expected 7 or 8 character indices, found {len(indices)}")
    tables = [CCPD_PROVINCES, CCPD_ALPHABETS] + [CCPD_ADS] * (len(indices) - 2)
    characters = []
    for position, (index, table) in enumerate(zip(indices, tables)):
        if not 0 <= index < len(table):
            raise ValueError(
                f"character index {index} at position {position} is outside its table (0-{len(table) - 1})"
            )
        if table[index] == _NO_CHARACTER:
            raise ValueError(f"character {position} is CCPD's 'no character' placeholder (index {index})")
        characters.append(table[index])
    try:
        brightness, blurriness = int(fields[5]), int(fields[6])
    except ValueError:
        raise ValueError(f"brightness/blurriness fields {fields[5]!r}, {fields[6]!r} are not integers") from None
    return CCPDAnnotation("".join(characters), tuple(corners), tuple(bbox_points), brightness, blurriness)


def encode_ccpd_name(
    text: str, corners, bbox=None, area: str = "025", tilt: str = "90_90", brightness: int = 100, blurriness: int = 0
) -> str:
    """The CCPD file name (without extension) of a plate `text` with `corners` (bottom-right, bottom-left,
    top-left, top-right); the inverse of `parse_ccpd_name`. For tests and for exporting synthetic scenes."""
    tables = [CCPD_PROVINCES, CCPD_ALPHABETS] + [CCPD_ADS] * (len(text) - 2)
    indices = "_".join(str(table.index(char)) for char, table in zip(text, tables))
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    bbox = bbox or ((min(xs), min(ys)), (max(xs), max(ys)))
    fields = [
        area,
        tilt,
        "_".join(f"{x}&{y}" for x, y in bbox),
        "_".join(f"{x}&{y}" for x, y in corners),
        indices,
        str(brightness),
        str(blurriness),
    ]
    return "-".join(fields)


def _read_split_lists(root: Path) -> dict[str, str]:
    """CCPD 2019's `splits/*.txt`: relative image path -> split."""
    assigned = {}
    splits_dir = root / "splits"
    if not splits_dir.is_dir():
        return assigned
    for list_file in sorted(splits_dir.glob("*.txt")):
        split = split_alias(list_file.stem) or "test"  # ccpd_blur.txt etc. are test sets
        for line in list_file.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                assigned.setdefault(Path(line.strip()).as_posix().removeprefix("./"), split)
    return assigned


def _subset_and_split(relative: Path) -> tuple[str, str | None]:
    parts = relative.parts[:-1]
    split = next((split_alias(part) for part in reversed(parts) if split_alias(part)), None)
    subset = next((part for part in parts if part.lower().startswith("ccpd")), parts[0] if parts else "")
    return subset, split


def list_ccpd_tasks(input_dir: Path, skip_log: SkipLog) -> list[Task]:
    """One task per CCPD image whose name parses; the others go to `skip_log`.

    Raises:
        FileNotFoundError: `input_dir` is not a folder.
    """
    input_dir = Path(input_dir)
    paths = skip_hidden(image_files(input_dir, "CCPD input"), input_dir, skip_log)
    split_lists = _read_split_lists(input_dir)
    tasks = []
    for path in paths:
        relative = path.relative_to(input_dir)
        name = relative.as_posix()
        try:
            annotation = parse_ccpd_name(path.stem)
        except ValueError as error:
            skip_log.add(
                InputProblem(
                    name,
                    "malformed_ccpd_name",
                    f"{error}; expected a CCPD file name like {_EXAMPLE_NAME}",
                )
            )
            continue
        try:
            text, region = checked_label(annotation.text, "CN", name)
        except InputProblem as problem:
            skip_log.add(problem)
            continue
        subset, folder_split = _subset_and_split(relative)
        split = folder_split or split_lists.get(name)
        tasks.append(
            Task(id=name, name=name, group=text, split=split, payload=(str(path), text, annotation.corners, subset))
        )
    return tasks


def process_ccpd(task: Task) -> Sample:
    """Loads a CCPD scene and cuts the plate out by its corners."""
    return scene_crop_sample(task, region="CN", source=SOURCE)


def build_ccpd(input_dir: str | Path, output_dir: str | Path, options: BuildOptions | None = None) -> BuildResult:
    """Converts a CCPD 2019/2020 folder (any of its subsets: ccpd_base, ccpd_blur, ccpd_challenge, ccpd_green,
    ...) into a dataset of upright plate crops at `output_dir`."""
    options = options or BuildOptions()
    skip_log = SkipLog(strict=options.strict)
    tasks = list_ccpd_tasks(Path(input_dir), skip_log)
    return run_build(SOURCE, tasks, process_ccpd, output_dir, options, skip_log, inputs=[Path(input_dir)])


__all__ = ["CCPDAnnotation", "build_ccpd", "encode_ccpd_name", "list_ccpd_tasks", "parse_ccpd_name", "process_ccpd"]
