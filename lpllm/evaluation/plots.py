"""The report's PNG figures: accuracy vs degradation severity per type, the character confusion heatmap,
per-position accuracy, for readers that score their plates the reliability diagram and the risk-coverage curve, and
with `--track_frames` the accuracy against the frames a track is read from.
Figures are built with `matplotlib.figure.Figure` (Agg canvas), so no pyplot state or
backend switch leaks into the caller's process."""

import math
import warnings
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .outputs import atomic_save_figure


SEVERITY_PLOT = "accuracy_vs_severity.png"
CONFUSION_PLOT = "confusion_heatmap.png"
POSITION_PLOT = "per_position_accuracy.png"
PLOT_FILES = (SEVERITY_PLOT, CONFUSION_PLOT, POSITION_PLOT)
RELIABILITY_PLOT = "reliability_diagram.png"
RISK_COVERAGE_PLOT = "risk_coverage.png"
# Written only when results.json has a `calibration` block.
CALIBRATION_PLOT_FILES = (RELIABILITY_PLOT, RISK_COVERAGE_PLOT)
# Written only when results.json has a `track_frames` block.
TRACK_FRAMES_PLOT = "track_frames.png"

# Degradation name of undegraded samples in the dataset contract.
CLEAN = "none"
# Placeholder for the empty side of an insertion or deletion in the confusion heatmap.
EMPTY = "∅"
# Fonts tried, in order, for glyphs DejaVu Sans lacks (Chinese province characters).
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "AR PL UMing CN",
    "SimHei",
)


def _font_context():
    available = {font.name for font in font_manager.fontManager.ttflist}
    families = ["DejaVu Sans"] + [name for name in CJK_FONTS if name in available]
    return matplotlib.rc_context({"font.family": families})


def _message_figure(title: str, message: str) -> Figure:
    figure = Figure(figsize=(6, 3))
    axes = figure.subplots()
    axes.axis("off")
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return figure


def _as_number(value: str):
    try:
        return float(value)
    except ValueError:
        return None


def severity_figure(results: dict, columns: int = 4) -> Figure:
    """Accuracy against severity, one small panel per degradation type (from `breakdowns.degradation_severity`),
    with the accuracy on undegraded ("none") samples as a dashed reference line in every panel."""
    per_type = dict(results.get("breakdowns", {}).get("degradation_severity") or {})
    clean = per_type.pop(CLEAN, None)
    if not per_type:
        return _message_figure(
            "Accuracy vs degradation severity", "No degradation / severity columns in this dataset."
        )
    clean_accuracy = None
    if clean:
        counts = sum(value["num_samples"] for value in clean.values())
        clean_accuracy = 100.0 * sum(value["accuracy"] * value["num_samples"] for value in clean.values()) / counts
    all_numeric = all(_as_number(sev) is not None for levels in per_type.values() for sev in levels)
    categories = list(dict.fromkeys(sev for levels in per_type.values() for sev in levels))
    columns = min(columns, len(per_type))
    rows = math.ceil(len(per_type) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows + 0.6))
    axes_grid = np.atleast_1d(figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)).ravel()
    for axes, (kind, levels) in zip(axes_grid, per_type.items()):
        xs = [_as_number(sev) if all_numeric else categories.index(sev) for sev in levels]
        ys = [100.0 * value["accuracy"] for value in levels.values()]
        axes.plot(xs, ys, marker="o", color="tab:blue")
        if clean_accuracy is not None:
            axes.axhline(clean_accuracy, color="gray", linestyle="--", linewidth=1)
        axes.set_title(f"{kind} (n={sum(v['num_samples'] for v in levels.values())})", fontsize=9)
        axes.set_ylim(-2, 102)
        axes.grid(alpha=0.3)
        if all_numeric:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            axes.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
    for axes in axes_grid[len(per_type) :]:
        axes.axis("off")
    for axes in axes_grid[::columns]:
        axes.set_ylabel("accuracy (%)")
    for axes in axes_grid[(rows - 1) * columns :]:
        axes.set_xlabel("severity")
    note = "" if clean_accuracy is None else f"; dashed: undegraded ({clean_accuracy:.1f}%)"
    figure.suptitle(f"Accuracy vs degradation severity{note}")
    figure.tight_layout()
    return figure


