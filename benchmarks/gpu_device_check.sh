#!/usr/bin/env bash
# The GPU check of issue 35 in one command: the suite on the paper's 2B model (all rows, compile included), then the
# 8B model's latency, CMRM and LoRA rows with the time left, then the Markdown report of both. About 5-7 minutes on an
# H100 or H200, so that a session's 15 device minutes leave room to run it again. From the repository root:
#
#     bash benchmarks/gpu_device_check.sh                 # on the GPU machine (the device tool's `run`, timeout_s 480)
#     bash benchmarks/gpu_device_check.sh --tiny --device cpu --repeats 1    # the same steps, a tiny model, a CPU
#
# Arguments are passed on to both suite runs (after the script's own, so they win). The files go to $OUT when it is
# set (the device tool brings that folder back), otherwise to results/gpu_run/: machine.txt, gpu_suite_{2b,8b}.json
# and .log, gpu.md. Copy gpu.md to results/gpu.md and the JSON beside it.
#
# It runs on the machine's own torch, transformers and peft: the suite was checked with transformers 5.17 / peft 0.18
# (the GPU image's) as well as this project's 5.25 / 0.21, so no wheels need carrying.
set -uo pipefail

out="${OUT:-results/gpu_run}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    else
        echo "no nvidia-smi on this machine"
    fi
    "$python" -m pip list 2>/dev/null | grep -iE '^(torch|transformers|peft|safetensors|accelerate|numpy) '
} 2>&1 | tee "$out/machine.txt"

# The issue's figures: every row at both image sizes. `timeout` keeps a hang from eating the device time; the JSON
# is rewritten after each row, so a run stopped midway still reports what finished.
timeout 320 "$python" benchmarks/gpu_suite.py \
    --time_budget_s 260 --throughput_budget_s 90 --compile_budget_s 90 \
    --output "$out/gpu_suite_2b.json" "$@" 2>&1 | tee "$out/gpu_suite_2b.log"
# The largest size, if time allows: no compile, a short sweep.
timeout 120 "$python" benchmarks/gpu_suite.py --model_size 8b --skip_compile \
    --time_budget_s 60 --throughput_budget_s 15 --repeats 5 \
    --output "$out/gpu_suite_8b.json" "$@" 2>&1 | tee "$out/gpu_suite_8b.log"

runs=()
for run in "$out/gpu_suite_2b.json" "$out/gpu_suite_8b.json"; do
    [ -f "$run" ] && runs+=("$run")
done
[ ${#runs[@]} -gt 0 ] || { echo "no suite run wrote its JSON: see the logs in $out" >&2; exit 1; }
"$python" benchmarks/gpu_report.py "${runs[@]}" --output "$out/gpu.md"
