"""Loads evaluation samples from a dataset written by `dataset_scripts.build` or from a folder/CSV of crops.

Every sample that cannot be evaluated (missing or corrupt image, empty label, label outside the charset) is kept
out of the metrics and reported by file, with a reason; nothing is dropped silently.

Dataset contract (`datasets.load_from_disk(DIR)`): columns `images` (list of `datasets.Image`; a single `image`
column works too), `text` (the label; `completion` is read when `text` is missing), and optionally `prompt`,
`region`, `source`, `subset`, `id`, `degradation` (type name; `none` for clean, `real` for real data) and
`severity` (number or name; negative = unknown).

Folder contract: `labels.csv` with columns `file,text[,region][,source][,subset][,degradation][,severity]`, `file`
relative to the CSV's folder.
"""

import csv
import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from PIL import Image
from tqdm.auto import tqdm

from modeling_lpllm import DEFAULT_PLATE_CHARSET, PLATE_IMAGE_LIMITS, ImageInputError, load_image_input

from .normalization import PlateNormalizer


logger = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
# Excluded files are logged one by one up to this many; all of them are always in the report.
MAX_LOGGED_EXCLUSIONS = 20


@dataclass
class EvalSample:
    """One plate to read: its image(s) (several for multi-frame samples) and its normalised label."""

    id: str
    images: list
    label: str
    raw_label: str
    region: str | None = None
    source: str | None = None
    subset: str | None = None
    degradation: str | None = None
    severity: float | int | str | None = None
    prompt: str | None = None
    file: str | None = None


@dataclass
class ExcludedSample:
    """A sample kept out of the metrics, with the reason."""

    id: str
    file: str | None
    reason: str


@dataclass
class EvalData:
    """The samples of one evaluation run and the ones that were excluded."""

    name: str
    path: str
    split: str | None
    samples: list[EvalSample] = field(default_factory=list)
    excluded: list[ExcludedSample] = field(default_factory=list)


