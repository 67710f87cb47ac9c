"""Loads the plate conversations `dataset_scripts.build` writes and checks they are what training needs.

A training source (one `--dataset_name` entry) is a dataset saved with `save_to_disk`, a Hub dataset id, or crops as
`lpllm data --source crops` reads them: a folder holding `labels.csv`/`labels.jsonl`, a folder of such folders, or a
label file. Crops are built into a dataset by `dataset_scripts.build_crops` with its default seed and split fractions
(so a source's test split is the one `lpllm data` would write, whatever the training seed), once: the build is kept
in a cache folder keyed by the input's resolved path, the size and modification time of its label files and the
modification times of its folders (which change when an image is added, removed or renamed; for a label file, of the
folder it is in), so a second run, or a resumed one, loads it instead of building again. An image rewritten in place
under the same name is not noticed: delete the cache entry to rebuild.
"""

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from dataset_scripts import BuildOptions, NoSamplesError, build_crops
from dataset_scripts.labels import LABEL_FILE_NAMES, LabelFileError, find_label_file
from dataset_scripts.output import BUILD_MARKERS
from dataset_scripts.splits import DEFAULT_RATIOS
from modeling_lpllm.processing_lpllm import DEFAULT_PROMPT


logger = logging.get_logger(__name__)


TRAINING_COLUMNS = ("images", "prompt", "completion")
# Label files a crops source may be given as directly (as `lpllm data --source crops --input FILE` reads them).
LABEL_FILE_SUFFIXES = tuple(sorted({Path(name).suffix for name in LABEL_FILE_NAMES}))
CROPS_CACHE_SUBDIR = "lpllm_crops"
# Part of every cache key: a change to how crops are built here must not load an entry built the old way.
_CROPS_BUILD = {"builder": "dataset_scripts.build_crops", "seed": 0, "ratios": list(DEFAULT_RATIOS),
                "prompt": DEFAULT_PROMPT}


@dataclass
class PlateSource:
    """One `--dataset_name` entry, loaded.

    Args:
        name: As given (a folder, a label file or a Hub id); how messages and the model card name it.
        label: A short name, unique among the run's sources, for its report folders (`final_eval/<label>_<split>`).
        dataset: Its splits.
        local_dir: The folder `dataset` loads from (for crops, their build in the cache), for readers that take a
            path (eval.py); None for a Hub dataset.
    """

    name: str
    label: str
    dataset: datasets.DatasetDict
    local_dir: str | None


