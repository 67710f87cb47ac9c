"""Probes of how a model's 5-beam readings are ranked and scored, offline: the tables of results/trust.md's session 3.

`read` reads sets with a saved LP-LLM model as `eval.py` does, keeping the 5 best beams of every plate, and writes
one JSON file per set (each plate's label, region, reading, score, character scores, fitted regions and candidates).
`analyze` then reports, from those files, without reading again:

- **ranking floor**: exact match when a beam fitting some region's plate pattern is promoted over the most probable
  beam only if its probability is at least a share `r` of that beam's (`r` = 0: `region="auto"` as it is; 1: the most
  probable beam);
- **calibrators**: the expected calibration error, on each set, of calibrators of the reading's score fitted on the
  `--fit` sets (logistic on the log score, beta calibration, and beta calibration with more features of the reading:
  its weakest character, whether it fits a pattern, its share of the beams' probability, its ratio to the best beam).

Fit and choose on training and validation sets only; the other sets are reported, never tuned on.

    python benchmarks/probe_reading_scores.py read --model runs/base_ctc/final --output_dir probes \\
        --set tw_val=CACHED_TW_DATASET:validation --set br=../shared/realdata/openalpr_br:test
    python benchmarks/probe_reading_scores.py analyze --output_dir probes --fit tw_val vn_val synth_val \\
        --report br eu us lprcn
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lpllm.evaluation.calibration import expected_calibration_error
from lpllm.evaluation.data import load_eval_data
from lpllm.evaluation.normalization import PlateNormalizer
from lpllm.evaluation.recognizers import load_vision_language_recognizer


RATIOS = (0.0, 0.001, 0.01, 0.03, 0.1, 0.3, 1.0)
# Columns of `features`: the calibrators below pick some of them.
FEATURES = ("log score", "-log(1 - score)", "log weakest character", "-log(1 - weakest)", "fits a pattern",
            "log share of the beams", "log ratio to the best beam")  # fmt: skip
CALIBRATORS = {
    "logistic on log score": [0],
    "beta map on the score": [0, 1],
    "beta map + weakest character": [0, 1, 2, 3],
    "beta map + fits a pattern": [0, 1, 4],
    "beta map + every feature": [0, 1, 2, 3, 4, 5, 6],
}


def read_sets(args):
    normalizer = PlateNormalizer()
    recognizer = load_vision_language_recognizer(args.model, torch.device("cpu"), top_k=5)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for spec in args.set:
        name, _, source = spec.partition("=")
        path, _, split = source.rpartition(":")
        samples = load_eval_data(path, split, normalizer, max_samples=args.max_samples).samples
        rows = []
        for start in tqdm(range(0, len(samples), 8), desc=name, unit="batch"):
            batch = samples[start : start + 8]
            readings = recognizer.read_scored([sample.images for sample in batch], [sample.prompt for sample in batch])
            for sample, reading in zip(batch, readings):
                rows.append({
                    "label": sample.label, "region": sample.region, "text": reading["text"],
                    "right": normalizer(reading["text"], sample.region) == sample.label, "score": reading["score"],
                    "char_scores": reading["char_scores"], "regions": reading["regions"],
                    "candidates": [
                        {**candidate, "right": normalizer(candidate["text"], sample.region) == sample.label}
                        for candidate in reading["candidates"]
                    ],
                })  # fmt: skip
        (output_dir / f"{name}.json").write_text(json.dumps(rows), encoding="utf-8")
        print(f"{name}: {len(rows)} plates, {100 * np.mean([row['right'] for row in rows]):.2f}% right")


def promoted(row: dict, ratio: float) -> dict:
    """The candidate read when a pattern-fitting beam needs `ratio` of the best beam's probability to be promoted."""
    candidates = sorted(row["candidates"], key=lambda candidate: -candidate["score"])
    best = candidates[0]
    return next((c for c in candidates if c["regions"] and c["score"] >= ratio * best["score"]), best)


def features(row: dict) -> list[float]:
    score = min(max(row["score"], 1e-12), 1 - 1e-9)
    weakest = min(max(min(row["char_scores"] or [score]), 1e-12), 1 - 1e-9)
    total = sum(candidate["score"] for candidate in row["candidates"]) or score
    best = max(candidate["score"] for candidate in row["candidates"])
    return [
        math.log(score), -math.log1p(-score), math.log(weakest), -math.log1p(-weakest), float(bool(row["regions"])),
        math.log(min(max(total, 1e-12), 1.0)), math.log(max(score / best, 1e-12)),
    ]  # fmt: skip


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, float]:
    x, y = torch.from_numpy(x), torch.from_numpy(y.astype(np.float64))
    weights = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weights + bias, y) + l2 * weights.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach().numpy(), float(bias.detach())


def analyze(args):
    folder = Path(args.output_dir)
    sets = {name: json.loads((folder / f"{name}.json").read_text(encoding="utf-8")) for name in args.fit + args.report}
    names = list(sets)
    print("\nRanking floor: exact match (%)\n")
    print("| r | " + " | ".join(names) + " |\n|" + " --- |" * (len(names) + 1))
    for ratio in RATIOS:
        cells = [100 * np.mean([promoted(row, ratio)["right"] for row in rows]) for rows in sets.values()]
        print(f"| {ratio:g} | " + " | ".join(f"{cell:.2f}" for cell in cells) + " |")
    fit_rows = [row for name in args.fit for row in sets[name]]
    x_fit = np.array([features(row) for row in fit_rows])
    y_fit = np.array([row["right"] for row in fit_rows])
    print(f"\nCalibrators fitted on {', '.join(args.fit)} ({len(fit_rows)} plates): ECE (%)\n")
    print("| calibrator | " + " | ".join(args.report) + " |\n|" + " --- |" * (len(args.report) + 1))
    for label, columns in {"as saved": None, **CALIBRATORS}.items():
        if columns is not None:
            weights, bias = fit_logistic(x_fit[:, columns], y_fit)
        cells = []
        for name in args.report:
            x = np.array([features(row) for row in sets[name]])
            y = np.array([row["right"] for row in sets[name]])
            scores = np.exp(x[:, 0]) if columns is None else 1 / (1 + np.exp(-(x[:, columns] @ weights + bias)))
            cells.append(100 * expected_calibration_error(scores, y))
        print(f"| {label} | " + " | ".join(f"{cell:.2f}" for cell in cells) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    read = commands.add_parser("read", help="Read sets with 5 beams and keep every plate's candidates.")
    read.add_argument("--model", required=True, help="A saved LP-LLM model folder.")
    read.add_argument("--set", action="append", required=True, help="NAME=PATH:SPLIT, repeated.")
    read.add_argument("--output_dir", required=True)
    read.add_argument("--max_samples", type=int, default=400)
    probe = commands.add_parser("analyze", help="The ranking-floor and calibrator tables from `read`'s files.")
    probe.add_argument("--output_dir", required=True, help="`read`'s output folder.")
    probe.add_argument("--fit", nargs="+", required=True, help="Sets the calibrators are fitted on.")
    probe.add_argument("--report", nargs="+", required=True, help="Sets only reported.")
    args = parser.parse_args(argv)
    for spec in getattr(args, "set", None) or []:
        if "=" not in spec or ":" not in spec.partition("=")[2]:
            parser.error(f"--set {spec!r}: expected NAME=PATH:SPLIT.")
    read_sets(args) if args.command == "read" else analyze(args)


if __name__ == "__main__":
    main()
