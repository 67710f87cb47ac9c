"""Loads the plate conversations `dataset_scripts.build` writes and checks they are what training needs."""

import os

import datasets


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
        loaded = datasets.load_dataset(dataset_name)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def training_split(dataset: datasets.DatasetDict, split: str, where: str) -> datasets.Dataset:
    """The split with only the columns SFT reads, after checking it has them."""
    if split not in dataset:
        raise ValueError(f"{where} has no split {split!r}; it has {sorted(dataset)}.")
    missing = [column for column in TRAINING_COLUMNS if column not in dataset[split].column_names]
    if missing:
        raise ValueError(
            f"{where}[{split}] is missing the column(s) {', '.join(missing)}: training needs {', '.join(TRAINING_COLUMNS)} "
            f"(TRL conversational prompt/completion with images); it has {', '.join(dataset[split].column_names)}."
        )
    return dataset[split].select_columns(list(TRAINING_COLUMNS))
