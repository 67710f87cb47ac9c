"""Plots the curves printed by benchmarks/probe_learning_speed.py (teacher-forced validation exact match against
wall-clock minutes), one line per log file, and prints when each probe left its loss plateau.

    python benchmarks/plot_probes.py results/probes/*.log --output results/probes.png
"""

import argparse
import re
from pathlib import Path

import matplotlib

from lpllm.evaluation.outputs import atomic_save_figure


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


# Older probe logs say "tf_exact ... char", newer ones "teacher-forced exact ... character".
LINE = re.compile(
    r"min (?P<minutes>[\d.]+) step (?P<step>\d+) loss (?P<loss>[\d.]+) "
    r"(?:tf_exact|teacher-forced exact) (?P<exact>[\d.]+) (?:char|character) (?P<character>[\d.]+)"
)


def read_curve(path: Path) -> list[dict]:
    points = [
        {key: float(value) for key, value in match.groupdict().items()}
        for match in map(LINE.search, path.read_text(encoding="utf-8").splitlines())
        if match
    ]
    if not points:
        raise SystemExit(f"{path}: no probe lines (from benchmarks/probe_learning_speed.py) found.")
    return points


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, required=True, help="PNG to write (kept unless --overwrite).")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.overwrite:
        raise SystemExit(f"{args.output} exists; pass --overwrite to replace it.")
    figure, (exact_axis, character_axis) = plt.subplots(1, 2, figsize=(13, 4.5))
    print("| probe | left the plateau (character accuracy > 0.3) at | last reading |")
    print("| --- | --- | --- |")
    for index, path in enumerate(args.logs):
        curve = read_curve(path)
        minutes = [point["minutes"] for point in curve]
        # 20 distinct colours, and a second line style past them, so every probe stays tellable apart.
        style = {"color": plt.cm.tab20(index % 20), "linestyle": "-" if index < 20 else "--", "label": path.stem}
        exact_axis.plot(minutes, [100 * point["exact"] for point in curve], **style)
        character_axis.plot(minutes, [100 * point["character"] for point in curve], **style)
        escape = next((point for point in curve if point["character"] > 0.3), None)
        left = f"step {escape['step']:.0f}, minute {escape['minutes']:.1f}" if escape else "not within the probe"
        last = curve[-1]
        print(
            f"| {path.stem} | {left} | minute {last['minutes']:.1f}, step {last['step']:.0f}: "
            f"{100 * last['exact']:.1f}% exact, {100 * last['character']:.1f}% characters |"
        )
    exact_axis.set(xlabel="minutes (one thread)", ylabel="teacher-forced exact match (%)", ylim=(0, 100))
    character_axis.set(xlabel="minutes (one thread)", ylabel="character accuracy (%)", ylim=(0, 100))
    for axis in (exact_axis, character_axis):
        axis.grid(alpha=0.3)
    character_axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    atomic_save_figure(figure, args.output, dpi=110)


if __name__ == "__main__":
    main()
