"""Builders shared by the evaluation and baseline tests: small datasets in the `dataset_scripts.build` format and
folders of crops with a labels.csv, made in the test with random images. (No tests here.)"""

import csv

import datasets
import numpy as np
from PIL import Image

from modeling_lpllm import DEFAULT_PROMPT


def noise_image(seed: int, size=(94, 24)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def plate_row(
    index: int,
    text: str,
    num_images: int = 1,
    region="CN",
    source="synthetic",
    degradation="none",
    severity=0,
    subset="blue",
):
    """One row in the dataset contract (dataset_scripts/schema.py): images, TRL conversational prompt/completion,
    text, region, source, subset, id, degradation (type, `none` or `real`) and severity (1-5, 0 for none, -1
    unknown)."""
    return {
        "images": [noise_image(100 * index + frame) for frame in range(num_images)],
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DEFAULT_PROMPT}]}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": text}]}],
        "text": text,
        "region": region,
        "source": source,
        "id": f"plate-{index}",
        "subset": subset,
        "degradation": degradation,
        "severity": severity,
    }


def save_plate_dataset(directory, splits: dict[str, list[dict]]):
    """Saves `{split: rows}` as a DatasetDict with `datasets.save_to_disk`; returns the directory."""
    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "prompt": [
                {
                    "role": datasets.Value("string"),
                    "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}],
                }
            ],
            "completion": [
                {
                    "role": datasets.Value("string"),
                    "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}],
                }
            ],
            "text": datasets.Value("string"),
            "region": datasets.Value("string"),
            "source": datasets.Value("string"),
            "id": datasets.Value("string"),
            "subset": datasets.Value("string"),
            "degradation": datasets.Value("string"),
            "severity": datasets.Value("int32"),
        }
    )
    dataset = datasets.DatasetDict(
        {name: datasets.Dataset.from_list(rows, features=features) for name, rows in splits.items()}
    )
    dataset.save_to_disk(str(directory))
    return directory


def standard_splits() -> dict[str, list[dict]]:
    """Train 6 / validation 2 / test 4 rows; the test split has a multi-frame sample and two degradation types."""
    train = [plate_row(i, text) for i, text in enumerate(["皖A12345", "AB123", "XY789", "CD456", "皖B0000", "EF12"])]
    validation = [plate_row(10 + i, text) for i, text in enumerate(["AB124", "XY780"])]
    test = [
        plate_row(20, "皖A88888", degradation="blur", severity=1),
        plate_row(21, "AB999", num_images=3, degradation="blur", severity=2),
        plate_row(22, "XY111", degradation="noise", severity=1, subset="green"),
        plate_row(23, "CD222", degradation="noise", severity=3, subset="green"),
    ]
    return {"train": train, "validation": validation, "test": test}


def write_crop_folder(directory, rows: list[tuple[str, str | None, str]]):
    """A folder of crops: `rows` are `(file, text, kind)` with kind 'ok' (a PNG is written), 'missing' (no file)
    or 'corrupt' (bytes that are not an image). Returns the folder."""
    (directory / "images").mkdir(parents=True)
    with open(directory / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "text", "region", "source_note"])
        for index, (file, text, kind) in enumerate(rows):
            if kind == "ok":
                noise_image(index).save(directory / file)
            elif kind == "corrupt":
                (directory / file).write_bytes(b"this is not a PNG")
            writer.writerow([file, text, "US", "made in the test"])
    return directory
