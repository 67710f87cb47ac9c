"""results/gpu.md from the JSON of one or more `benchmarks/gpu_suite.py` runs: the machine, issue 35's targets
(batch-1 latency against the paper's A100 figure, CMRM's overhead, the LoRA step at batch 16) and every row.

    python benchmarks/gpu_report.py results/gpu_suite_2b.json results/gpu_suite_8b.json --output results/gpu.md

`benchmarks/gpu_device_check.sh` runs the suite on the GPU machine and then this script.
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path


try:
    import lpllm  # noqa: F401
except ImportError:  # a plain copy of the repository (the GPU machine's): the package sits beside this folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Both import only the standard library, as the GPU machine needs.
from lpllm.evaluation.outputs import atomic_write_text
from lpllm.evaluation.tables import markdown_table


# The paper's figures for LP-LLM on an A100: a plate read in 435 ms, 15 ms (3.6%) of it CMRM's.
PAPER_LATENCY_MS = 435.0
PAPER_CMRM_OVERHEAD = 0.036
# Issue 35's target for CMRM's overhead on a batch-1 read.
CMRM_OVERHEAD_TARGET = 0.01
TARGET_IMAGE_SIZE = "448x448"  # the paper's input size: the targets are judged there


def load_suite():
    """gpu_suite.py beside this file, for its row summaries (one wording for the console table and this report)."""
    path = Path(__file__).resolve().with_name("gpu_suite.py")
    spec = importlib.util.spec_from_file_location("gpu_suite", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_run(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file (expected the JSON that benchmarks/gpu_suite.py --output wrote)")
    except json.JSONDecodeError as error:
        raise SystemExit(f"{path}: not JSON ({error}); expected the file benchmarks/gpu_suite.py --output wrote")
    missing = {"environment", "model", "rows", "status"} - set(data)
    if missing:
        raise SystemExit(f"{path}: not a gpu_suite.py result, it lacks {', '.join(sorted(missing))}")
    return data


def find_row(data: dict, kind: str, image_size: str | None = None) -> dict | None:
    for row in data["rows"]:
        if row["kind"] == kind and (image_size is None or row.get("image_size") == image_size):
            return row
    return None


def not_measured(row: dict | None) -> str:
    if row is None:
        return "not measured (no row)"
    return f"not measured ({row['status']}: {row.get('reason', '')})"


def target_rows(data: dict) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for issue 35's targets in one run."""
    rows = []
    latency = find_row(data, "latency", TARGET_IMAGE_SIZE)
    target = f"batch-1 read of a plate at {TARGET_IMAGE_SIZE} below the paper's {PAPER_LATENCY_MS:.0f} ms (A100)"
    if latency is not None and latency["status"] == "ok":
        verdict = "met" if latency["read_ms"] < PAPER_LATENCY_MS else "not met"
        measured = f"{latency['read_ms']:.1f} ms ({PAPER_LATENCY_MS / latency['read_ms']:.1f}x faster than the paper)"
        rows.append((target, measured, verdict))
    else:
        rows.append((target, not_measured(latency), "-"))

    cmrm = find_row(data, "cmrm_on_off", TARGET_IMAGE_SIZE)
    target = (
        f"CMRM's overhead on a batch-1 read at most {100 * CMRM_OVERHEAD_TARGET:.0f}% "
        f"(paper {100 * PAPER_CMRM_OVERHEAD:.1f}%)"
    )
    if cmrm is not None and cmrm["status"] == "ok":
        overhead = cmrm["read_ratio_on_off"] - 1
        verdict = "met" if overhead <= CMRM_OVERHEAD_TARGET else "not met"
        measured = (
            f"read {100 * overhead:+.2f}%, prefill {100 * (cmrm['prefill_ratio_on_off'] - 1):+.2f}%; "
            f"the module alone {cmrm['cmrm_module_ms']:.2f} ms"
        )
        rows.append((target, measured, verdict))
    else:
        rows.append((target, not_measured(cmrm), "-"))

    training = find_row(data, "lora_train_step")
    target = "one LoRA r=64 step at batch 16: time and peak memory reported"
    if training is not None and training["status"] == "ok":
        peak = training["peak_memory_gib"]
        measured = f"{training['step_ms']:.0f} ms a step, batch {training['batch']}, peak " + (
            "not measured" if peak is None else f"{peak:.1f} GiB"
        )
        rows.append((target, measured, "reported" if training["batch"] == 16 and peak is not None else "partly"))
    else:
        rows.append((target, not_measured(training), "-"))
    return rows


def command_line(data: dict) -> str:
    settings = data.get("settings", {})
    parts = ["python benchmarks/gpu_suite.py"]
    if settings.get("tiny"):
        parts.append("--tiny")
    elif settings.get("model_size", "2b") != "2b":
        parts.append(f"--model_size {settings['model_size']}")
    for name in ("time_budget_s", "throughput_budget_s", "compile_budget_s", "repeats"):
        if name in settings:
            parts.append(f"--{name} {settings[name]:g}")
    if settings.get("skip_compile"):
        parts.append("--skip_compile")
    return " ".join(parts)


def run_section(data: dict, source: Path, suite) -> list[str]:
    model, rows = data["model"], data["rows"]
    count = suite.format_count
    lines = [
        f"## {model['architecture']}",
        "",
        f"- {count(model['parameters'])} parameters (CMRM {count(model['cmrm_parameters'])}), "
        f"{model['weights']} weights, {data['environment']['dtype']}; "
        + ", ".join(f"{item['size']}: {item['visual_tokens']} visual tokens" for item in model["image_sizes"]),
        f"- {suite.describe_environment(data['environment'])}",
        f"- `{command_line(data)}`, {data['status']} in {data.get('elapsed_s', 0):.0f} s, "
        f"started {data.get('started_at', '?')}; JSON: `{source.name}`",
        "",
        "Targets:",
        "",
        markdown_table(["target", "measured", "verdict"], target_rows(data)),
        "",
        "Every row:",
        "",
        markdown_table(["kind", "case", "result"], [[row["kind"], row["case"], suite.summarize(row)] for row in rows]),
        "",
    ]
    return lines


def render(runs: list[tuple[Path, dict]], suite) -> str:
    machines = sorted({data["environment"].get("device_name", "?") for _, data in runs})
    lines = [
        f"# LP-LLM's GPU suite on {' and '.join(machines)}",
        "",
        "Written by `python benchmarks/gpu_report.py` from the JSON of `benchmarks/gpu_suite.py` (random weights: the "
        "timings are the architecture's, not a trained model's). Paper figures: an A100, "
        f"{PAPER_LATENCY_MS:.0f} ms a plate, CMRM {100 * PAPER_CMRM_OVERHEAD:.1f}% of it.",
        "",
    ]
    for source, data in runs:
        lines += run_section(data, source, suite)
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="JSON files written by benchmarks/gpu_suite.py --output.")
    parser.add_argument("--output", type=Path, default=Path("results/gpu.md"), help="The Markdown report to write.")
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    runs = [(path, read_run(path)) for path in args.runs]  # every input checked before anything is written
    text = render(runs, load_suite())
    atomic_write_text(args.output, text)
    print(f"{len(runs)} run(s) -> {args.output}", file=sys.stderr)
    return text


if __name__ == "__main__":
    main()
