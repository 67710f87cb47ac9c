"""`lpllm calibrate`: fits a saved LP-LLM model's score temperature, score map and abstain threshold on validation
plates (`lpllm.evaluation.score_calibration`), the step training runs after it ends, for a model trained before it
existed or to calibrate on other plates (a region's own validation crops).

    lpllm calibrate --model runs/lpllm/final --dataset_name data/plates --output_dir runs/lpllm/calibrated
    lpllm calibrate --model runs/lpllm/final --dataset_name data/plates crops_uz/ --in_place

Several datasets pool their plates (the first `samples_per_source` of each one's `split`). A crops folder with a
labels.csv is split as training splits it (built once into the same cache, `lpllm.training.data`), so its
`validation` split holds the crops a model trained on the folder did not train on. The result is the model folder
with `score_temperature`, `score_map` and `abstain_threshold` in its `processor_config.json` and the fit in
`score_calibration.json`: a copy in `--output_dir`, or the model's own folder with `--in_place` (nothing else in it
changes). Never calibrate on the plates you report results on.
"""

import json
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from ..evaluation.data import load_eval_data
from ..evaluation.normalization import PlateNormalizer
from ..evaluation.outputs import atomic_write_text
from ..evaluation.recognizers import load_vision_language_recognizer, pick_device
from ..evaluation.score_calibration import DEFAULT_TARGET_ACCURACY, SCORE_CALIBRATION_FILE, calibrate_scores
from ..training.data import build_crops_source, is_crops_input

logger = logging.getLogger("calibrate")


@dataclass
class CalibrateArguments:
    """Arguments of `lpllm calibrate`."""

    model: str = field(metadata={"help": "A saved LP-LLM model folder (e.g. runs/lpllm/final)."})
    dataset_name: list[str] = field(
        metadata={"help": "Datasets whose plates the scores are fitted on: dataset_scripts.build outputs or crops "
        "folders with labels.csv (space separated)."}
    )
    split: str = field(default="validation", metadata={"help": "The split read of each saved dataset."})
    samples_per_source: int = field(default=500, metadata={"help": "Plates read from each dataset (the first ones)."})
    target_accuracy: float = field(
        default=DEFAULT_TARGET_ACCURACY,
        metadata={"help": "The accuracy the accepted plates must reach at the saved abstain threshold."},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Write the calibrated model here (a copy of `model`); must not exist."}
    )
    in_place: bool = field(default=False, metadata={"help": "Calibrate `model`'s own folder instead of a copy."})
    batch_size: int = field(default=8, metadata={"help": "Plates read together."})
    device: str | None = field(default=None, metadata={"help": "torch device (None: cuda if available, else cpu)."})
    log_level: str = field(default="WARNING", metadata={"help": "Logging level (DEBUG, INFO, WARNING, ...)."})

    def __post_init__(self):
        model = Path(self.model)
        if not (model / "config.json").is_file() or not (model / "processor_config.json").is_file():
            raise ValueError(
                f"`model` {self.model!r} is not a saved LP-LLM folder (config.json and processor_config.json)."
            )
        if (self.output_dir is None) == (not self.in_place):
            raise ValueError("Give either `output_dir` (a calibrated copy) or `in_place` (change `model` itself).")
        if self.output_dir is not None and Path(self.output_dir).exists():
            raise FileExistsError(f"`output_dir` {self.output_dir!r} exists: choose a new folder.")
        for name in ("samples_per_source", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a whole number >= 1; got {value!r}.")
        if not 0.0 < self.target_accuracy <= 1.0:
            raise ValueError(f"`target_accuracy` must be in (0, 1]; got {self.target_accuracy!r}.")


def main(argv: list[str] | None = None) -> Path:
    """Runs the command line; returns the calibrated model's folder."""
    (args,) = TrlParser(CalibrateArguments, description=__doc__.split("\n\n")[0]).parse_args_and_config(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    normalizer = PlateNormalizer()
    # Every dataset loads (and is checked) before the model does.
    samples = []
    for name in args.dataset_name:
        path = build_crops_source(name) if is_crops_input(name) else name
        data = load_eval_data(path, args.split, normalizer, charset=None, max_samples=args.samples_per_source)
        if not data.samples:
            raise ValueError(f"{name} [{args.split}] has no plate to calibrate on ({len(data.excluded)} excluded).")
        samples.extend(data.samples)
    recognizer = load_vision_language_recognizer(args.model, pick_device(args.device))
    fit = calibrate_scores(recognizer, samples, normalizer, args.batch_size, args.target_accuracy)
    destination = Path(args.model)
    if args.output_dir is not None:
        staging = Path(args.output_dir).with_name(Path(args.output_dir).name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(args.model, staging, ignore=shutil.ignore_patterns("checkpoint-*", "final_eval"))
        recognizer.processor.save_pretrained(str(staging))
        staging.rename(args.output_dir)
        destination = Path(args.output_dir)
    else:
        recognizer.processor.save_pretrained(str(destination))
    record = {**fit.to_dict(), "split": args.split, "sources": list(args.dataset_name)}
    atomic_write_text(destination / SCORE_CALIBRATION_FILE, json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return destination


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
