"""`rodosol`: the RodoSol-ALPR layout: `images/<subset>/img_000001.jpg` with `img_000001.txt` beside it, and
`split.txt` at the top.

Each annotation file holds `key: value` lines; the ones used are

    type: car
    layout: Brazilian
    plate: ABC1234
    corners: 655,1015 824,1014 823,1087 654,1088

(`plate` may contain a dash; the corners may start at any corner, they are ordered geometrically). `split.txt`
lines are `path;split` with split `training`, `validation` or `testing`; images it does not list, or all of them
without a `split.txt`, get a split drawn from the seed.
"""

from pathlib import Path

from .images import image_files
from .labels import checked_label
from .listing import skip_hidden
from .pipeline import BuildOptions, BuildResult, Task, run_build
from .reports import InputProblem, SkipLog
from .scenes import scene_crop_sample
from .schema import Sample
from .splits import split_alias

SOURCE = "rodosol"
SPLIT_FILE = "split.txt"


def parse_rodosol_annotation(content: str) -> dict:
    """The `key: value` pairs of a RodoSol annotation (keys lower-cased), with `corners` parsed into four
    (x, y) points.

    Raises:
        ValueError: naming the missing or malformed field.
    """
    fields = {}
    for line in content.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
    if not fields.get("plate"):
        raise ValueError("no 'plate:' line")
    if "corners" not in fields:
        raise ValueError("no 'corners:' line")
    try:
        corners = [tuple(int(float(value)) for value in point.split(",")) for point in fields["corners"].split()]
    except ValueError:
        raise ValueError(f"corners {fields['corners']!r} are not 'x,y x,y x,y x,y'") from None
    if len(corners) != 4 or any(len(point) != 2 for point in corners):
        raise ValueError(f"corners {fields['corners']!r} are not four x,y points")
    fields["corners"] = corners
    return fields


def _read_split_file(root: Path) -> dict[str, str]:
    path = root / SPLIT_FILE
    if not path.is_file():
        return {}
    assigned = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if ";" not in line:
            continue
        image, split = line.rsplit(";", 1)
        if split_alias(split):
            assigned[Path(image.strip()).as_posix().removeprefix("./")] = split_alias(split)
    return assigned


def list_rodosol_tasks(input_dir: Path, skip_log: SkipLog) -> list[Task]:
    """One task per annotated RodoSol image; unannotated or badly annotated ones go to `skip_log`.

    Raises:
        FileNotFoundError: `input_dir` is not a folder.
    """
    input_dir = Path(input_dir)
    paths = skip_hidden(image_files(input_dir, "RodoSol input"), input_dir, skip_log)
    splits = _read_split_file(input_dir)
    tasks = []
    for path in paths:
        name = path.relative_to(input_dir).as_posix()
        annotation_path = path.with_suffix(".txt")
        if not annotation_path.is_file():
            skip_log.add(
                InputProblem(name, "missing_annotation", f"no annotation file {annotation_path.name} beside the image")
            )
            continue
        try:
            fields = parse_rodosol_annotation(annotation_path.read_text(encoding="utf-8", errors="replace"))
        except ValueError as error:
            skip_log.add(
                InputProblem(
                    annotation_path.relative_to(input_dir).as_posix(),
                    "malformed_annotation",
                    f"{error}; expected 'plate: ABC1234' and 'corners: x,y x,y x,y x,y' lines",
                )
            )
            continue
        try:
            text, region = checked_label(fields["plate"], "BR", name)
        except InputProblem as problem:
            skip_log.add(problem)
            continue
        subset = (
            "-".join(value.lower() for value in (fields.get("type"), fields.get("layout")) if value)
            or path.parent.name
        )
        tasks.append(
            Task(
                id=name,
                name=name,
                group=text,
                split=splits.get(name),
                payload=(str(path), text, fields["corners"], subset),
            )
        )
    return tasks


def process_rodosol(task: Task) -> Sample:
    """Loads a RodoSol image and cuts the plate out by its corners."""
    return scene_crop_sample(task, region="BR", source=SOURCE)


def build_rodosol(input_dir: str | Path, output_dir: str | Path, options: BuildOptions | None = None) -> BuildResult:
    """Converts a RodoSol-ALPR folder into a dataset of upright plate crops at `output_dir` (the dataset's own
    training/validation/testing split is kept)."""
    options = options or BuildOptions()
    skip_log = SkipLog(strict=options.strict)
    tasks = list_rodosol_tasks(Path(input_dir), skip_log)
    return run_build(SOURCE, tasks, process_rodosol, output_dir, options, skip_log, inputs=[Path(input_dir)])


__all__ = ["build_rodosol", "list_rodosol_tasks", "parse_rodosol_annotation", "process_rodosol"]
