"""How many more plates does a track of frames read than one frame? Exact match at 1, 3 and 5 frames.

Reads every track (a multi-frame sample) of a `dataset_scripts.build` split with an LP-LLM checkpoint, from its
first k frames for each k of `--frames`, by late fusion (each frame a prompt of its own, the frames' next-token
log-probabilities averaged: `modeling_lpllm/plate_reading.py`), and from its first k frames of `--joint_frames` by
joint fusion (all k frames in one prompt), and reports the exact-match accuracy of each (labels and readings
normalised as `lpllm eval` does), overall and per degradation, with the seconds each setting took at `--batch_size`.
The cost of a track at batch 1 is timed apart: the first `--batch1_tracks` tracks read one at a time, every setting
taking turns track by track (so a load from other processes falls on all of them alike), wall and CPU seconds per
track and their ratio to the first setting (late fusion of `--frames`' first count).

    python -m dataset_scripts.build --source synthetic --output data/tracks5_sev45 --num 300 --frames 5 \\
        --severities 4 5 --clean_fraction 0 --splits 0 0 1 --layouts br_old br_mercosur ar_mercosur eu_llnnnll \\
        us_lllnnnn us_nlllnnn --seed 11
    python benchmarks/track_fusion.py --model runs/demo_v6/lpllm/final --dataset_name data/tracks5_sev45 \\
        --output track_fusion.json

A saved checkpoint reads with the code saved beside it (its processor's views come from there): to measure this
package's code on an older checkpoint, copy the folder and overwrite its `*.py` files with `modeling_lpllm/*.py`
(all but `__init__.py` and `registration.py`). The numbers depend on the model and the data; nothing here is
asserted by the tests.
"""

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from lpllm.evaluation.data import load_eval_data
from lpllm.evaluation.normalization import PlateNormalizer
from lpllm.evaluation.outputs import atomic_write_json
from lpllm.evaluation.recognizers import load_vision_language_recognizer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo_v6/lpllm/final", help="A saved LP-LLM checkpoint.")
    parser.add_argument("--dataset_name", required=True, help="A dataset_scripts.build folder of multi-frame samples.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 3, 5], help="Frames read by late fusion.")
    parser.add_argument("--joint_frames", type=int, nargs="*", default=[3], help="Frames read by joint fusion.")
    parser.add_argument("--num_views", type=int, default=None, help="Views per frame (default: the processor's).")
    parser.add_argument("--batch_size", type=int, default=8, help="Tracks read together.")
    parser.add_argument("--batch1_tracks", type=int, default=50, help="Tracks timed one at a time (0: none).")
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--output", help="Write the results to this JSON file.")
    args = parser.parse_args(argv)
    if min(args.frames + args.joint_frames) < 1 or args.batch_size < 1 or args.batch1_tracks < 0:
        parser.error("--frames, --joint_frames and --batch_size must be >= 1, --batch1_tracks >= 0.")
    if not Path(args.model).is_dir():
        parser.error(f"--model {args.model!r}: no such folder.")
    return args


def read_setting(recognizer, samples, frames: int, fusion: str, normalizer, batch_size: int) -> dict:
    """Exact match of `samples` read from their first `frames` frames with `fusion`, overall and per degradation."""
    recognizer.fusion = fusion
    correct, by_degradation = [], defaultdict(list)
    start = time.perf_counter()
    for first in range(0, len(samples), batch_size):
        batch = samples[first : first + batch_size]
        texts = recognizer.read([sample.images[:frames] for sample in batch])
        for sample, text in zip(batch, texts):
            right = normalizer(text, sample.region) == sample.label
            correct.append(right)
            by_degradation[sample.degradation or "none"].append(right)
    seconds = time.perf_counter() - start
    return {
        "fusion": fusion,
        "frames": frames,
        "num_tracks": len(correct),
        "exact_match": sum(correct) / len(correct),
        "correct": sum(correct),
        "seconds": round(seconds, 1),
        "per_degradation": {
            name: {"exact_match": sum(values) / len(values), "num_tracks": len(values)}
            for name, values in sorted(by_degradation.items())
        },
    }


def time_one_by_one(recognizer, samples, settings: list[tuple[str, int]]) -> list[dict]:
    """Wall and CPU seconds per track of reading each of `samples` alone, for each `(fusion, frames)` of `settings`
    (its first `frames` frames), the settings taking turns track by track; with each setting's ratio to the first."""
    for fusion, count in settings:  # untimed: the first forward pass of each setting pays one-off costs
        recognizer.fusion = fusion
        recognizer.read([samples[0].images[:count]])
    wall, cpu = [0.0] * len(settings), [0.0] * len(settings)
    for sample in samples:
        for index, (fusion, count) in enumerate(settings):
            recognizer.fusion = fusion
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            recognizer.read([sample.images[:count]])
            wall[index] += time.perf_counter() - start_wall
            cpu[index] += time.process_time() - start_cpu
    return [
        {
            "fusion": fusion, "frames": count, "num_tracks": len(samples),
            "seconds_per_track": round(wall[index] / len(samples), 4),
            "cpu_seconds_per_track": round(cpu[index] / len(samples), 4),
            "ratio_to_first": round(wall[index] / wall[0], 3), "cpu_ratio_to_first": round(cpu[index] / cpu[0], 3),
        }
        for index, (fusion, count) in enumerate(settings)
    ]  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    torch.set_grad_enabled(False)
    normalizer = PlateNormalizer()
    data = load_eval_data(args.dataset_name, args.split, normalizer, max_samples=args.max_samples)
    needed = max(args.frames + args.joint_frames)
    samples = [sample for sample in data.samples if len(sample.images) >= needed]
    if not samples:
        raise SystemExit(f"{args.dataset_name} [{args.split}] holds no sample of {needed} or more frames.")
    recognizer = load_vision_language_recognizer(args.model, torch.device("cpu"), num_views=args.num_views)
    settings = [("late", frames) for frames in args.frames] + [("joint", frames) for frames in args.joint_frames]
    results = []
    for fusion, frames in settings:
        results.append(read_setting(recognizer, samples, frames, fusion, normalizer, args.batch_size))
        print(json.dumps({key: results[-1][key] for key in ("fusion", "frames", "exact_match", "seconds")}), flush=True)
    batch1 = time_one_by_one(recognizer, samples[: args.batch1_tracks], settings) if args.batch1_tracks else []
    print(f"\n{len(samples)} tracks, {recognizer.num_views} view(s) per plate\n")
    print(f"| fusion | frames | exact match (%) | right | seconds (batch {args.batch_size}) |")
    print("| --- | --- | --- | --- | --- |")
    for result in results:
        print(
            f"| {result['fusion']} | {result['frames']} | {100 * result['exact_match']:.2f} | "
            f"{result['correct']}/{result['num_tracks']} | {result['seconds']} |"
        )
    if batch1:
        print(f"\nBatch 1, {batch1[0]['num_tracks']} tracks read one at a time\n")
        first = f"{batch1[0]['fusion']}, {batch1[0]['frames']} frame(s)"
        print(f"| fusion | frames | s / track | x {first} | CPU s / track | CPU x |")
        print("| --- | --- | --- | --- | --- | --- |")
        for timing in batch1:
            print(
                f"| {timing['fusion']} | {timing['frames']} | {timing['seconds_per_track']} | "
                f"{timing['ratio_to_first']} | "
                f"{timing['cpu_seconds_per_track']} | {timing['cpu_ratio_to_first']} |"
            )
    if args.output:
        atomic_write_json(args.output, {
            "model": args.model, "dataset": args.dataset_name, "split": args.split, "num_tracks": len(samples),
            "num_views": recognizer.num_views, "results": results, "batch1": batch1,
        })  # fmt: skip


if __name__ == "__main__":
    main()
