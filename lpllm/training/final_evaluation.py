"""The final evaluation of a training run: the saved model, loaded as `eval.py` loads it, reads the test split and
every real crop set (e.g. `../shared/realdata`, evaluation only) with eval.py's defaults, into eval.py report
directories under `OUT/final_eval/` (with several training sources, each one's test split into its own report). The
model card takes its numbers from them, and `eval.py --compare` reuses them instead of reading the same plates
again."""

import json
from collections.abc import Sequence
from pathlib import Path

from transformers.utils import logging

from lpllm.evaluation.data import LABELS_FILE, load_eval_data
from lpllm.evaluation.evaluation import evaluate_to_report, load_plate_metric
from lpllm.evaluation.normalization import PlateNormalizer
from lpllm.evaluation.recognizers import load_vision_language_recognizer
from lpllm.evaluation.outputs import atomic_write_text
from lpllm.evaluation.score_calibration import SCORE_CALIBRATION_FILE, calibrate_scores
from modeling_lpllm import DEFAULT_PLATE_CHARSET

from .data import PlateSource


logger = logging.get_logger(__name__)

FINAL_EVAL_DIR = "final_eval"
# A folder's crops are one split; eval.py passes its default split, which the folder ignores.
FOLDER_SPLIT = "test"


def final_evaluation_sets(
    sources: Sequence[PlateSource], split: str | None, realdata_dir: str | None, name_by_source: bool = False
) -> list[tuple[str, str, str, str]]:
    """`(card name, report directory name, dataset path, split)` of each set the run is evaluated on: `split` of each
    local dataset in `sources` (when given), then each crop set (a sub-folder with a labels.csv) of `realdata_dir`
    (when given and present).

    Args:
        sources: The training sources whose `split` is read.
        name_by_source: Name a source's report `<label>_<split>` (a run with several sources) instead of `<split>`.
    """
    sets = []
    for source in sources if split else ():
        if source.local_dir is not None:
            report_name = f"{source.label}_{split}" if name_by_source else split
            sets.append((f"{source.name} [{split}]", report_name, source.local_dir, split))
        else:
            logger.warning(
                f"{source.name} is not a local dataset directory: its {split!r} split is not evaluated after "
                "training (save it with `save_to_disk` and run eval.py on it)."
            )
    if realdata_dir:
        root = Path(realdata_dir)
        if not root.is_dir():
            logger.warning(f"No real crops at {root}; skipping the real-data evaluation.")
        else:
            for set_dir in sorted(path for path in root.iterdir() if (path / LABELS_FILE).is_file()):
                sets.append((f"real crops: {set_dir.name}", f"realdata_{set_dir.name}", str(set_dir), FOLDER_SPLIT))
    return sets


def final_evaluations(
    model_dir: str | Path,
    output_dir: str | Path,
    sources: Sequence[PlateSource],
    split: str | None,
    realdata_dir: str | None,
    device,
    command: list[str] | None = None,
    name_by_source: bool = False,
    charset: str = DEFAULT_PLATE_CHARSET,
) -> list[dict]:
    """Evaluates the saved model in `model_dir` on `final_evaluation_sets(...)` into
    `output_dir/final_eval/<split>/` (`<label>_<split>/` with `name_by_source`) and
    `output_dir/final_eval/realdata_<set>/` (eval.py reports with `results.json`; earlier ones replaced). Labels with
    characters outside `charset` are left out, as eval.py's `--charset` leaves them out (training widens eval.py's
    default with the characters its labels write).

    Returns:
        One `{name, num_samples, accuracy, cer}` per set, for the model card and `eval_results.json`.
    """
    sets = final_evaluation_sets(sources, split, realdata_dir, name_by_source)
    if not sets:
        return []
    recognizer = load_vision_language_recognizer(str(model_dir), device)
    metric, normalizer = load_plate_metric(), PlateNormalizer()
    evaluations = []
    for name, report_name, path, set_split in sets:
        data = load_eval_data(path, set_split, normalizer, charset)
        if not data.samples:
            logger.warning(f"{name}: no crop can be evaluated ({len(data.excluded)} excluded); skipped.")
            continue
        report_dir = Path(output_dir) / FINAL_EVAL_DIR / report_name
        results = evaluate_to_report(recognizer, data, report_dir, metric, normalizer, charset=charset, command=command)
        logger.info(f"{name}: report in {report_dir}")
        evaluation = {"name": name, **{key: results[key] for key in ("num_samples", "accuracy", "cer")}}
        calibration = results.get("calibration")
        if calibration:
            evaluation["ece"] = calibration["ece"]
            evaluation["accuracy_at_coverage"] = calibration["accuracy_at_coverage"]
            evaluation["abstain"] = calibration["abstain"]
        evaluations.append(evaluation)
    return evaluations


def calibrate_saved_model(
    model_dir: str | Path,
    sources: Sequence[PlateSource],
    split: str | None,
    device,
    charset: str = DEFAULT_PLATE_CHARSET,
    samples_per_source: int = 500,
) -> dict | None:
    """Fits the saved model's score temperature, score map and abstain threshold on the first `samples_per_source`
    plates of `split` (the validation split) of each local source (`lpllm.evaluation.score_calibration`), and saves
    them in its processor, with the fit in `score_calibration.json`, before the final evaluation reads it.

    Returns:
        The fit (`ScoreCalibration.to_dict()`), or None when no source has plates in `split`.
    """
    normalizer = PlateNormalizer()
    samples = []
    for source in sources if split else ():
        if source.local_dir is not None:
            data = load_eval_data(source.local_dir, split, normalizer, charset, max_samples=samples_per_source)
            samples.extend(data.samples)
    if not samples:
        logger.warning(f"No {split!r} plates to calibrate the scores on: the model keeps its own probabilities.")
        return None
    recognizer = load_vision_language_recognizer(str(model_dir), device)
    fit = calibrate_scores(recognizer, samples, normalizer).to_dict()
    recognizer.processor.save_pretrained(str(model_dir))
    payload = json.dumps({**fit, "split": split, "sources": [source.name for source in sources]}, indent=2)
    atomic_write_text(Path(model_dir) / SCORE_CALIBRATION_FILE, payload + "\n")
    return fit