def confusion_figure(results: dict, max_characters: int = 30) -> Figure:
    """Heatmap of error counts (label character -> predicted character) over the characters most involved in
    errors. Correct reads (the diagonal) are greyed out: they would otherwise drown every confusion."""
    matrix = results.get("confusion_matrix") or {}
    errors = {}
    for ref, row in matrix.items():
        for pred, count in row.items():
            if ref != pred:
                errors[ref] = errors.get(ref, 0) + count
                errors[pred] = errors.get(pred, 0) + count
    if not errors:
        return _message_figure("Character confusions", "No character errors.")
    characters = sorted(sorted(errors, key=lambda char: (-errors[char], char))[:max_characters])
    labels = [char or EMPTY for char in characters]
    grid = np.array([[matrix.get(ref, {}).get(pred, 0) for pred in characters] for ref in characters], dtype=float)
    np.fill_diagonal(grid, np.nan)
    size = max(5.0, 0.35 * len(characters) + 2)
    figure = Figure(figsize=(size + 1, size))
    axes = figure.subplots()
    colormap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgray")
    image = axes.imshow(np.ma.masked_invalid(grid), cmap=colormap, vmin=0)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted character")
    axes.set_ylabel("label character")
    axes.set_title(f"Character confusions (error counts; {EMPTY} = inserted / deleted, grey = correct)")
    for i, j in zip(*np.nonzero(np.nan_to_num(grid))):
        axes.text(j, i, int(grid[i, j]), ha="center", va="center", color="white", fontsize=7)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="count")
    figure.tight_layout()
    return figure


def position_figure(results: dict) -> Figure:
    """Accuracy of each character position, with how many labels reach it."""
    accuracy = results.get("per_position_accuracy") or []
    support = results.get("per_position_support") or []
    if not accuracy:
        return _message_figure("Per-position accuracy", "No samples.")
    figure = Figure(figsize=(max(5.0, 0.6 * len(accuracy) + 2), 4))
    axes = figure.subplots()
    positions = np.arange(1, len(accuracy) + 1)
    bars = axes.bar(positions, [100.0 * value for value in accuracy], color="tab:blue")
    for bar, count in zip(bars, support):
        axes.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, f"n={count}", ha="center", fontsize=7)
    axes.set_xticks(positions)
    axes.set_xlabel("character position")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 110)
    axes.set_title("Per-position accuracy")
    figure.tight_layout()
    return figure


