"""Trains a CTC baseline (CRNN or LPRNet) on the TRAIN split of a dataset written by `dataset_scripts.build`, within
a stated time budget, and saves a checkpoint that eval.py evaluates:

    python -m lpllm.baselines.train --arch crnn --dataset_name data/ccpd_blur --output_dir baselines_runs/crnn \
        --max_minutes 20
    python -m lpllm.baselines.train --arch lprnet --dataset_name data/ccpd_blur --output_dir baselines_runs/lprnet \
        --max_minutes 20
    python eval.py --compare runs/lpllm baselines_runs/crnn baselines_runs/lprnet --dataset_name data/ccpd_blur \
        --output_dir reports/table1

`--deskew_max_degrees 20 --rectify_plate` prepares the crops as LP-LLM's processor does, and `--augment_quad_jitter
0.05 0.2 --augment_shadow 0.3 0.6 --augment_warmup_epochs 1` augments them as LP-LLM's CPU recipe does (off by
default: the baseline of the comparisons trains on the plain crops).

Folders of crops (`labels.csv`, e.g. ../shared/realdata) have no train split and are refused: they are for
evaluation only. The budget actually used (steps, epochs, minutes, device) is saved in the checkpoint and shown in
every report that includes the model. An existing non-empty output dir is refused unless `--overwrite` is given.
"""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import datasets
import torch
from trl import TrlParser

from lpllm.evaluation.data import LABELS_FILE, load_eval_data
from lpllm.evaluation.normalization import PlateNormalizer
from lpllm.evaluation.outputs import prepare_output_dir
from lpllm.evaluation.recognizers import pick_device
from lpllm.training.arguments import check_augment_quad_jitter, check_augment_shadow
from lpllm.training.augmentation import plate_augmentation
from modeling_lpllm import DEFAULT_PLATE_CHARSET
from modeling_lpllm.deskew import check_max_degrees

from .checkpoint import ARCHITECTURES, BaselineConfig, build_model, save_baseline
from .ctc import CTCCodec
from .training import TrainingSettings, sequence_accuracy, train_ctc


logger = logging.getLogger("lpllm.baselines.train")


