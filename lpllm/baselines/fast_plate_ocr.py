"""fast-plate-ocr as a baseline, trained with its own CLI on a CSV export of the same training split (optional:
`pip install "fast-plate-ocr[train]"` to train, `pip install "fast-plate-ocr[onnx]"` to evaluate).

1. Export the train and validation splits in its annotation format, with a plate config matching our labels:

       lpllm export-fast-plate-ocr --dataset_name data/ccpd_blur --output_dir fpo_data

2. Train and export to ONNX with its CLI (`fpo_data/TRAINING.md` has the exact commands; the model config YAML comes
   from fast-plate-ocr's repository, e.g. `models/cct_s_v2.yaml`); the epoch budget is yours to state.
3. Evaluate the run directory (it holds `best.onnx`, `plate_config.yaml` and `hyper_params.json`):

       python eval.py --model_name_or_path fpo_runs/<timestamp> --dataset_name data/ccpd_blur --output_dir reports/fpo
"""

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from trl import TrlParser

from lpllm.evaluation.data import load_eval_data
from lpllm.evaluation.normalization import PlateNormalizer
from lpllm.evaluation.outputs import atomic_write_bytes, atomic_write_text, prepare_output_dir
from modeling_lpllm import DEFAULT_PLATE_CHARSET

from .onnx_models import onnx_parameter_counts


logger = logging.getLogger(__name__)

PLATE_CONFIG_FILE = "plate_config.yaml"
ANNOTATIONS_FILE = "annotations.csv"
PAD_CHAR = "_"


def plate_config_yaml(alphabet: str, max_plate_slots: int, img_height: int, img_width: int) -> str:
    """fast-plate-ocr's plate config (`PlateConfig`) as YAML; `alphabet` must not contain the pad character."""
    if PAD_CHAR in alphabet:
        raise ValueError(f"The alphabet must not contain fast-plate-ocr's pad character {PAD_CHAR!r}.")
    full = alphabet + PAD_CHAR
    return (
        "# Written by baselines.fast_plate_ocr from the training split's labels.\n"
        f"max_plate_slots: {max_plate_slots}\n"
        f"alphabet: {json.dumps(full, ensure_ascii=False)}\n"
        f"pad_char: {json.dumps(PAD_CHAR)}\n"
        f"img_height: {img_height}\n"
        f"img_width: {img_width}\n"
        "keep_aspect_ratio: false\n"
        "image_color_mode: rgb\n"
    )


