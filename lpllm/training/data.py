"""Loads the plate conversations `dataset_scripts.build` writes and checks they are what training needs."""

import copy
import os

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging



logger = logging.get_logger(__name__)


TRAINING_COLUMNS = ("images", "prompt", "completion")


def load_plate_dataset(dataset_name: str) -> datasets.DatasetDict:
    """A directory written by `python -m dataset_scripts.build` (`save_to_disk`), else a Hub dataset id."""
    if os.path.isdir(dataset_name):
        try:
            loaded = datasets.load_from_disk(dataset_name)
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(
                f"{dataset_name} is not a dataset saved with `save_to_disk`; build one with "
                f"`python -m dataset_scripts.build --output {dataset_name} ...` ({error})"
            ) from error
    elif os.path.exists(dataset_name):
        raise ValueError(f"--dataset_name {dataset_name} is a file; it must be a dataset directory or a Hub id.")
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
    return dataset[split].select_columns(list(TRAINING_COLUMNS))


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
