"""Evaluation of plate readers for LP-LLM: data loading with per-file exclusion reports, label normalisation,
metrics (pure Python; also served as the local `evaluate` module `plate_metrics.py`, at `PLATE_METRICS_SCRIPT`),
the reader adapter for LP-LLM and stock Qwen3-VL, efficiency measurements, Markdown tables and PNG plots.
`lpllm eval` (`lpllm.cli.evaluate`) is the command line.

Importing this package loads no model and touches no file; each submodule holds one concern:

- `normalization`: `PlateNormalizer`, the explicit label normalisation rules.
- `metrics`: accuracy, CER, NED, partial matches, per-position and length accuracy, confusions, breakdowns.
- `data`: `load_eval_data` for `dataset_scripts.build` outputs and folders/CSVs of crops.
- `recognizers`: `VisionLanguageRecognizer` (`modeling_lpllm.read_plates`, the pipeline's reader) and its loader
  for LP-LLM / Qwen3-VL checkpoints.
- `calibration`: how far a reader's plate scores can be trusted: ECE, reliability bins, the risk-coverage curve, the
  abstain threshold (numpy alone).
- `evaluation`: `evaluate_recognizer`, one reader over one dataset -> the `results.json` payload;
  `evaluate_to_report` also writes the report directory (eval.py and a training run's final evaluation).
- `efficiency`, `tables`, `plots`, `report`, `outputs`: measurements, Markdown tables, figures, report files,
  atomic file writing.
"""

from pathlib import Path

from .metrics import compute_plate_metrics
from .normalization import PlateNormalizer


# `evaluate.load(str(PLATE_METRICS_SCRIPT))`: the metrics as a local `evaluate` module, from a checkout or a wheel.
PLATE_METRICS_SCRIPT = Path(__file__).with_name("plate_metrics.py")

__all__ = ["PLATE_METRICS_SCRIPT", "PlateNormalizer", "compute_plate_metrics"]
