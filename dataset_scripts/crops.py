"""`crops`: folders of plate crops, labelled by a label file or by their file names.

Three layouts are recognised, in this order:

1. `--input` is a label file, or `--labels FILE` is given, or the folder holds `labels.csv`/`labels.jsonl`:
   each row names an image (relative to the label file's folder, and inside it: absolute and `../` paths are
   skipped, since a label file must not make the build read files from elsewhere) and its text. fast-plate-ocr's
   `image_path,plate_text[,plate_region]` CSV is read as is.
2. The folder holds no label file but sub-folders that do (e.g. `../shared/realdata`): every sub-folder is read as
   in 1, its name becoming the `subset`.
3. Otherwise every image under the folder is labelled by its file name, LPRNet style: `皖A12345.jpg`; a suffix
   after an underscore (`皖A12345_2.jpg`, for repeated plates) is not part of the label.

Hidden files and folders are skipped in layouts 2 and 3 (see `listing`). Crops are grouped into splits by their
normalised plate text, so the repeats of one plate never straddle splits.
"""

import logging
import os
from pathlib import Path

from .images import CROP_LIMITS, IMAGE_EXTENSIONS, describe, encode_png, load_image
from .labels import LabelFileError, checked_label, find_label_file, read_label_file
from .listing import hidden_entry, skip_hidden
from .pipeline import BuildOptions, BuildResult, Task, run_build
from .reports import InputProblem, SkipLog
from .schema import Sample

logger = logging.getLogger(__name__)

SOURCE = "crops"


def _tasks_from_label_file(label_file, root, subset, id_prefix, region, skip_log):
    rows, problems = read_label_file(label_file, name=describe(label_file, root))
    for problem in problems:
        skip_log.add(problem)
    base = label_file.parent
    referenced = set()
    for row in rows:
        outside = _outside_reason(row.file)
        if outside:
            skip_log.add(
                InputProblem(
                    row.where,
                    "outside_input",
                    f"file {row.file!r} {outside}; label files name images relative to their own folder "
                    f"({describe(base, root)}) and inside it",
                )
            )
            continue
        path = base / os.path.normpath(row.file)
        name = describe(path, root)
        if not path.is_file():
            skip_log.add(InputProblem(name, "missing_file", f"file referenced by {row.where} does not exist"))
            continue
        try:
            text, code = checked_label(row.text, row.region or region, name, row.where)
        except InputProblem as problem:
            skip_log.add(problem)
            continue
        referenced.add(path.resolve())
        sample_id = f"{id_prefix}{describe(path, base)}"
        yield Task(id=sample_id, name=name, group=text, payload=(str(path), text, code, subset))
    images = [
        path
        for path in base.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and hidden_entry(path, base) is None
    ]
    unlabelled = sum(1 for path in images if path.resolve() not in referenced)
    if unlabelled:
        logger.info("%d image(s) under %s are not listed in %s and were not used.", unlabelled, base, label_file.name)


def _outside_reason(file: str) -> str | None:
    """Why a label file's path leads outside its folder, or None when it stays inside."""
    if os.path.isabs(file) or Path(file).drive:
        return "is an absolute path"
    if Path(os.path.normpath(file)).parts[:1] == (os.pardir,):
        return "leads out of the label file's folder ('..')"
    return None


def _label_from_file_name(path: Path) -> str:
    return path.stem.split("_")[0]


def _tasks_from_file_names(folder, root, subset, region, skip_log):
    for path in skip_hidden(sorted(path for path in folder.rglob("*") if path.is_file()), folder, skip_log):
        name = describe(path, root)
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            skip_log.add(
                InputProblem(
                    name,
                    "not_an_image",
                    f"extension {path.suffix or '(none)'!r} is not an image type "
                    f"({', '.join(sorted(IMAGE_EXTENSIONS))})",
                )
            )
            continue
        try:
            text, code = checked_label(_label_from_file_name(path), region, name, "file name")
        except InputProblem as problem:
            skip_log.add(problem)
            continue
        sample_id = describe(path, folder)
        yield Task(id=sample_id, name=name, group=text, payload=(str(path), text, code, subset))


def list_crop_tasks(
    input_path: Path, skip_log: SkipLog, labels: Path | None = None, region: str | None = None
) -> list[Task]:
    """The tasks of a crops input (see the module docstring for the layouts).

    Raises:
        FileNotFoundError: `input_path` or `labels` does not exist.
        LabelFileError: a label file cannot be read at all.
    """
    input_path = Path(input_path)
    if not input_path.exists():
        raise FileNotFoundError(f"Input {input_path} does not exist.")
    root = input_path if input_path.is_dir() else input_path.parent
    if labels is not None and not Path(labels).is_file():
        raise FileNotFoundError(f"Label file {labels} does not exist.")
    label_file = Path(labels) if labels else (input_path if input_path.is_file() else find_label_file(input_path))
    if label_file is not None:
        return list(_tasks_from_label_file(label_file, root, root.name, "", region, skip_log))
    sets = sorted(folder for folder in input_path.iterdir() if folder.is_dir() and find_label_file(folder))
    if any(hidden_entry(folder, input_path) is None for folder in sets):
        sets = skip_hidden(sets, input_path, skip_log)
    if sets:
        tasks = []
        for folder in sets:
            tasks.extend(
                _tasks_from_label_file(find_label_file(folder), root, folder.name, f"{folder.name}/", region, skip_log)
            )
        return tasks
    return list(_tasks_from_file_names(input_path, root, root.name, region, skip_log))


def process_crop(task: Task) -> Sample:
    """Loads, checks and encodes one crop."""
    path, text, region, subset = task.payload
    loaded = load_image(Path(path), CROP_LIMITS, name=task.name, exif_transpose=True)
    return Sample(
        id=task.id,
        images=[encode_png(loaded.image)],
        text=text,
        region=region,
        source=SOURCE,
        subset=subset,
        original_modes=(loaded.original_mode,),
    )


def build_crops(
    input_path: str | Path,
    output_dir: str | Path,
    labels: str | Path | None = None,
    region: str | None = None,
    options: BuildOptions | None = None,
) -> BuildResult:
    """Converts a folder of plate crops (or a label file) into a dataset at `output_dir`.

    Args:
        input_path: A folder of crops, a folder of such folders, or a CSV/JSONL label file.
        output_dir: The dataset folder to create.
        labels: A label file to use instead of the folder's `labels.csv`/`labels.jsonl`.
        region: Region code for rows that do not name one (inferred from the text when None: CN if it starts
            with a province character, else `XX`).
        options: Common build options.
    """
    options = options or BuildOptions()
    skip_log = SkipLog(strict=options.strict)
    input_path = Path(input_path)
    tasks = list_crop_tasks(input_path, skip_log, Path(labels) if labels else None, region)
    return run_build(SOURCE, tasks, process_crop, output_dir, options, skip_log, inputs=[input_path])


__all__ = ["LabelFileError", "build_crops", "list_crop_tasks", "process_crop"]
