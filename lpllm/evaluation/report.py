"""Writes one evaluation's report: `results.json`, `predictions.csv`, `excluded.csv` (when samples were excluded),
`results.md` and the PNG plots."""

import logging
from pathlib import Path

from .metrics import edit_distance
from .outputs import atomic_write_csv, atomic_write_json, atomic_write_text
from .plots import (
    CONFUSION_PLOT,
    POSITION_PLOT,
    RELIABILITY_PLOT,
    RISK_COVERAGE_PLOT,
    SEVERITY_PLOT,
    TRACK_FRAMES_PLOT,
    write_plots,
)
from .tables import comparison_table, format_count, format_number, format_percent


logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.csv"
EXCLUDED_FILE = "excluded.csv"
MARKDOWN_FILE = "results.md"
PREDICTION_COLUMNS = [
    "id",
    "label",
    "prediction",
    "correct",
    "score",
    "candidates",
    "edit_distance",
    "raw_label",
    "raw_prediction",
    "region",
    "source",
    "subset",
    "degradation",
    "severity",
    "num_images",
    "file",
]
# results.md lists this many excluded files; all of them are in excluded.csv and results.json.
MAX_LISTED_EXCLUSIONS = 50


def format_candidates(candidates: list[dict] | None) -> str:
    """Candidate readings `{"text", "score"}` in one CSV cell, best first: `TEXT:score|TEXT:score` (scores to 4
    significant digits, so a small probability keeps its size; an unscored one empty); "" for None."""
    return "|".join(
        f"{candidate['text']}:{'' if candidate.get('score') is None else format(candidate['score'], '.4g')}"
        for candidate in candidates or []
    )


def prediction_rows(
    samples,
    raw_predictions: list[str],
    predictions: list[str],
    scores: list[float | None] | None = None,
    candidates: list[list[dict] | None] | None = None,
) -> list[dict]:
    """One `predictions.csv` row per evaluated sample; `score` is empty where the reader gave none, `candidates`
    (raw texts, `format_candidates`) where it read one text per plate."""
    scores = scores if scores is not None else [None] * len(samples)
    candidates = candidates if candidates is not None else [None] * len(samples)
    return [
        {
            "id": sample.id,
            "label": sample.label,
            "prediction": prediction,
            "correct": int(prediction == sample.label),
            "score": "" if score is None else score,
            "candidates": format_candidates(sample_candidates),
            "edit_distance": edit_distance(sample.label, prediction),
            "raw_label": sample.raw_label,
            "raw_prediction": raw,
            "region": sample.region or "",
            "source": sample.source or "",
            "subset": sample.subset or "",
            "degradation": sample.degradation or "",
            "severity": "" if sample.severity is None else sample.severity,
            "num_images": len(sample.images),
            "file": sample.file or "",
        }
        for sample, raw, prediction, score, sample_candidates in zip(
            samples, raw_predictions, predictions, scores, candidates
        )
    ]


def _metric_table(results: dict) -> str:
    partial = results.get("partial_match") or {}
    rows = [
        ("Samples evaluated", results.get("num_samples")),
        ("Samples excluded", (results.get("dataset") or {}).get("num_excluded", 0)),
        ("Exact-match accuracy (%)", format_percent(results.get("accuracy"))),
        ("CER (%) — total edits / total label characters", format_percent(results.get("cer"))),
        ("CER per plate, mean (%)", format_percent(results.get("cer_per_plate"))),
        ("NED (mean edit distance / longer length)", format_number(results.get("ned"))),
        ("≥ len−1 characters right in place (%)", format_percent(partial.get("len-1"))),
        ("≥ len−2 characters right in place (%)", format_percent(partial.get("len-2"))),
        ("Length accuracy (%)", format_percent(results.get("length_accuracy"))),
        ("Empty predictions", results.get("num_empty_predictions")),
    ]
    top_k = results.get("top_k")
    if top_k:
        label = f"Top-{top_k['k']} accuracy (%) — label among the candidates"
        rows.insert(3, (label, format_percent(top_k["accuracy"])))
    lines = ["| Metric | Value |", "| --- | --- |"]
    lines.extend(f"| {name} | {value} |" for name, value in rows)
    return "\n".join(lines)


def _group_table(title: str, groups: dict) -> str:
    lines = [f"### By {title}", "", "| Group | n | Acc. (%) | CER (%) | NED |", "| --- | --- | --- | --- | --- |"]
    for key, value in groups.items():
        lines.append(
            f"| {key} | {value['num_samples']} | {format_percent(value['accuracy'])} | {format_percent(value['cer'])}"
            f" | {format_number(value['ned'])} |"
        )
    return "\n".join(lines)


