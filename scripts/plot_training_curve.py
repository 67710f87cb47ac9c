"""Plots what train_sft.py runs logged against wall-clock minutes: validation exact match and CER from generation,
and the training loss. Reads RUN/trainer_state.json and prints the curves as tables.

One run: writes RUN/training_curve.png.
    python scripts/plot_training_curve.py --run_dirs runs/demo/lpllm
Several runs side by side (one line each; also prints when each left the initial loss plateau):
    python scripts/plot_training_curve.py --run_dirs runs/aug2 runs/warm1 --names jitter "jitter, warm-up" \
        --output curves.png
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
from trl import TrlParser

from lpllm.evaluation.outputs import atomic_save_figure


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


# A loss below this means the model reads characters, not just the plate format (the plateau sits near 2.5).
PLATEAU_LEFT_BELOW = 1.0


def read_history(run_dir: str) -> tuple[list[dict], list[dict]]:
    """`(evaluations, losses)`: the timed entries of a run's log history."""
    state_file = Path(run_dir) / "trainer_state.json"
    try:
        history = json.loads(state_file.read_text(encoding="utf-8"))["log_history"]
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"Cannot read the training log {state_file}: {error}")
    evaluations = [entry for entry in history if "eval_exact_match" in entry and "minutes" in entry]
    losses = [entry for entry in history if "loss" in entry and "minutes" in entry]
    if not evaluations and not losses:
        raise SystemExit(f"{state_file} holds no timed loss or evaluation (was it written by train_sft.py?).")
    return evaluations, losses


def plateau_left_at(losses: list[dict]) -> float | None:
    """Minutes at the first logged training loss below `PLATEAU_LEFT_BELOW`; None if it never got there."""
    return next((entry["minutes"] for entry in losses if entry["loss"] < PLATEAU_LEFT_BELOW), None)


def print_curve(evaluations: list[dict]) -> None:
    print("| minutes | step | exact match (%) | CER (%) |")
    print("| --- | --- | --- | --- |")
    for entry in evaluations:
        print(f"| {entry['minutes']:.1f} | {entry['step']} | {100 * entry['eval_exact_match']:.1f} | "
              f"{100 * entry['eval_cer']:.1f} |")


def plot_one(run_dir: str) -> Path:
    evaluations, losses = read_history(run_dir)
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
    output = Path(run_dir) / "training_curve.png"
    atomic_save_figure(figure, output, dpi=120)
    print_curve(evaluations)
    return output


def plot_several(run_dirs: list[str], names: list[str], output: Path) -> None:
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4))
    summary = []
    for run_dir, name in zip(run_dirs, names):
        evaluations, losses = read_history(run_dir)
        if evaluations:
            accuracy_axis.plot(
                [entry["minutes"] for entry in evaluations],
                [100 * entry["eval_exact_match"] for entry in evaluations],
                "o-",
                label=name,
            )
        if losses:
            loss_axis.plot([entry["minutes"] for entry in losses], [entry["loss"] for entry in losses], label=name)
        last = evaluations[-1] if evaluations else None
        summary.append((name, plateau_left_at(losses), last))
        print(f"\n{name} ({run_dir})")
        print_curve(evaluations)
    accuracy_axis.set(xlabel="training minutes (wall clock)", ylabel="exact match (%)", title="validation, greedy")
    loss_axis.set(xlabel="training minutes (wall clock)", ylabel="loss", title="training loss", yscale="log")
    for axis in (accuracy_axis, loss_axis):
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    atomic_save_figure(figure, output, dpi=120)

    print(f"\n| run | left the loss plateau (min; loss < {PLATEAU_LEFT_BELOW:g}) | last validation exact match (%) |")
    print("| --- | --- | --- |")
    for name, left, last in summary:
        left_text = f"{left:.1f}" if left is not None else "never"
        last_text = f"{100 * last['eval_exact_match']:.1f} at {last['minutes']:.1f} min" if last else "-"
        print(f"| {name} | {left_text} | {last_text} |")
    print(f"curves: {output}")


@dataclass
class PlotArguments:
    """Arguments of `scripts/plot_training_curve.py`."""

    run_dirs: list[str] = field(metadata={"help": "train_sft.py --output_dir folders."})
    names: list[str] | None = field(
        default=None, metadata={"help": "A legend name per run (None: the folder names)."}
    )
    output: str | None = field(
        default=None,
        metadata={"help": "The figure of several runs, needed with more than one (None: RUN/training_curve.png)."},
    )

    def __post_init__(self):
        if len(self.run_dirs) > 1 and self.output is None:
            raise ValueError("`output` is needed to plot several runs together: the figure's path.")
        if self.names is not None and len(self.names) != len(self.run_dirs):
            raise ValueError(f"`names` gives {len(self.names)} names for {len(self.run_dirs)} runs: give one per run.")


def main(argv=None):
    (args,) = TrlParser(PlotArguments, description=__doc__.split("\n\n")[0]).parse_args_and_config(argv)
    if len(args.run_dirs) == 1 and args.output is None:
        print(f"curve: {plot_one(args.run_dirs[0])}")
        return
    names = args.names or [Path(run_dir).name for run_dir in args.run_dirs]
    plot_several(args.run_dirs, names, Path(args.output))


if __name__ == "__main__":
    main()
