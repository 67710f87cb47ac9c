"""Reads the real crop sets (e.g. `../shared/realdata`, evaluation only) after training, so every run states how
its synthetic training transfers to real plates."""

from pathlib import Path

from transformers.utils import logging

from lpllm.evaluation.data import LABELS_FILE, load_eval_data
from lpllm.evaluation.evaluation import read_all
from lpllm.evaluation.normalization import PlateNormalizer
from lpllm.evaluation.recognizers import VisionLanguageRecognizer

from .trainer import evaluation_entry


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
        readings, _ = read_all(reader, data.samples, batch_size)
        predictions = [normalizer(text, region=sample.region) for text, sample in zip(readings, data.samples)]
        labels = [sample.label for sample in data.samples]
        evaluations.append(evaluation_entry(f"real crops: {set_dir.name}", predictions, labels))
    return evaluations
