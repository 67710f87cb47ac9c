"""Reads the real crop sets (e.g. `../shared/realdata`, evaluation only) after training, so every run states how
its synthetic training transfers to real plates."""

from pathlib import Path

from tqdm.auto import tqdm
from transformers.utils import logging

from lpllm_eval.data import LABELS_FILE, load_eval_data
from lpllm_eval.metrics import summary_metrics
from lpllm_eval.normalization import PlateNormalizer
from lpllm_eval.recognizers import VisionLanguageRecognizer


logger = logging.get_logger(__name__)


def realdata_evaluations(model, processor, realdata_dir, batch_size: int, max_new_tokens: int, device) -> list[dict]:
    """One `{name, num_samples, accuracy, cer}` per crop set (a sub-folder with a labels.csv) of `realdata_dir`;
    none when the folder is absent."""
    root = Path(realdata_dir)
    if not root.is_dir():
        logger.warning(f"No real crops at {root}; skipping the real-data evaluation.")
        return []
    reader = VisionLanguageRecognizer(model, processor, name="final", device=device, max_new_tokens=max_new_tokens)
    # Labels come normalised (case, separators, region conventions such as O/0 on US plates); readings get the same.
    normalizer = PlateNormalizer()
    evaluations = []
    for set_dir in sorted(path for path in root.iterdir() if (path / LABELS_FILE).is_file()):
        data = load_eval_data(set_dir)
        if data.excluded:
            logger.warning(f"{set_dir.name}: {len(data.excluded)} crops excluded (unreadable or label outside charset).")
        predictions = []
        for start in tqdm(range(0, len(data.samples), batch_size), desc=f"reading {set_dir.name}", leave=False):
            batch = data.samples[start : start + batch_size]
            readings = reader.read([sample.images for sample in batch])
            predictions.extend(normalizer(text, region=sample.region) for text, sample in zip(readings, batch))
        summary = summary_metrics(predictions, [sample.label for sample in data.samples])
        evaluations.append(
            {"name": f"real crops: {set_dir.name}", "num_samples": summary["num_samples"],
             "accuracy": summary["accuracy"], "cer": summary["cer"]}
        )
    return evaluations
