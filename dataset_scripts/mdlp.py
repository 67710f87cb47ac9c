"""`mdlp`: LP-Diff's MDLP layout: groups of consecutive degraded frames of one plate plus one clear frame.

    ROOT/[train|val|test/]inputs/<group>/<frames>.jpg   degraded frames, ordered by the last number in the name
    ROOT/[train|val|test/]gt/<group>/<clear>.jpg        the clear frame

The plate text of a group is taken from, in order: a `labels.csv`/`labels.jsonl` at ROOT (`file` = group folder
name, `text`, optional `region`); the clear frame's file name; the group folder name. The first of these that is
a valid plate of the region is used.

Every group becomes one multi-frame sample (its first `frames` degraded frames as `images`); with
`single_frames=True` each degraded frame and the clear frame also become single-frame samples. All samples of a
group share its split, and so do all groups of one plate text, unless split folders assign one. Hidden groups and
frames (a name starting with `.`) are skipped.
"""

import re
from pathlib import Path

from .images import CROP_LIMITS, IMAGE_EXTENSIONS, encode_png, load_image
from .labels import LabelFileError, checked_label, find_label_file, read_label_file
from .listing import skip_hidden
from .pipeline import BuildOptions, BuildResult, Task, run_build
from .reports import InputProblem, SkipLog
from .schema import Sample
from .splits import split_alias

SOURCE = "mdlp"
DEFAULT_FRAMES = 3


def _frame_order(path: Path):
    numbers = re.findall(r"\d+", path.stem)
    return (int(numbers[-1]) if numbers else -1, path.name)


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        (path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS),
        key=_frame_order,
    )


def _split_roots(root: Path) -> list[tuple[Path, str | None]]:
    """(folder holding inputs/ and gt/, its split) pairs."""
    if (root / "inputs").is_dir():
        return [(root, None)]
    return [
        (folder, split_alias(folder.name))
        for folder in sorted(root.iterdir())
        if folder.is_dir() and (folder / "inputs").is_dir()
    ]


def _group_label(group: str, clear: Path | None, labels: dict, region: str | None, name: str) -> tuple[str, str]:
    if group in labels:
        text, row_region = labels[group]
        return checked_label(text, row_region or region, name)
    candidates = ([clear.stem.split("_")[0]] if clear else []) + [group]
    problems = []
    for candidate in candidates:
        try:
            return checked_label(candidate, region, name)
        except InputProblem as problem:
            problems.append(problem.message)
    raise InputProblem(
        name,
        "bad_label",
        "no label: not in a label file, and neither the clear frame's name nor the group name is a plate "
        f"({'; '.join(problems)})",
    )


def list_mdlp_tasks(
    input_dir: Path,
    skip_log: SkipLog,
    frames: int | None = DEFAULT_FRAMES,
    single_frames: bool = False,
    region: str | None = "CN",
) -> list[Task]:
    """The tasks of an MDLP folder: one multi-frame task per group, plus single-frame tasks if asked.

    Raises:
        FileNotFoundError: `input_dir` has no `inputs/` folder, directly or under split folders.
        LabelFileError: the label file cannot be read.
    """
    input_dir = Path(input_dir)
    roots = _split_roots(input_dir) if input_dir.is_dir() else []
    if not roots:
        raise FileNotFoundError(
            f"MDLP input {input_dir} has no inputs/ folder "
            "(expected ROOT/[train|val|test/]inputs/<group>/ and gt/<group>/)."
        )
    if frames is not None and frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}.")
    labels = {}
    label_file = find_label_file(input_dir)
    if label_file is not None:
        rows, problems = read_label_file(label_file)
        for problem in problems:
            skip_log.add(problem)
        labels = {row.file: (row.text, row.region) for row in rows}

    tasks = []
    for split_root, split in roots:
        group_dirs = sorted(folder for folder in (split_root / "inputs").iterdir() if folder.is_dir())
        for group_dir in skip_hidden(group_dirs, input_dir, skip_log):
            group = group_dir.name
            name = group_dir.relative_to(input_dir).as_posix()
            degraded = skip_hidden(_images_in(group_dir), input_dir, skip_log)
            clear_frames = skip_hidden(_images_in(split_root / "gt" / group), input_dir, skip_log)
            clear = clear_frames[0] if clear_frames else None
            try:
                text, code = _group_label(group, clear, labels, region, name)
            except InputProblem as problem:
                skip_log.add(problem)
                continue
            wanted = len(degraded) if frames is None else frames
            if len(degraded) < wanted or not degraded:
                skip_log.add(
                    InputProblem(
                        name,
                        "too_few_frames",
                        f"group has {len(degraded)} degraded frame(s); {wanted} needed (--frames)",
                    )
                )
                continue
            chosen = degraded[:wanted]
            multi_id = name
            tasks.append(
                Task(multi_id, name, text, split, ([str(path) for path in chosen], text, code, "multi_frame"))
            )
            if single_frames:
                for path in chosen:
                    frame_name = path.relative_to(input_dir).as_posix()
                    tasks.append(
                        Task(frame_name, frame_name, text, split, ([str(path)], text, code, "single_frame"))
                    )
                if clear is not None:
                    clear_name = clear.relative_to(input_dir).as_posix()
                    tasks.append(
                        Task(clear_name, clear_name, text, split, ([str(clear)], text, code, "clear_frame"))
                    )
    return tasks


def process_mdlp(task: Task) -> Sample:
    """Loads the frames of one MDLP sample."""
    paths, text, region, subset = task.payload
    root_name = task.name
    images, modes = [], []
    for path in paths:
        frame_name = f"{root_name}/{Path(path).name}" if len(paths) > 1 else root_name
        loaded = load_image(Path(path), CROP_LIMITS, name=frame_name)
        images.append(encode_png(loaded.image))
        modes.append(loaded.original_mode)
    return Sample(
        id=task.id,
        images=images,
        text=text,
        region=region,
        source=SOURCE,
        subset=subset,
        original_modes=tuple(modes),
    )


def build_mdlp(
    input_dir: str | Path,
    output_dir: str | Path,
    frames: int | None = DEFAULT_FRAMES,
    single_frames: bool = False,
    region: str | None = "CN",
    options: BuildOptions | None = None,
) -> BuildResult:
    """Converts an MDLP folder into multi-frame samples (and single-frame ones with `single_frames=True`).

    Args:
        input_dir: The MDLP root.
        output_dir: The dataset folder to create.
        frames: Degraded frames per multi-frame sample (groups with fewer are skipped); None for all.
        single_frames: Also add every degraded frame and the clear frame as single-frame samples.
        region: Region of the plates (MDLP is Chinese).
        options: Common build options.
    """
    options = options or BuildOptions()
    skip_log = SkipLog(strict=options.strict)
    tasks = list_mdlp_tasks(Path(input_dir), skip_log, frames, single_frames, region)
    return run_build(SOURCE, tasks, process_mdlp, output_dir, options, skip_log, inputs=[Path(input_dir)])


__all__ = ["LabelFileError", "build_mdlp", "list_mdlp_tasks", "process_mdlp"]
