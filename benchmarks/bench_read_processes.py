"""How much faster do N processes read a folder of crops than one, and is their output the same?

Writes the first `--num_crops` crops of a `dataset_scripts.build` dataset (test split first, then validation, then
train) as PNG files into a folder (reused when it already holds them), then runs, as a user would,

    torchrun --standalone --nproc_per_node P -m lpllm.cli read FOLDER --model M --device cpu --format csv ...

for P = 1 and P = `--processes`, each process on one thread (OMP_NUM_THREADS=1), and compares the two CSV files.

    python benchmarks/bench_read_processes.py --model runs/demo_v6/lpllm/final --num_crops 2000
    python benchmarks/bench_read_processes.py --num_crops 100 --json results/read_processes.json   # a quick check

Prints, for each run, the command's wall-clock seconds (process start, model loading, reading, writing) and the
reading seconds `lpllm read` logs (from the first plate to the gathered output), and the speed-up of P processes over
one on each. Run it on an otherwise idle machine with at least P cores: the processes share the CPU with anything
else running. The numbers depend on the machine; nothing here is asserted by the tests.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from datasets import concatenate_datasets, load_from_disk

from lpllm.evaluation.outputs import atomic_write_json


REPO = Path(__file__).resolve().parents[1]
SPLIT_ORDER = ("test", "validation", "train")
# The line `lpllm read --log_level INFO` ends with on the main process.
READ_LOG = re.compile(r"Read (\d+) plates \((\d+) failed\) in ([0-9.]+) s on (\d+) process")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo_v6/lpllm/final", help="A saved LP-LLM (or any reader).")
    parser.add_argument("--dataset_name", default="data/demo_latin20000", help="A dataset_scripts.build folder.")
    parser.add_argument("--num_crops", type=int, default=2000)
    parser.add_argument("--crops_dir", help="Folder for the crops (default: data/read_bench_crops<NUM_CROPS>).")
    parser.add_argument("--processes", type=int, default=2, help="Compared with 1 process.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--json", help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    if args.num_crops < 1 or args.processes < 2 or args.batch_size < 1:
        parser.error("--num_crops and --batch_size must be >= 1, --processes >= 2.")
    if not Path(args.model).is_dir():
        parser.error(f"--model {args.model!r}: no such folder.")
    return args


def write_crops(dataset_name: str, folder: Path, num_crops: int) -> Path:
    """The first `num_crops` crops of the dataset (`SPLIT_ORDER`) as `folder/NNNNN.png`; kept when already there."""
    if folder.is_dir() and len(list(folder.glob("*.png"))) == num_crops:
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder} exists and does not hold {num_crops} crops: remove it or give another --crops_dir.")
    dataset = load_from_disk(dataset_name)
    rows = concatenate_datasets([dataset[split] for split in SPLIT_ORDER if split in dataset])
    if len(rows) < num_crops:
        raise SystemExit(f"{dataset_name} has {len(rows)} rows; asked for {num_crops} crops.")
    folder.mkdir(parents=True, exist_ok=True)
    for index, row in enumerate(rows.select(range(num_crops)).select_columns(["images"])):
        row["images"][0].save(folder / f"{index:05d}.png")
    return folder


def run_read(processes: int, folder: Path, args, output: Path) -> dict:
    """One `lpllm read` of `folder` on `processes` single-threaded processes: wall-clock and logged reading seconds."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
        "-m", "lpllm.cli", "read", str(folder), "--model", args.model, "--device", "cpu",
        "--batch_size", str(args.batch_size), "--format", "csv", "--output", str(output), "--log_level", "INFO",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    paths = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    began = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    logged = READ_LOG.search(completed.stderr)
    if completed.returncode != 0 or logged is None:
        raise SystemExit(f"`{' '.join(command)}` failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    plates, failed, seconds, ran_on = logged.groups()
    if int(ran_on) != processes:
        raise SystemExit(f"asked for {processes} processes, `lpllm read` ran on {ran_on}:\n{completed.stderr[-3000:]}")
    return {"processes": processes, "plates": int(plates), "failed": int(failed), "wall_seconds": wall,
            "read_seconds": float(seconds)}  # fmt: skip


def main(argv=None) -> dict:
    args = parse_args(argv)
    folder = Path(args.crops_dir or f"data/read_bench_crops{args.num_crops}")
    folder = write_crops(args.dataset_name, folder, args.num_crops)
    with tempfile.TemporaryDirectory() as scratch:
        outputs = [Path(scratch) / "one.csv", Path(scratch) / f"{args.processes}.csv"]
        runs = [run_read(1, folder, args, outputs[0]), run_read(args.processes, folder, args, outputs[1])]
        one, many = (path.read_text(encoding="utf-8").splitlines() for path in outputs)
    different = sum(a != b for a, b in zip(one, many)) + abs(len(one) - len(many))
    figures = {
        "model": args.model,
        "crops": str(folder),
        "num_crops": args.num_crops,
        "batch_size": args.batch_size,
        "threads_per_process": 1,
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "speedup_wall": runs[0]["wall_seconds"] / runs[1]["wall_seconds"],
        "speedup_read": runs[0]["read_seconds"] / runs[1]["read_seconds"],
        "identical_output": different == 0,
        "different_lines": different,
    }
    print(f"{args.num_crops} crops, batch {args.batch_size}, one thread per process, {os.cpu_count()} CPUs")
    print("| processes | wall (s) | reading (s) | plates/s (reading) |")
    print("| --- | --- | --- | --- |")
    for run in runs:
        rate = run["plates"] / run["read_seconds"]
        print(f"| {run['processes']} | {run['wall_seconds']:.1f} | {run['read_seconds']:.1f} | {rate:.2f} |")
    print(
        f"speed-up of {args.processes} processes: {figures['speedup_wall']:.2f}x wall, {figures['speedup_read']:.2f}x "
        f"reading; output {'identical' if different == 0 else f'differs on {different} lines'}"
    )
    if args.json:
        atomic_write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