@dataclass
class BaselineTrainingArguments:
    """Arguments of `lpllm train-baseline` / `python -m lpllm.baselines.train`."""

    arch: Literal[tuple(sorted(ARCHITECTURES))] = field(metadata={"help": "The reader to train."})
    dataset_name: str = field(metadata={"help": "A dataset_scripts.build output dir with a train split."})
    output_dir: str = field(metadata={"help": "Where the checkpoint is saved."})
    max_minutes: float = field(default=10.0, metadata={"help": "Wall-clock training budget."})
    max_steps: int | None = field(
        default=None, metadata={"help": "Step budget, whichever of the budgets comes first (None: no step budget)."}
    )
    max_epochs: int | None = field(
        default=None, metadata={"help": "Epoch budget, whichever of the budgets comes first (None: no epoch budget)."}
    )
    batch_size: int = field(default=64, metadata={"help": "Training batch size."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    seed: int = field(default=0, metadata={"help": "Seeds the weights, the batches and the augmentations."})
    charset: str = field(default=DEFAULT_PLATE_CHARSET, metadata={"help": "Output characters of the reader."})
    deskew_max_degrees: float = field(
        default=0.0,
        metadata={"help": "Level crops tilted by up to this many degrees before resizing, in training and (saved with "
        "the checkpoint) in reading: LP-LLM's processor option, for a like-for-like comparison. 0: off."},
    )
    rectify_plate: bool = field(
        default=False,
        metadata={"help": "Trim crops to the plate and undo its keystone before resizing, after any levelling, in "
        "training and (saved with the checkpoint) in reading: LP-LLM's processor option, for a like-for-like "
        "comparison."},
    )
    augment_quad_jitter: list[float] | None = field(
        default=None,
        metadata={"help": "`H V` (e.g. `0.05 0.2`): every time a training image is drawn, move each corner of its "
        "levelled crop by up to H of its width and V of its height and resample (LP-LLM's `augment_quad_jitter`). "
        "None: off."},
    )
    augment_shadow: list[float] | None = field(
        default=None,
        metadata={"help": "`P DARKENING` (e.g. `0.3 0.6`): with probability P, darken a random polygon of a training "
        "crop by up to DARKENING (LP-LLM's `augment_shadow`). None: off."},
    )
    augment_warmup_epochs: int = field(
        default=0,
        metadata={"help": "The augmentations start at zero strength in the first epoch and reach full strength at "
        "this epoch (LP-LLM's `augment_warmup_epochs`). 0: full strength from the start."},
    )
    validation_split: str = field(
        default="validation", metadata={"help": "Split for the end-of-training accuracy check, when present."}
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training rows (None: all)."}
    )
    device: str | None = field(
        default=None, metadata={"help": "torch device (None: cuda if available, else cpu)."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Write into a non-empty output dir."})
    log_level: str = field(default="INFO", metadata={"help": "Logging level (DEBUG, INFO, WARNING, ...)."})

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"`arch` must be one of {', '.join(sorted(ARCHITECTURES))}, got {self.arch!r}.")
        for name in ("max_steps", "max_epochs", "batch_size", "max_samples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
        for name in ("max_minutes", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)!r}.")
        self.deskew_max_degrees = check_max_degrees(self.deskew_max_degrees)
        self.augment_quad_jitter = check_augment_quad_jitter(self.augment_quad_jitter)
        self.augment_shadow = check_augment_shadow(self.augment_shadow)
        if isinstance(self.augment_warmup_epochs, bool) or self.augment_warmup_epochs < 0:
            raise ValueError(f"`augment_warmup_epochs` must be an integer >= 0, got {self.augment_warmup_epochs!r}.")
        if self.augment_warmup_epochs and self.augment_quad_jitter is None and self.augment_shadow is None:
            raise ValueError(
                "`augment_warmup_epochs` needs an augmentation (`augment_quad_jitter` or `augment_shadow`)."
            )
        if not isinstance(logging.getLevelName(str(self.log_level).upper()), int):
            raise ValueError(f"`log_level` must be a logging level such as INFO or WARNING, got {self.log_level!r}.")


def parse_arguments(argv: list[str] | None = None) -> BaselineTrainingArguments:
    """The command line (and any `--config` YAML file) as `BaselineTrainingArguments`."""
    description = (
        "Train a CTC reference reader (CRNN or LPRNet) on the train split of a dataset_scripts.build dataset, within a "
        "stated budget. Options also come from a YAML file: --config FILE.yaml."
    )
    (args,) = TrlParser(BaselineTrainingArguments, description=description).parse_args_and_config(argv)
    return args


def _check_trainable_dataset(path: Path) -> list[str]:
    """The splits of a saved DatasetDict that has a train split; a ValueError otherwise."""
    if path.suffix.lower() == ".csv" or (path / LABELS_FILE).is_file():
        raise ValueError(
            f"{path} is a folder/CSV of crops with no train split. Baselines train on the train split of a"
            " dataset_scripts.build output only; crop folders such as ../shared/realdata are for evaluation."
        )
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"{path} is not a dataset saved by dataset_scripts.build: {error}") from error
    if not isinstance(loaded, datasets.DatasetDict) or "train" not in loaded:
        splits = sorted(loaded) if isinstance(loaded, datasets.DatasetDict) else "a single unsplit dataset"
        raise ValueError(f"{path} has no 'train' split ({splits}); baselines train on the train split only.")
    return sorted(loaded)


def training_augmentation(args: BaselineTrainingArguments, input_size: tuple[int, int]):
    """`(augment, description)` from the `augment_*` options: a shadow (if any) then the corner jitter, which
    resamples the levelled crop to `input_size`; `(None, "none")` when both are off."""
    quad_jitter, shadow = args.augment_quad_jitter, args.augment_shadow
    if quad_jitter is None and shadow is None:
        return None, "none"
    parts = []
    if shadow is not None:
        parts.append("cast shadow {:g},{:g}".format(*shadow))
    if quad_jitter is not None:
        parts.append("corner jitter {:g},{:g}".format(*quad_jitter))
    if args.augment_warmup_epochs:
        parts.append(f"full strength from epoch {args.augment_warmup_epochs}")
    return plate_augmentation(quad_jitter, shadow, input_size), "; ".join(parts)


def main(argv: list[str] | None = None) -> Path:
    args = parse_arguments(argv)
    augment, augmentation = training_augmentation(args, ARCHITECTURES[args.arch].input_size)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    dataset_path = Path(args.dataset_name)
    splits = _check_trainable_dataset(dataset_path)
    output_dir = prepare_output_dir(args.output_dir, overwrite=args.overwrite)
    device = pick_device(args.device)
    torch.manual_seed(args.seed)

    # The same loader and normalisation as evaluation, so train and test labels mean the same thing.
    normalizer = PlateNormalizer()
    train = load_eval_data(dataset_path, "train", normalizer, args.charset, args.max_samples)
    validation = None
    if args.validation_split in splits:
        validation = load_eval_data(dataset_path, args.validation_split, normalizer, args.charset)
    config = BaselineConfig(
        arch=args.arch,
        charset=args.charset,
        deskew_max_degrees=args.deskew_max_degrees,
        rectify_plate=args.rectify_plate,
    )
    model = build_model(config)
    codec = CTCCodec(args.charset)
    settings = TrainingSettings(
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        max_epochs=args.max_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        augment=augment,
        augment_warmup_epochs=args.augment_warmup_epochs,
    )
    logger.info("Training %s on %d samples of %s [train] on %s", args.arch, len(train.samples), train.name, device)
    summary = train_ctc(model, codec, train.samples, config.crop_preparation, device, settings)
    validation_accuracy = None
    if validation is not None:
        validation_accuracy = sequence_accuracy(model, codec, validation.samples, config.crop_preparation, device)
        logger.info("Validation exact-match accuracy: %s", validation_accuracy)
    config.training = {
        "dataset": str(dataset_path),
        "split": "train",
        "num_train_samples": len(train.samples),
        "num_train_excluded": len(train.excluded),
        **summary,
        "max_minutes": args.max_minutes,
        "max_steps": args.max_steps,
        "max_epochs": args.max_epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "augmentation": augmentation,
        "device": str(device),
        "validation_split": args.validation_split if validation is not None else None,
        "validation_accuracy": validation_accuracy,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_baseline(output_dir, model, config)
    logger.info("Saved %s checkpoint to %s", args.arch, output_dir)
    return output_dir


if __name__ == "__main__":
    main()
