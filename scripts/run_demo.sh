#!/usr/bin/env bash
# The embedded default, for a machine with no GPU and no Hub:
#   1. 20,000 synthetic degraded Latin plates (7 characters; BR, AR, EU, US layouts),
#   2. a CRNN-CTC baseline and a small LP-LLM from scratch, each trained on the CPU for the same wall-clock budget,
#   3. both evaluated side by side on the synthetic test split and on the real crops in ../shared/realdata (there
#      next to RapidOCR off the shelf, when the `baselines` extra is installed),
#   4. a few test plates read with pipeline("image-to-text").
# Everything lands in runs/demo/ (tables: report_*/comparison.md, plots: report_*/*/*.png).
# Knobs (environment): LPLLM_DEMO_MINUTES (training budget per model, default 15), LPLLM_DEMO_NUM (plates, 20000),
# LPLLM_DEMO_OUT (runs/demo), LPLLM_DEMO_DATA (data/demo_latin20k), LPLLM_REALDATA (../shared/realdata).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${LPLLM_DEMO_MINUTES:-15}"
num="${LPLLM_DEMO_NUM:-20000}"
out="${LPLLM_DEMO_OUT:-runs/demo}"
data="${LPLLM_DEMO_DATA:-data/demo_latin${num}}"
realdata="${LPLLM_REALDATA:-../shared/realdata}"
layouts=(br_old br_mercosur ar_mercosur eu_llnnnll us_lllnnnn us_nlllnnn)

if [ ! -f "$data/dataset_dict.json" ]; then
    echo "== 1/4 synthetic plates -> $data"
    python -m dataset_scripts.build --source synthetic --output "$data" --num "$num" --layouts "${layouts[@]}" --seed 0
else
    echo "== 1/4 synthetic plates: reusing $data"
fi

echo "== 2/4 training, $minutes min each: CRNN-CTC, then LP-LLM"
# The CRNN sees the crops as the LP-LLM recipe prepares them (deskew_max_degrees, rectify_plate in
# recipes/demo_cpu.yaml): the comparison is between the two readers, not between two crop preparations.
python -m lpllm.baselines.train --arch crnn --dataset_name "$data" --output_dir "$out/crnn" --max_minutes "$minutes" \
    --deskew_max_degrees 20 --rectify_plate --overwrite
python train_sft.py --config recipes/demo_cpu.yaml --dataset_name "$data" --output_dir "$out/lpllm" \
    --max_train_minutes "$minutes" --realdata_dir "$realdata"

echo "== 3/4 evaluation, side by side"
# Training evaluated LP-LLM's final model on the test split and the real crops into eval.py reports
# ($out/lpllm/final_eval/); eval.py reuses them as they are (a report directory is not read again), falling back to
# reading the model where a report is missing.
lpllm_report() {
    if [ -f "$out/lpllm/final_eval/$1/results.json" ]; then echo "$out/lpllm/final_eval/$1"; else echo "$out/lpllm/final"; fi
}
python eval.py --compare "$(lpllm_report test)" "$out/crnn" --names LP-LLM CRNN-CTC --dataset_name "$data" \
    --split test --output_dir "$out/report_synthetic" --overwrite
# A generic OCR a user could pick instead of training a plate reader joins the real-crop tables.
off_the_shelf=() off_the_shelf_names=()
if python -c "import rapidocr, onnxruntime" >/dev/null 2>&1; then
    off_the_shelf=(rapidocr) off_the_shelf_names=(RapidOCR)
else
    echo "(RapidOCR not installed: pip install 'lpllm[baselines]' to add it to the real-crop tables)"
fi
if [ -d "$realdata" ]; then
    for set_dir in "$realdata"/*/; do
        [ -f "$set_dir/labels.csv" ] || continue
        name="$(basename "$set_dir")"
        python eval.py --compare "$(lpllm_report "realdata_$name")" "$out/crnn" "${off_the_shelf[@]}" \
            --names LP-LLM CRNN-CTC "${off_the_shelf_names[@]}" \
            --dataset_name "$set_dir" --output_dir "$out/report_real_$name" --overwrite
    done
else
    echo "(no real crops at $realdata: skipped)"
fi

python scripts/plot_training_curve.py --run_dirs "$out/lpllm"

echo "== 4/4 reading a few test plates with the pipeline"
python scripts/read_samples.py --model "$out/lpllm/final" --dataset_name "$data" --num 8 --output_dir "$out/samples"

echo
echo "Synthetic test split (tables and plots in $out/report_synthetic/):"
cat "$out/report_synthetic/comparison.md"
