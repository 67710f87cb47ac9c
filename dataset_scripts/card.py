"""The dataset card (README.md) written beside every built dataset and pushed with it to the Hub."""

import json

import yaml

from .splits import SPLITS


def dataset_card(summary: dict, parquet: bool) -> str:
    """A Hub dataset card for a build described by `summary` (the content of summary.json)."""
    metadata = {
        "task_categories": ["image-to-text"],
        "tags": ["license-plate-recognition", "lp-llm", summary["source"]],
        "pretty_name": f"LP-LLM {summary['source']} plates",
    }
    if parquet:
        metadata["configs"] = [
            {
                "config_name": "default",
                "data_files": [
                    {"split": split, "path": f"data/{split}-*.parquet"}
                    for split in SPLITS
                    if summary["splits"].get(split)
                ],
            }
        ]
    counts = "\n".join(f"| {split} | {summary['splits'].get(split, 0)} |" for split in SPLITS)
    regions = ", ".join(f"{code}: {count}" for code, count in summary["regions"].items()) or "none"
    degradations = ", ".join(f"{name}: {count}" for name, count in summary["degradations"].items()) or "none"
    return f"""---
{yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip()}
---

# LP-LLM {summary["source"]} plates

License-plate crops converted by LP-LLM's `dataset_scripts` (source `{summary["source"]}`, seed {summary["seed"]}),
in the conversational prompt-completion form that `train_sft.py` and `eval.py` read.

| split | samples |
|---|---|
{counts}

Regions: {regions}.
Degradations: {degradations}.
Inputs skipped: {summary["skipped"]} ({json.dumps(summary["skip_reasons"], ensure_ascii=False)}).

## Columns

- `images`: the plate image(s): one crop, or N frames of the same plate for multi-frame samples.
- `prompt`: the user turn: one `{{"type": "image"}}` per image, then the instruction.
- `completion`: the assistant turn: the plate text.
- `text`: the normalised plate text (upper case, no spaces or dashes).
- `region`, `source`, `subset`: where the plate is from (`subset`: source folder, vehicle type or synthetic layout).
- `num_frames`: the number of images.
- `degradation`, `severity`, `degradation_params`: for synthetic data, the degradation applied, its level
  (1 mild ... 5 severe, 0 none) and its parameters; `real` and -1 for real data.

## Licence

Real plates keep the licence and terms of use of the dataset they were converted from; check them before
sharing. Synthetic plates are rendered from random texts and carry no personal data.
"""


__all__ = ["dataset_card"]
