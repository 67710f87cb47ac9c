"""Evaluate license-plate readers (LP-LLM, a stock Qwen3-VL zero-shot, the CRNN/LPRNet baselines, fast-plate-ocr,
RapidOCR off the shelf) on the same data, with the paper's metrics and more, as JSON, Markdown tables and PNG plots.

One model:

    python eval.py --model_name_or_path runs/lpllm --dataset_name data/ccpd_blur --split test \
        --output_dir reports/ccpd_blur

The paper's Table 1 (methods side by side) and Table 2 (ablations); each PATH is a model directory (evaluated into
OUTPUT_DIR/<name>/) or a report directory holding a `results.json` from an earlier run (reused as is):

    python eval.py --compare runs/lpllm baselines/crnn baselines/lprnet --dataset_name data/ccpd_blur \
        --output_dir reports/table1
    python eval.py --ablation_table runs/A runs/B runs/C runs/D --dataset_name data/ccpd_blur \
        --output_dir reports/table2

Real crops evaluate out of the box (evaluation only, never train on them):

    python eval.py --model_name_or_path runs/lpllm --dataset_name ../shared/realdata/openalpr_us \
        --output_dir reports/openalpr_us

The word `rapidocr` names RapidOCR's PP-OCR text recognizer, off the shelf (`pip install 'lpllm[baselines]'`), as
a model to evaluate or compare:

    python eval.py --compare rapidocr runs/lpllm --dataset_name ../shared/realdata/openalpr_us \
        --output_dir reports/openalpr_us_vs_rapidocr

CMRM's slot attention maps of the first N plates (an LP-LLM model with CMRM), into OUTPUT_DIR/attention_maps.png:

    python eval.py --model_name_or_path runs/lpllm --dataset_name data/ccpd_blur --output_dir reports/ccpd_blur \
        --attention_maps 8

DATASET is a directory written by `dataset_scripts.build`, a folder with `labels.csv` (`file,text[,region]`) or a
CSV file. OUTPUT_DIR receives `results.json`, `predictions.csv`, `results.md`, `excluded.csv` (if any sample was
excluded) and three PNG plots. An existing non-empty OUTPUT_DIR is refused unless `--overwrite` is given, which
replaces the report files and leaves other files alone.
"""

from lpllm.cli.evaluate import main


if __name__ == "__main__":
    main()