def reliability_figure(calibration: dict) -> Figure:
    """Accuracy of each score bin against the diagonal a calibrated reader would follow, with the mean score of each
    bin marked and its plate count above the bar (from the `calibration` block of results.json)."""
    bins = [b for b in calibration["reliability"] if b["count"]]
    width = calibration["reliability"][0]["upper"] - calibration["reliability"][0]["lower"]
    figure = Figure(figsize=(5.5, 5))
    axes = figure.subplots()
    axes.plot([0, 100], [0, 100], color="gray", linestyle="--", linewidth=1, label="calibrated")
    centres = [100.0 * (b["lower"] + b["upper"]) / 2 for b in bins]
    bars = axes.bar(
        centres,
        [100.0 * b["accuracy"] for b in bins],
        width=100.0 * width * 0.9,
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy of the bin",
    )
    axes.scatter(
        centres, [100.0 * b["mean_score"] for b in bins], color="tab:red", marker="_", s=200, label="mean score"
    )
    for bar, b in zip(bars, bins):
        axes.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, f"{b['count']}", ha="center", fontsize=7)
    axes.set_xlim(0, 100)
    axes.set_ylim(0, 108)
    axes.set_xlabel("plate score (%)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(
        f"Reliability (ECE {100.0 * calibration['ece']:.2f}%, n={calibration['num_scored']}, plates per bin on top)",
        fontsize=9,
    )
    axes.legend(loc="upper left", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def risk_coverage_figure(calibration: dict) -> Figure:
    """Accuracy of the accepted plates against the share accepted (best-scored first), with the model's abstain
    threshold marked when it has one (from the `calibration` block of results.json)."""
    curve = calibration["risk_coverage"]
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    axes.plot(
        [100.0 * value for value in curve["coverage"]],
        [100.0 * value for value in curve["accuracy"]],
        color="tab:blue",
        marker="." if len(curve["coverage"]) < 30 else None,
    )
    abstain = calibration.get("abstain")
    if abstain and abstain["accuracy"] is not None:
        axes.plot(
            100.0 * abstain["coverage"],
            100.0 * abstain["accuracy"],
            marker="o",
            color="tab:red",
            linestyle="none",
            label=f"abstain threshold {abstain['threshold']:.3f}",
        )
        axes.legend(loc="lower left", fontsize=8)
    axes.set_xlim(0, 101)
    axes.set_xlabel("coverage: plates accepted, best-scored first (%)")
    axes.set_ylabel("accuracy of accepted plates (%)")
    axes.set_title(f"Risk-coverage (AURC {calibration['aurc']:.4f}, n={calibration['num_scored']})")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def track_frames_figure(block: dict) -> Figure:
    """Exact match against the frames each track is read from: all tracks in black, one line per degradation (from
    the `track_frames` block of results.json)."""
    frames = block["frames"]
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for name, group in block["per_degradation"].items():
        label = f"{name} (n={group['num_tracks']})"
        axes.plot(frames, [100.0 * value for value in group["accuracy"]], marker=".", linewidth=1, label=label)
    axes.plot(
        frames, [100.0 * value for value in block["accuracy"]], marker="o", color="black", linewidth=2.5,
        label=f"all tracks (n={block['num_tracks']})",
    )  # fmt: skip
    axes.set_xticks(frames)
    axes.set_xlabel("frames read per track (the first k)")
    axes.set_ylabel("exact match (%)")
    axes.set_ylim(-2, 102)
    fusion = block.get("fusion")
    axes.set_title("Accuracy vs frames per track" + (f" ({fusion} fusion)" if fusion else ""))
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    figure.tight_layout()
    return figure


def write_plots(results: dict, output_dir: str | Path) -> list[str]:
    """Writes the PNG figures into `output_dir`: the three of every report, the two of `CALIBRATION_PLOT_FILES` when
    the results have a `calibration` block, and `TRACK_FRAMES_PLOT` when they have a `track_frames` block. Returns
    their file names."""
    output_dir = Path(output_dir)
    figures = [
        (SEVERITY_PLOT, severity_figure, results),
        (CONFUSION_PLOT, confusion_figure, results),
        (POSITION_PLOT, position_figure, results),
    ]
    calibration = results.get("calibration")
    if calibration:
        figures += [
            (RELIABILITY_PLOT, reliability_figure, calibration),
            (RISK_COVERAGE_PLOT, risk_coverage_figure, calibration),
        ]
    if results.get("track_frames"):
        figures.append((TRACK_FRAMES_PLOT, track_frames_figure, results["track_frames"]))
    with _font_context(), warnings.catch_warnings():
        # Without a CJK font installed, province characters render as boxes: one warning per glyph is only noise.
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        for name, build, source in figures:
            atomic_save_figure(build(source), output_dir / name, dpi=120)
    return [name for name, _, _ in figures]


__all__ = [
    "CALIBRATION_PLOT_FILES",
    "PLOT_FILES",
    "RELIABILITY_PLOT",
    "RISK_COVERAGE_PLOT",
    "TRACK_FRAMES_PLOT",
    "confusion_figure",
    "position_figure",
    "reliability_figure",
    "risk_coverage_figure",
    "severity_figure",
    "track_frames_figure",
    "write_plots",
]