def _severity_tables(per_type: dict) -> str:
    lines = [
        "### By degradation type and severity",
        "",
        "| Degradation | Severity | n | Acc. (%) | CER (%) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind, levels in per_type.items():
        for severity, value in levels.items():
            lines.append(
                f"| {kind} | {severity} | {value['num_samples']} | {format_percent(value['accuracy'])}"
                f" | {format_percent(value['cer'])} |"
            )
    return "\n".join(lines)


def _confidence_section(calibration: dict) -> list[str]:
    at_coverage = calibration["accuracy_at_coverage"]
    rows = [
        ("Plates scored", calibration["num_scored"]),
        (f"ECE (%), {calibration['num_bins']} equal-width bins", format_percent(calibration["ece"])),
        *((f"Accuracy at {key}% coverage (%)", format_percent(value)) for key, value in at_coverage.items()),
        ("AURC (area under risk vs coverage)", format_number(calibration["aurc"], 4)),
    ]
    if calibration.get("num_unscored"):
        rows.insert(1, ("Plates without a score (left out here)", calibration["num_unscored"]))
    abstain = calibration.get("abstain")
    if abstain:
        rows += [
            ("Abstain threshold (the model's)", format_number(abstain["threshold"], 4)),
            ("Coverage at the threshold (%)", format_percent(abstain["coverage"])),
            ("Accuracy of accepted plates at the threshold (%)", format_percent(abstain["accuracy"])),
        ]
    lines = [
        "## Confidence",
        "",
        "How far the reader's plate scores (its probability that the whole plate is right) can be trusted; coverage"
        " is the share of plates accepted when the best-scored ones are kept.",
        "",
        "| Measure | Value |",
        "| --- | --- |",
    ]
    lines.extend(f"| {name} | {value} |" for name, value in rows)
    return lines + [""]


def _track_frames_section(block: dict) -> list[str]:
    frames = block["frames"]
    fusion = f" by {block['fusion']} fusion" if block.get("fusion") else ""
    lines = [
        "## Accuracy vs frames per track",
        "",
        f"Exact match (%) of the {block['num_tracks']} tracks of at least {max(frames)} frames, each read{fusion} from "
        "its first k frames.",
        "",
        "| Degradation | n | " + " | ".join(f"{k} frame{'s' * (k > 1)}" for k in frames) + " |",
        "| --- | --- | " + " | ".join("---" for _ in frames) + " |",
    ]
    rows = [("**all**", block), *block["per_degradation"].items()]
    lines.extend(
        f"| {name} | {group['num_tracks']} | " + " | ".join(format_percent(value) for value in group["accuracy"]) + " |"
        for name, group in rows
    )
    return lines + ["", f"![Accuracy vs frames per track]({TRACK_FRAMES_PLOT})", ""]


def render_markdown(results: dict) -> str:
    """The human-readable report."""
    model = results.get("model") or {}
    dataset = results.get("dataset") or {}
    efficiency = results.get("efficiency") or {}
    parts = [
        f"# {model.get('name', 'model')} on {dataset.get('name', 'dataset')} [{dataset.get('split') or 'all'}]",
        "",
        comparison_table([results]),
        "## Metrics",
        "",
        _metric_table(results),
        "",
        "Labels and predictions are normalised before comparison: " + _describe_normalization(results) + ".",
        "",
        "### Per-position accuracy",
        "",
        "| Position | "
        + " | ".join(str(i + 1) for i in range(len(results.get("per_position_accuracy") or [])))
        + " |",
        "| --- | " + " | ".join("---" for _ in results.get("per_position_accuracy") or []) + " |",
        "| Acc. (%) | " + " | ".join(format_percent(v, 1) for v in results.get("per_position_accuracy") or []) + " |",
        "",
    ]
    calibration = results.get("calibration")
    if calibration:
        parts += _confidence_section(calibration)
    if results.get("track_frames"):
        parts += _track_frames_section(results["track_frames"])
    breakdowns = results.get("breakdowns") or {}
    if breakdowns:
        parts += ["## Breakdowns", ""]
        for key in ("region", "source", "subset", "degradation"):
            if key in breakdowns:
                parts += [_group_table(key, breakdowns[key]), ""]
        if "degradation_severity" in breakdowns:
            parts += [_severity_tables(breakdowns["degradation_severity"]), ""]
    confusions = results.get("confusion_pairs") or []
    parts += ["## Most frequent confusions", ""]
    if confusions:
        parts += ["| Label | Predicted | Count |", "| --- | --- | --- |"]
        parts += [f"| {c['label'] or '∅'} | {c['prediction'] or '∅'} | {c['count']} |" for c in confusions]
    else:
        parts.append("No character errors.")
    parts.append("")
    excluded = results.get("excluded") or []
    parts += [f"## Excluded samples: {len(excluded)}", ""]
    if excluded:
        parts += ["Not counted in any metric above.", "", "| Id | File | Reason |", "| --- | --- | --- |"]
        parts += [f"| {e['id']} | {e.get('file') or '–'} | {e['reason']} |" for e in excluded[:MAX_LISTED_EXCLUSIONS]]
        if len(excluded) > MAX_LISTED_EXCLUSIONS:
            parts.append(f"\n… and {len(excluded) - MAX_LISTED_EXCLUSIONS} more in `{EXCLUDED_FILE}`.")
    parts.append("")
    parameters = model.get("parameters") or {}
    latency = efficiency.get("latency") or {}
    throughput = efficiency.get("throughput") or {}
    parts += [
        "## Efficiency",
        "",
        f"- Device: {efficiency.get('device', '?')}",
        f"- Parameters: {format_count(parameters.get('total'))} total, {format_count(parameters.get('trainable'))}"
        " trainable (requires_grad as loaded; a PEFT model counts its adapters)",
    ]
    if latency:
        parts.append(
            f"- Latency at batch 1: median {latency['median_ms']:.1f} ms, p95 {latency['p95_ms']:.1f} ms"
            f" ({latency['runs']} runs after {latency['warmup']} warm-up reads; images to text, end to end)"
        )
    else:
        parts.append("- Latency: not measured")
    if throughput:
        parts.append(
            f"- Throughput at batch {throughput['batch_size']}: {throughput['images_per_second']:.1f} images/s"
            " (evaluation batches after the first)"
        )
    training = model.get("training")
    if training:
        parts += ["", "## Training budget", ""] + [f"- {key}: {value}" for key, value in training.items()]
    parts += [
        "",
        "## Plots",
        "",
        f"![Accuracy vs severity]({SEVERITY_PLOT})",
        f"![Confusions]({CONFUSION_PLOT})",
        f"![Per-position accuracy]({POSITION_PLOT})",
    ]
    if calibration:
        parts += [f"![Reliability diagram]({RELIABILITY_PLOT})", f"![Risk-coverage]({RISK_COVERAGE_PLOT})"]
    parts.append("")
    return "\n".join(parts)


def _describe_normalization(results: dict) -> str:
    settings = results.get("normalization") or {}
    pieces = []
    if settings.get("uppercase"):
        pieces.append("upper-cased")
    if settings.get("separators"):
        pieces.append(f"separators {settings['separators']!r} removed")
    if settings.get("letters_and_digits_only"):
        pieces.append("other symbols removed")
    for region, mapping in (settings.get("region_maps") or {}).items():
        rules = ", ".join(f"{source}→{target or '∅'}" for source, target in mapping.items())
        pieces.append(f"{region}: {rules}")
    return "; ".join(pieces) or "none"


def write_report(output_dir: str | Path, results: dict, rows: list[dict]) -> list[str]:
    """Writes every report file into `output_dir` (which the caller has prepared); returns the file names."""
    output_dir = Path(output_dir)
    written = [RESULTS_FILE, PREDICTIONS_FILE, MARKDOWN_FILE]
    atomic_write_json(output_dir / RESULTS_FILE, results)
    atomic_write_csv(output_dir / PREDICTIONS_FILE, PREDICTION_COLUMNS, rows)
    if results.get("excluded"):
        atomic_write_csv(output_dir / EXCLUDED_FILE, ["id", "file", "reason"], results["excluded"])
        written.append(EXCLUDED_FILE)
    written += write_plots(results, output_dir)
    atomic_write_text(output_dir / MARKDOWN_FILE, render_markdown(results))
    logger.info("Wrote %s to %s", ", ".join(written), output_dir)
    return written


__all__ = [
    "PREDICTIONS_FILE",
    "RESULTS_FILE",
    "format_candidates",
    "prediction_rows",
    "render_markdown",
    "write_report",
]
