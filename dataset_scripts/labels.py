"""Label files: CSV or JSON Lines mapping an image (or a frame group) to its plate text and optional region.

Accepted column names (case-insensitive, extra columns ignored):

- file: `file`, `image_path` (fast-plate-ocr), `image`, `filename`, `path`, `group`
- text: `text`, `plate_text` (fast-plate-ocr), `plate`, `label`
- region: `region`, `plate_region` (fast-plate-ocr)

A label file without a usable header is an error for the whole run (not a per-row skip): nothing could be read.
"""

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from .regions import get_region, infer_region_code, normalize_plate_text, resolve_region_code
from .reports import InputProblem

LABEL_FILE_NAMES = ("labels.csv", "labels.jsonl")

_FILE_KEYS = ("file", "image_path", "image", "filename", "path", "group")
_TEXT_KEYS = ("text", "plate_text", "plate", "label")
_REGION_KEYS = ("region", "plate_region")


class LabelFileError(ValueError):
    """A label file that cannot be read at all (missing header, wrong encoding)."""


@dataclass(frozen=True)
class LabelRow:
    """One row of a label file: `file` as written (relative to the label file's folder unless absolute)."""

    file: str
    text: str
    region: str | None
    where: str  # "labels.csv:12", for messages


def _pick(keys_present: dict[str, str], candidates: tuple[str, ...]) -> str | None:
    return next((keys_present[key] for key in candidates if key in keys_present), None)


def find_label_file(folder: Path) -> Path | None:
    """`labels.csv` or `labels.jsonl` in `folder`, if there is one."""
    return next((folder / name for name in LABEL_FILE_NAMES if (folder / name).is_file()), None)


def read_label_file(path: Path, name: str | None = None) -> tuple[list[LabelRow], list[InputProblem]]:
    """Reads a label file.

    Returns:
        The rows, and one `InputProblem` per malformed row (missing file name, bad JSON) to skip.

    Raises:
        LabelFileError: when the file cannot be read or has no file/text columns.
    """
    path = Path(path)
    name = name or path.name
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise LabelFileError(f"{name}: not UTF-8 text ({error}); save the label file as UTF-8.") from None
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl(content, name)
    return _read_csv(content, name)


def _read_csv(content: str, name: str) -> tuple[list[LabelRow], list[InputProblem]]:
    reader = csv.reader(io.StringIO(content, newline=""))
    header = next(reader, None)
    if header is None:
        raise LabelFileError(
            f"{name}: empty label file; expected a header file,text[,region] or image_path,plate_text[,plate_region]."
        )
    columns = {column.strip().lower(): index for index, column in enumerate(header)}
    file_index, text_index = _pick(columns, _FILE_KEYS), _pick(columns, _TEXT_KEYS)
    region_index = _pick(columns, _REGION_KEYS)
    if file_index is None or text_index is None:
        raise LabelFileError(
            f"{name}: header {header} has no file and text columns; expected file,text[,region] "
            "(or fast-plate-ocr's image_path,plate_text[,plate_region])."
        )
    rows, problems = [], []
    for values in reader:
        if not values or all(not value.strip() for value in values):
            continue
        where = f"{name}:{reader.line_num}"
        if len(values) <= max(file_index, text_index):
            problems.append(
                InputProblem(
                    where, "malformed_row", f"row has {len(values)} field(s); expected a file name and a text"
                )
            )
            continue
        file, text = values[file_index].strip(), values[text_index]
        region = values[region_index].strip() if region_index is not None and region_index < len(values) else None
        if not file:
            problems.append(InputProblem(where, "malformed_row", "row has an empty file name"))
            continue
        rows.append(LabelRow(file, text, region or None, where))
    return rows, problems


def _read_jsonl(content: str, name: str) -> tuple[list[LabelRow], list[InputProblem]]:
    rows, problems = [], []
    for line_number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}:{line_number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(InputProblem(where, "malformed_row", f"not valid JSON ({error.msg})"))
            continue
        if not isinstance(record, dict):
            problems.append(InputProblem(where, "malformed_row", "expected a JSON object per line"))
            continue
        keys = {key.lower(): key for key in record}
        file_key, text_key = _pick(keys, _FILE_KEYS), _pick(keys, _TEXT_KEYS)
        region_key = _pick(keys, _REGION_KEYS)
        if file_key is None or not str(record[file_key]).strip():
            problems.append(
                InputProblem(where, "malformed_row", f"no file name; expected one of the keys {list(_FILE_KEYS)}")
            )
            continue
        text = record.get(text_key) if text_key else None
        region = record.get(region_key) if region_key else None
        rows.append(
            LabelRow(
                str(record[file_key]).strip(),
                "" if text is None else str(text),
                str(region) if region else None,
                where,
            )
        )
    return rows, problems


def checked_label(raw_text: str | None, region: str | None, name: str, where: str = "") -> tuple[str, str]:
    """Normalises a label and checks it against its region's charset.

    Args:
        raw_text: The label as found.
        region: Region code or name; None to infer it from the text (CN when it starts with a province
            character) or fall back to the generic region `XX`.
        name: The input file, for messages.
        where: Where the label came from (`labels.csv:12`, `file name`), added to messages.

    Returns:
        The normalised text and the region code.

    Raises:
        InputProblem: `empty_label` or `bad_label`.
    """
    source = f" (from {where})" if where else ""
    text = normalize_plate_text(raw_text or "")
    if not text:
        raise InputProblem(name, "empty_label", f"label {raw_text!r}{source} is empty; expected the plate text")
    code = resolve_region_code(region) or infer_region_code(text)
    region_definition = get_region(code)
    problem = region_definition.validate(text)
    if problem:
        raise InputProblem(name, "bad_label", f"{problem}{source}")
    return text, code or region_definition.code


__all__ = ["LABEL_FILE_NAMES", "LabelFileError", "LabelRow", "checked_label", "find_label_file", "read_label_file"]
