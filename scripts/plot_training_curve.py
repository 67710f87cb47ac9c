"""Plots what a train_sft.py run logged against wall-clock minutes: validation exact match and CER from generation,
and the training loss. Reads OUT/trainer_state.json, writes OUT/training_curve.png and prints the curve as a table.

    python scripts/plot_training_curve.py runs/demo/lpllm
"""

import argparse
import json
from pathlib import Path

import matplotlib

from lpllm_eval.outputs import atomic_save_figure


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="A train_sft.py --output_dir.")
    args = parser.parse_args(argv)
    state_file = Path(args.run_dir) / "trainer_state.json"
    try:
        history = json.loads(state_file.read_text(encoding="utf-8"))["log_history"]
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"Cannot read the training log {state_file}: {error}")
    evaluations = [entry for entry in history if "eval_exact_match" in entry and "minutes" in entry]
    losses = [entry for entry in history if "loss" in entry and "minutes" in entry]
    if not evaluations and not losses:
        raise SystemExit(f"{state_file} holds no timed loss or evaluation (was it written by train_sft.py?).")

    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    if evaluations:
        minutes = [entry["minutes"] for entry in evaluations]
        accuracy_axis.plot(minutes, [100 * entry["eval_exact_match"] for entry in evaluations], "o-", label="exact match")
        accuracy_axis.plot(minutes, [100 * entry["eval_cer"] for entry in evaluations], "s--", label="CER")
    accuracy_axis.set(xlabel="training minutes (wall clock)", ylabel="%", title="validation, greedy generation")
    accuracy_axis.legend()
    accuracy_axis.grid(alpha=0.3)
    if losses:
        loss_axis.plot([entry["minutes"] for entry in losses], [entry["loss"] for entry in losses])
    loss_axis.set(xlabel="training minutes (wall clock)", ylabel="loss", title="training loss")
    loss_axis.grid(alpha=0.3)
    figure.tight_layout()
    output = Path(args.run_dir) / "training_curve.png"
    atomic_save_figure(figure, output, dpi=120)

    print("| minutes | step | exact match (%) | CER (%) |")
    print("| --- | --- | --- | --- |")
    for entry in evaluations:
        print(f"| {entry['minutes']:.1f} | {entry['step']} | {100 * entry['eval_exact_match']:.1f} | "
              f"{100 * entry['eval_cer']:.1f} |")
    print(f"curve: {output}")


if __name__ == "__main__":
    main()
