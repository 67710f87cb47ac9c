"""LP-LLM: reading degraded license plates end to end with Qwen3-VL and a Character-Aware Multimodal Reasoning Module.

The model itself is `modeling_lpllm` (flat, saved beside checkpoints as remote code) and the data builders are
`dataset_scripts`; this package holds the rest, each layer importing only those below it:

- `lpllm.evaluation`: metrics, evaluation data, the reader adapter, reports, tables, plots.
- `lpllm.training`: TRL SFT + PEFT training (`lpllm.training.sft.main`).
- `lpllm.baselines`: CRNN-CTC and LPRNet reference readers, and the fast-plate-ocr export.
- `lpllm.cli`: the `lpllm` command (`lpllm data | train | eval | train-baseline | export-fast-plate-ocr`).

Importing it loads no model and touches no file.
"""

__version__ = "0.1.0"
