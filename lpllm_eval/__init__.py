"""Evaluation of plate readers for LP-LLM: data loading with per-file exclusion reports, label normalisation,
metrics (pure Python; also served as the local `evaluate` module in `lpllm_metrics/`), readers for LP-LLM, stock
Qwen3-VL and the baselines, efficiency measurements, Markdown tables and PNG plots. `eval.py` is the command line.

Importing this package loads no model and touches no file; each submodule holds one concern:

- `normalization`: `PlateNormalizer`, the explicit label normalisation rules.
- `metrics`: accuracy, CER, NED, partial matches, per-position and length accuracy, confusions, breakdowns.
- `data`: `load_eval_data` for `dataset_scripts.build` outputs and folders/CSVs of crops.
- `recognizers`: `load_recognizer` for LP-LLM / Qwen3-VL checkpoints and baseline checkpoints.
- `evaluation`: `evaluate_recognizer`, one reader over one dataset -> the `results.json` payload.
- `efficiency`, `tables`, `plots`, `report`, `outputs`: measurements, Markdown tables, figures, report files,
  atomic file writing.
"""

from .metrics import compute_plate_metrics
from .normalization import PlateNormalizer


__all__ = ["PlateNormalizer", "compute_plate_metrics"]