def _clean(value):
    """None for missing values (None, NaN, empty string), else the value with surrounding blanks stripped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _severity(value):
    """Severity as a number when it reads as one (so plots order it numerically), else as a name. Negative numbers
    mean "unknown" in the dataset contract (-1 for real data) and become None."""
    value = _clean(value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return None
    return value


def _message_text(messages) -> str | None:
    """The text parts of a TRL conversational turn (`[{"role": ..., "content": [{"type": "text", ...}]}]`)."""
    if isinstance(messages, str):
        return messages
    texts = []
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "text" and part.get("text"):
                texts.append(part["text"])
    return "".join(texts) if texts else None


def _open_image(value, base_dir: Path | None = None) -> Image.Image:
    """An RGB PIL image from a path, a `datasets.Image(decode=False)` dict or a PIL image, through the model
    package's image gate (the pipeline's limits and rules); raises ValueError naming the file."""
    if isinstance(value, Image.Image):
        source, name = value, "image"
    elif isinstance(value, dict) and value.get("bytes"):
        source, name = value["bytes"], value.get("path") or "image bytes"
    else:
        path = value.get("path") if isinstance(value, dict) else value
        if not path:
            raise ValueError("no image bytes and no path")
        path = Path(path)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise ValueError(f"image file not found: {path}")
        source, name = path, None
    try:
        return load_image_input(source, name, PLATE_IMAGE_LIMITS)
    except ImageInputError as error:
        raise ValueError(f"unreadable image ({error})") from error


class _SampleChecker:
    """Normalises a label and says why a sample cannot be evaluated, if it cannot."""

    def __init__(self, normalizer: PlateNormalizer, charset: str | None):
        self.normalizer = normalizer
        self.charset = set(charset) if charset else None

    def label_problem(self, label: str) -> str | None:
        if not label:
            return "empty label"
        if self.charset is not None:
            outside = sorted(set(label) - self.charset)
            if outside:
                return f"label {label!r} has characters outside the charset: {''.join(outside)!r}"
        return None


def _build_sample(checker, sample_id, file, image_values, raw_label, base_dir=None, **extra):
    """An `EvalSample`, or an `ExcludedSample` naming what is wrong with the row."""
    raw_label = "" if raw_label is None else str(raw_label)
    label = checker.normalizer(raw_label, extra.get("region"))
    problem = checker.label_problem(label)
    if problem is None and not image_values:
        problem = "no image"
    images = []
    if problem is None:
        try:
            images = [_open_image(value, base_dir) for value in image_values]
        except ValueError as error:
            problem = str(error)
    if problem is not None:
        return ExcludedSample(id=str(sample_id), file=file, reason=problem)
    return EvalSample(id=str(sample_id), images=images, label=label, raw_label=raw_label, file=file, **extra)


def _collect(data: EvalData, items: Iterable, total: int) -> EvalData:
    for item in tqdm(items, total=total, desc=f"Loading {data.name}", unit="img"):
        (data.excluded if isinstance(item, ExcludedSample) else data.samples).append(item)
    for excluded in data.excluded[:MAX_LOGGED_EXCLUSIONS]:
        logger.warning("Excluded %s (%s): %s", excluded.id, excluded.file or "-", excluded.reason)
    if len(data.excluded) > MAX_LOGGED_EXCLUSIONS:
        logger.warning(
            "... and %d more excluded samples (all listed in the report).", len(data.excluded) - MAX_LOGGED_EXCLUSIONS
        )
    if data.excluded:
        logger.warning(
            "%d of %d samples excluded from the metrics.", len(data.excluded), len(data.excluded) + len(data.samples)
        )
    return data


def _load_csv(csv_path: Path, checker: _SampleChecker, max_samples: int | None) -> EvalData:
    base_dir = csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "text"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{csv_path} must have the columns 'file' and 'text' (optionally 'region', 'source', 'degradation',"
                f" 'severity'); it lacks {sorted(missing)} (found {reader.fieldnames})."
            )
        rows = list(reader)
    if not rows:
        raise ValueError(f"{csv_path} has a header but no rows: there is no sample to evaluate.")
    rows = rows[:max_samples]
    name = base_dir.name or str(base_dir)

    def items():
        for index, row in enumerate(rows):
            file = _clean(row.get("file"))
            yield _build_sample(
                checker,
                sample_id=file or f"row-{index + 2}",
                file=file,
                image_values=[file] if file else [],
                raw_label=_clean(row.get("text")),
                base_dir=base_dir,
                region=_clean(row.get("region")),
                source=_clean(row.get("source")) or name,
                subset=_clean(row.get("subset")),
                degradation=_clean(row.get("degradation")),
                severity=_severity(row.get("severity")),
            )

    data = EvalData(name=name, path=str(csv_path), split=None)
    return _collect(data, items(), len(rows))


def _without_image_decoding(dataset: datasets.Dataset, column: str) -> datasets.Dataset:
    """Casts an image column so rows hold raw bytes/paths: a corrupt image then fails in our code, per sample."""
    feature = dataset.features[column]
    if isinstance(feature, datasets.Image):
        return dataset.cast_column(column, datasets.Image(decode=False))
    if isinstance(feature, (datasets.List, datasets.LargeList)) and isinstance(feature.feature, datasets.Image):
        return dataset.cast_column(column, type(feature)(datasets.Image(decode=False)))
    return dataset


def _split_folder(path: Path, split: str) -> Path:
    """The folder of `split` in a saved `DatasetDict` (only that split is loaded, so another split's problems do
    not stop this one), or `path` itself for a saved single `Dataset`."""
    dict_file = path / "dataset_dict.json"
    if not dict_file.is_file():
        return path
    try:
        splits = json.loads(dict_file.read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{dict_file} is not a datasets `DatasetDict` description: {error}") from error
    if split not in splits:
        raise ValueError(f"{path} has no split {split!r}; it has {sorted(splits)}. Pass --split with one of them.")
    return path / split


def _load_saved_dataset(path: Path, split: str, checker: _SampleChecker, max_samples: int | None) -> EvalData:
    no_rows = f"{path} [{split}] has no rows: there is no sample to evaluate. Pass --split with another split."
    folder = _split_folder(path, split)
    try:
        dataset = datasets.load_from_disk(str(folder))
    except IndexError:  # datasets cannot concatenate the zero data files a split of no rows is saved as
        raise ValueError(no_rows) from None
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(
            f"{path} is neither a dataset saved by `dataset_scripts.build` (datasets.save_to_disk) nor a folder with"
            f" a {LABELS_FILE}: {error}"
        ) from error
    if isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"{folder} holds several splits {sorted(dataset)}: expected the one split {split!r}.")
    image_column = next((name for name in ("images", "image") if name in dataset.column_names), None)
    if image_column is None or not ({"text", "completion"} & set(dataset.column_names)):
        raise ValueError(
            f"{path} [{split}] must have an 'images' (or 'image') column and a 'text' (or 'completion') column;"
            f" it has {dataset.column_names}."
        )
    if len(dataset) == 0:
        raise ValueError(no_rows)
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    dataset = _without_image_decoding(dataset, image_column)
    name = path.name or str(path)

    def items():
        for index, row in enumerate(dataset):
            images = row[image_column]
            images = images if isinstance(images, list) else [images] if images is not None else []
            label = row.get("text")
            if label is None and "completion" in row:
                label = _message_text(row["completion"])
            first = images[0] if images else None
            file = first.get("path") if isinstance(first, dict) else None
            yield _build_sample(
                checker,
                sample_id=_clean(row.get("id")) or f"{split}-{index}",
                file=file,
                image_values=images,
                raw_label=label,
                region=_clean(row.get("region")),
                source=_clean(row.get("source")),
                subset=_clean(row.get("subset")),
                degradation=_clean(row.get("degradation")),
                severity=_severity(row.get("severity")),
                prompt=_message_text(row.get("prompt")),
            )

    data = EvalData(name=name, path=str(path), split=split)
    return _collect(data, items(), len(dataset))


def load_eval_data(
    path: str | os.PathLike,
    split: str = "test",
    normalizer: PlateNormalizer | None = None,
    charset: str | None = DEFAULT_PLATE_CHARSET,
    max_samples: int | None = None,
) -> EvalData:
    """Loads the samples to evaluate.

    Args:
        path: a directory written by `dataset_scripts.build`, a folder with `labels.csv`, or a CSV file.
        split: the split of a saved `DatasetDict` (ignored for CSV folders, which are one split).
        normalizer: applied to labels before they are checked against `charset`.
        charset: characters a label may contain; None accepts any.
        max_samples: evaluate only the first N rows (for quick runs).

    Raises:
        ValueError: naming the path and what was expected, when it is none of the accepted layouts or holds no row;
            naming `max_samples` when it is not a whole number >= 1.
    """
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"`max_samples` must be a whole number >= 1 or None (all rows); got {max_samples!r}.")
    checker = _SampleChecker(normalizer or PlateNormalizer(), charset)
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _load_csv(path, checker, max_samples)
    if path.is_dir() and (path / LABELS_FILE).is_file():
        return _load_csv(path / LABELS_FILE, checker, max_samples)
    if path.is_dir():
        return _load_saved_dataset(path, split, checker, max_samples)
    raise ValueError(
        f"Dataset {str(path)!r} not found: expected a directory written by `dataset_scripts.build`, a folder with a"
        f" {LABELS_FILE} (file,text[,region]) or a CSV file."
    )


__all__ = ["EvalData", "EvalSample", "ExcludedSample", "load_eval_data"]