def is_crops_input(path: str | os.PathLike) -> bool:
    """Whether `path` is crops to build rather than a saved dataset: a label file (`.csv`, `.jsonl`), or a folder that
    is not a `save_to_disk` dataset and holds a label file or sub-folders that do."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in LABEL_FILE_SUFFIXES
    if not path.is_dir() or any((path / marker).is_file() for marker in ("dataset_dict.json", "state.json")):
        return False
    return find_label_file(path) is not None or any(
        folder.is_dir() and find_label_file(folder) is not None for folder in path.iterdir()
    )


def crops_cache_key(path: str | os.PathLike) -> str:
    """A digest of what a build of the crops at `path` depends on (see the module docstring)."""
    path = Path(path).resolve()
    watched = [path] if path.is_file() else []
    for folder, subfolders, files in os.walk(path.parent if path.is_file() else path):
        subfolders.sort()
        watched.append(Path(folder))
        watched.extend(Path(folder, name) for name in sorted(files) if name in LABEL_FILE_NAMES)
        if path.is_file():
            break  # a label file's images are named by it; its own folder's listing is what can change under it
    stats = [(str(item), item.stat().st_size if item.is_file() else 0, item.stat().st_mtime_ns) for item in watched]
    text = json.dumps({"input": str(path), "build": _CROPS_BUILD, "files": stats}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_crops_cache_dir() -> Path:
    return Path(datasets.config.HF_DATASETS_CACHE) / CROPS_CACHE_SUBDIR


def build_crops_source(
    path: str | os.PathLike, cache_dir: str | os.PathLike | None = None, num_workers: int = 0
) -> Path:
    """The dataset folder of the crops at `path`: built with `dataset_scripts.build_crops` into
    `cache_dir/<name>-<crops_cache_key>` the first time, found there afterwards.

    Args:
        path: A crops folder or label file (`is_crops_input`).
        cache_dir: Where builds are kept (None: `lpllm_crops` in the `datasets` cache, `HF_DATASETS_CACHE`).
        num_workers: Worker processes of the build (0: this process).

    Raises:
        ValueError: naming `path`, when no crop can be read or a label file cannot be read at all.
    """
    path = Path(path)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_crops_cache_dir()
    destination = cache_dir / f"{source_labels([str(path)])[0]}-{crops_cache_key(path)}"
    if all((destination / marker).is_file() for marker in BUILD_MARKERS):
        logger.info(f"{path}: using its build in {destination}")
        return destination
    logger.warning(f"{path}: building its crops into {destination} (once; later runs reuse it)")
    try:
        result = build_crops(path, destination, options=BuildOptions(num_workers=num_workers, parquet=False))
    except (NoSamplesError, LabelFileError, FileNotFoundError) as error:
        raise ValueError(f"--dataset_name {path}: its crops cannot be built into a dataset: {error}") from error
    if result.skipped:
        logger.warning(
            f"{path}: {len(result.skipped)} crop(s) left out of the build, each with its reason in "
            f"{destination / 'skipped.csv'}"
        )
    return destination


def load_plate_dataset(dataset_name: str) -> datasets.DatasetDict:
    """A directory written by `python -m dataset_scripts.build` (`save_to_disk`), else a Hub dataset id."""
    if os.path.isdir(dataset_name):
        try:
            loaded = datasets.load_from_disk(dataset_name)
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(
                f"{dataset_name} is not a dataset saved with `save_to_disk`, nor a crops folder (one holding "
                f"{' or '.join(LABEL_FILE_NAMES)}, or sub-folders that do); build a dataset with "
                f"`python -m dataset_scripts.build --output {dataset_name} ...` ({error})"
            ) from error
    elif os.path.exists(dataset_name):
        raise ValueError(
            f"--dataset_name {dataset_name} is a file; it must be a dataset directory, a crops folder, a label file "
            f"({', '.join(LABEL_FILE_SUFFIXES)}) or a Hub id."
        )
    else:
        try:
            loaded = datasets.load_dataset(dataset_name)
        except OSError as error:  # ConnectionError offline, DatasetNotFoundError online
            # A name like `data/plates` is a Hub id as well as a relative path: say that neither was found.
            raise ValueError(
                f"--dataset_name {dataset_name}: there is no local folder of that name (from {os.getcwd()}), and "
                f"loading it from the Hub failed: {error}"
            ) from error
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def training_split(
    dataset: datasets.DatasetDict, split: str, where: str, field: str = "dataset_train_split"
) -> datasets.Dataset:
    """The split with only the columns SFT reads, after checking it has them and at least one row.

    Args:
        dataset: The loaded dataset.
        split: The split's name.
        where: The dataset's name or folder, for messages.
        field: The argument that named `split`, for messages.
    """
    if split not in dataset:
        raise ValueError(f"`{field}`: {where} has no split {split!r}; it has {sorted(dataset)}.")
    if len(dataset[split]) == 0:
        raise ValueError(
            f"`{field}`: split {split!r} of {where} has no rows; a run needs at least one (rebuild the dataset "
            "with more inputs or other --splits fractions, or name another split)."
        )
    missing = [column for column in TRAINING_COLUMNS if column not in dataset[split].column_names]
    if missing:
        raise ValueError(
            f"{where}[{split}] is missing the column(s) {', '.join(missing)}: training needs {', '.join(TRAINING_COLUMNS)} "
            f"(TRL conversational prompt/completion with images); it has {', '.join(dataset[split].column_names)}."
        )
    check_conversation(dataset[split], f"{where}[{split}]")
    return dataset[split].select_columns(list(TRAINING_COLUMNS))


def _is_turns(value, role: str | None = None) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(
            isinstance(turn, dict)
            and isinstance(turn.get("role"), str)
            and isinstance(turn.get("content"), (list, str))
            and (role is None or turn["role"] == role)
            for turn in value
        )
    )


def check_conversation(split: datasets.Dataset, where: str) -> None:
    """Refuses a split whose first row is not a TRL conversational prompt/completion: `prompt` a list of
    `{"role", "content"}` turns, `completion` a list of assistant turns.

    Raises:
        ValueError: naming `where` and what the row holds instead.
    """
    row = split.select_columns([column for column in ("prompt", "completion") if column in split.column_names])[0]
    if not (_is_turns(row.get("prompt")) and _is_turns(row.get("completion"), role="assistant")):
        raise ValueError(
            f"{where} is not in the conversation format training needs: `prompt` must be a list of "
            '`{"role", "content"}` turns and `completion` a list of `{"role": "assistant", "content"}` turns (as '
            f"`lpllm data` writes them); its first row has prompt={row.get('prompt')!r}, "
            f"completion={row.get('completion')!r}."
        )


def _short_name(name: str | os.PathLike) -> str:
    path = Path(str(name).rstrip("/\\"))
    if path.suffix.lower() in LABEL_FILE_SUFFIXES:
        return path.parent.name if path.stem == "labels" else path.stem
    return path.name


def source_labels(names: list[str]) -> list[str]:
    """Short names of the sources `names`, unique among them, safe as folder names: a folder's or file's name (the
    folder's for a file called `labels.*`), a Hub id's last part; a repeated name gets `-2`, `-3`, ..."""
    labels = []
    for name in names:
        label = "".join(char if char.isalnum() or char in "-." else "_" for char in _short_name(name)).strip(".")
        label = label or "source"
        unique, count = label, 1
        while unique in labels:
            count += 1
            unique = f"{label}-{count}"
        labels.append(unique)
    return labels


def load_training_sources(
    names: list[str],
    train_split: str,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
) -> list[PlateSource]:
    """Loads every `--dataset_name` entry and checks that its `train_split` can be trained on (`training_split`);
    saved and Hub datasets first, then crops are built (`build_crops_source`), so that a bad saved dataset is refused
    before minutes of building.

    Raises:
        ValueError: naming the source, for a source that cannot be loaded or built, or whose training split is
            missing, empty or not in the conversation format.
    """
    labels = source_labels(names)
    crops = [is_crops_input(name) for name in names]
    sources: list[PlateSource | None] = [None] * len(names)
    for index in sorted(range(len(names)), key=lambda index: crops[index]):
        name = names[index]
        local_dir = str(build_crops_source(name, cache_dir, num_workers)) if crops[index] else None
        dataset = load_plate_dataset(local_dir or name)
        if local_dir is None and os.path.isdir(name):
            local_dir = name
        training_split(dataset, train_split, name, "dataset_train_split")
        sources[index] = PlateSource(name=name, label=labels[index], dataset=dataset, local_dir=local_dir)
    return sources


class DecodedPlateSplit(torch.utils.data.Dataset):
    """A training split with every image decoded once and held in memory.

    Reading a row of a `datasets` split decodes its PNG and the processor then converts and resizes it, at every step
    of every epoch: on a 2-core CPU that was ~30% of a training step of the small embedded model. Rows come out as the
    split's do (`images`, `prompt`, `completion`), with fresh message lists, since TRL's collator rewrites them.

    Args:
        split: rows with the `TRAINING_COLUMNS`.
        prepare_image: the processor's own preparation (`LPLLMProcessor.prepare_images`), so the pixels are the ones
            the processor would have produced at each step; images are kept prepared, as uint8 RGB arrays.
        augment: a random transform (e.g. `RandomQuadJitter`) from an 8-bit RGB PIL image to the model's input size,
            applied every time a row is read; images are then kept prepared but not resized
            (`prepare_image(image, resize=False)`: RGB, levelled when the processor deskews), at their own size.
            The transformed crops come out as uint8 arrays, as without `augment`: the processor takes arrays as
            prepared, so a jittered strip is not levelled a second time (that cost ~0.6 ms per crop, and a test
            crop is never levelled after its resize either).
    """

    def __init__(self, split: datasets.Dataset, prepare_image, augment=None, description="decoding training images"):
        self.augment = augment
        self.rows = []
        num_bytes = 0
        for row in tqdm(split, desc=description, unit="row"):
            if augment is None:
                images = [np.asarray(prepare_image(image), dtype=np.uint8) for image in row["images"]]
                num_bytes += sum(image.nbytes for image in images)
            else:
                images = [prepare_image(image, resize=False) for image in row["images"]]
                num_bytes += sum(3 * image.width * image.height for image in images)
            self.rows.append({"images": images, "prompt": row["prompt"], "completion": row["completion"]})
        logger.info(f"Decoded {len(self.rows)} training rows into memory ({num_bytes / 2**20:.0f} MiB of pixels).")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        if self.augment is None:
            images = row["images"]
        else:
            images = [np.asarray(self.augment(image), dtype=np.uint8) for image in row["images"]]
        return {"images": images, "prompt": copy.deepcopy(row["prompt"]), "completion": copy.deepcopy(row["completion"])}