def export_split(samples, split_dir: Path) -> int:
    """Writes every frame of every sample as a PNG plus `annotations.csv` (`image_path,plate_text`); returns the
    number of rows."""
    rows = []
    for index, sample in enumerate(samples):
        for frame, image in enumerate(sample.images):
            relative = f"images/{index:07d}_{frame}.png"
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            atomic_write_bytes(split_dir / relative, buffer.getvalue())
            rows.append({"image_path": relative, "plate_text": sample.label})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["image_path", "plate_text"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(split_dir / ANNOTATIONS_FILE, text.getvalue())
    return len(rows)


def export_dataset(
    dataset_name: str,
    output_dir: str,
    charset: str = DEFAULT_PLATE_CHARSET,
    img_height: int = 64,
    img_width: int = 128,
    overwrite: bool = False,
) -> Path:
    """Exports the train (and, when present, validation) split for fast-plate-ocr's CLI. Crop folders without a
    train split are refused: they are evaluation data."""
    from .train import _check_trainable_dataset  # one rule for what baselines may train on

    dataset_path = Path(dataset_name)
    splits = _check_trainable_dataset(dataset_path)
    output = prepare_output_dir(output_dir, overwrite=overwrite)
    normalizer = PlateNormalizer()
    counts, labels = {}, []
    for split in ("train", "validation"):
        if split not in splits:
            continue
        data = load_eval_data(dataset_path, split, normalizer, charset)
        counts[split] = export_split(data.samples, output / split)
        labels += [sample.label for sample in data.samples]
    alphabet = "".join(sorted(set("".join(labels)))) or charset
    max_slots = max((len(label) for label in labels), default=8)
    atomic_write_text(output / PLATE_CONFIG_FILE, plate_config_yaml(alphabet, max_slots, img_height, img_width))
    validation = output / ("validation" if "validation" in counts else "train") / ANNOTATIONS_FILE
    atomic_write_text(
        output / "TRAINING.md",
        "# Training fast-plate-ocr on this export\n\n"
        f"Rows: {counts}. Exported from `{dataset_path}` (train split"
        + (", validation split" if "validation" in counts else "; no validation split, train used for validation")
        + ').\n\n```bash\npip install "fast-plate-ocr[train,onnx]"\n'
        f"fast-plate-ocr train --model-config-file MODEL_CONFIG.yaml --plate-config-file {output / PLATE_CONFIG_FILE}"
        f" --annotations {output / 'train' / ANNOTATIONS_FILE} --val-annotations {validation}"
        " --epochs EPOCHS --batch-size 64 --output-dir fpo_runs\n"
        "fast-plate-ocr export --model fpo_runs/<timestamp>/best.keras --format onnx"
        f" --plate-config-file {output / PLATE_CONFIG_FILE}\n```\n\n"
        "MODEL_CONFIG.yaml: one of fast-plate-ocr's model configs (its repository's `models/` folder). State EPOCHS"
        " and the wall time in the report; `hyper_params.json` in the run directory records them.\n",
    )
    logger.info("Exported %s to %s", counts, output)
    return output


class FastPlateOCRRecognizer:
    """Reads plates with an ONNX model trained and exported by fast-plate-ocr's CLI (needs `fast-plate-ocr[onnx]`).
    A multi-frame sample is read from its first frame."""

    paradigm = "CNN/ViT multi-head classification (fast-plate-ocr)"

    def __init__(self, recognizer, directory: Path, onnx_file: Path):
        import torch

        self.recognizer = recognizer
        self.name = directory.name
        self.path = str(directory)
        self.onnx_file = onnx_file
        self.device = torch.device("cpu")
        self.grayscale = recognizer.config.image_color_mode == "grayscale"

    @classmethod
    def from_pretrained(cls, directory) -> "FastPlateOCRRecognizer":
        directory = Path(directory)
        onnx_files = sorted(directory.glob("*.onnx"), key=lambda path: (path.name != "best.onnx", path.name))
        if not onnx_files:
            raise ValueError(
                f"{directory} has a {PLATE_CONFIG_FILE} but no .onnx model: train with fast-plate-ocr's CLI and export"
                " with `fast-plate-ocr export --format onnx` first (see TRAINING.md of the export)."
            )
        try:
            from fast_plate_ocr import LicensePlateRecognizer
        except ImportError as error:
            raise ImportError(
                'Evaluating a fast-plate-ocr model needs `pip install "fast-plate-ocr[onnx]"`.'
            ) from error
        recognizer = LicensePlateRecognizer(
            onnx_model_path=onnx_files[0], plate_config_path=directory / PLATE_CONFIG_FILE, device="cpu"
        )
        return cls(recognizer, directory, onnx_files[0])

    def parameter_counts(self) -> dict | None:
        return onnx_parameter_counts(self.onnx_file)

    def read(self, batch: list[list], prompts=None) -> list[str]:
        frames = [
            np.asarray(images[0].convert("L") if self.grayscale else images[0].convert("RGB"), dtype=np.uint8)
            for images in batch
        ]
        predictions = self.recognizer.run(frames)
        return [getattr(prediction, "plate", prediction) for prediction in predictions]

    def describe(self) -> dict:
        description = {"model_type": "fast-plate-ocr", "onnx_file": self.onnx_file.name}
        hyper_params = Path(self.path) / "hyper_params.json"
        if hyper_params.is_file():
            params = json.loads(hyper_params.read_text(encoding="utf-8"))
            description["training"] = {
                key: params.get(key) for key in ("epochs", "batch_size", "lr", "annotations", "model_config_file")
            }
        return description


@dataclass
class ExportArguments:
    """Arguments of `lpllm export-fast-plate-ocr` / `python -m lpllm.baselines.fast_plate_ocr`."""

    dataset_name: str = field(metadata={"help": "A dataset_scripts.build output dir with a train split."})
    output_dir: str = field(metadata={"help": "Where the export (images, annotations.csv, plate config) goes."})
    charset: str = field(
        default=DEFAULT_PLATE_CHARSET, metadata={"help": "Allowed label characters; rows with others are left out."}
    )
    img_height: int = field(default=64, metadata={"help": "Input height of the fast-plate-ocr model."})
    img_width: int = field(default=128, metadata={"help": "Input width of the fast-plate-ocr model."})
    overwrite: bool = field(default=False, metadata={"help": "Write into a non-empty output dir."})

    def __post_init__(self):
        for name in ("img_height", "img_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive number of pixels, got {value!r}.")
        if PAD_CHAR in self.charset:
            raise ValueError(f"`charset` must not contain fast-plate-ocr's pad character {PAD_CHAR!r}.")


def main(argv: list[str] | None = None) -> Path:
    description = (
        "Export a dataset's train/validation splits for fast-plate-ocr's own CLI. Options also come from a YAML "
        "file: --config FILE.yaml."
    )
    (args,) = TrlParser(ExportArguments, description=description).parse_args_and_config(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    return export_dataset(
        args.dataset_name, args.output_dir, args.charset, args.img_height, args.img_width, args.overwrite
    )


if __name__ == "__main__":
    main()
