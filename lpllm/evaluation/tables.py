"""Markdown tables in the layout of the paper: Table 1 (methods side by side) and Table 2 (ablations), rendered from
`results.json` payloads, so they can be rebuilt from saved reports without re-running any model."""


def format_count(value) -> str:
    """2_130_000_000 -> '2.13B', 4_410_000 -> '4.41M', 146_752 -> '146.8K'."""
    if value is None:
        return "–"
    for threshold, suffix, digits in ((1e9, "B", 2), (1e6, "M", 2), (1e3, "K", 1)):
        if value >= threshold:
            return f"{value / threshold:.{digits}f}{suffix}"
    return str(int(value))


def format_percent(value, digits: int = 2) -> str:
    return "–" if value is None else f"{100.0 * value:.{digits}f}"


def format_number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _row(cells) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; `|` inside a cell is escaped."""
    lines = [_row(header), _row(["---"] * len(header))]
    lines.extend(_row(row) for row in rows)
    return "\n".join(lines)


def _latency(results: dict):
    latency = (results.get("efficiency") or {}).get("latency")
    return None if not latency else latency.get("median_ms")


def _budget(results: dict) -> str | None:
    training = (results.get("model") or {}).get("training")
    if not training:
        return None
    if "wall_minutes" in training:
        return (
            f"{training.get('steps')} steps / {training.get('epochs', 0):.2f} epochs"
            f" in {training['wall_minutes']:.1f} min"
            f" (budget {training.get('max_minutes')} min) on {training.get('device')}"
        )
    return ", ".join(f"{key}={value}" for key, value in training.items())


def _calibration_cells(results: dict) -> list[str]:
    calibration = results.get("calibration")
    if not calibration:
        return ["–", "–"]
    return [format_percent(calibration.get("ece")), format_percent(calibration["accuracy_at_coverage"].get("90"))]


def comparison_table(results_list: list[dict], names: list[str] | None = None) -> str:
    """Table 1: Method | Paradigm | Acc. (%) | CER (%) | NED | Params | Latency (ms), one row per result, followed by
    the devices and training budgets the numbers come with. When any reader scores its plates, ECE (%) and the
    accuracy of its best-scored 90% of plates follow the accuracy ("–" for readers without scores)."""
    scored = any(results.get("calibration") for results in results_list)
    header = ["Method", "Paradigm", "Acc. (%) ↑", "CER (%) ↓", "NED ↓", "Params", "Latency (ms) ↓"]
    if scored:
        header[3:3] = ["ECE (%) ↓", "Acc. @90% cov. (%) ↑"]
    rows, notes = [], []
    for index, results in enumerate(results_list):
        model = results.get("model") or {}
        name = names[index] if names else model.get("name", f"model {index + 1}")
        parameters = model.get("parameters") or {}
        latency = _latency(results)
        row = [
            name,
            model.get("paradigm", "–"),
            format_percent(results.get("accuracy")),
            format_percent(results.get("cer")),
            format_number(results.get("ned")),
            format_count(parameters.get("total")),
            "–" if latency is None else f"{latency:.1f}",
        ]
        if scored:
            row[3:3] = _calibration_cells(results)
        rows.append(row)
        device = (results.get("efficiency") or {}).get("device")
        budget = _budget(results)
        dataset = results.get("dataset") or {}
        note = (
            f"- {name}: {dataset.get('name', '?')} [{dataset.get('split') or 'all'}], n={results.get('num_samples')}"
        )
        note += f", {dataset.get('num_excluded', 0)} excluded"
        num_views = (model.get("description") or {}).get("num_views") or 1
        if num_views > 1:
            note += f"; each plate read from {num_views} views"
        if device:
            note += f"; measured on {device}"
        if budget:
            note += f"; training budget: {budget}"
        notes.append(note)
    return markdown_table(header, rows) + "\n\n" + "\n".join(notes) + "\n"


def _cmrm_cell(model: dict) -> str:
    description = model.get("description") or {}
    if description.get("model_type") != "lpllm":
        return "–"
    if not description.get("cmrm_enabled"):
        return "off"
    return f"K={description.get('cmrm_num_slots')}, L={description.get('cmrm_num_layers')}"


def ablation_table(results_list: list[dict], labels: list[str] | None = None) -> str:
    """Table 2: Setting | Model | Type | CMRM | Params | CMRM params | Acc. (%) | CER (%) | NED | ΔAcc (pp), the delta
    taken against the first row."""
    header = [
        "Setting",
        "Model",
        "Type",
        "CMRM",
        "Params",
        "CMRM params",
        "Acc. (%) ↑",
        "CER (%) ↓",
        "NED ↓",
        "ΔAcc (pp)",
    ]
    rows = []
    reference = results_list[0].get("accuracy") if results_list else None
    for index, results in enumerate(results_list):
        model = results.get("model") or {}
        label = labels[index] if labels else chr(ord("A") + index) if index < 26 else str(index + 1)
        accuracy = results.get("accuracy")
        delta = "–" if accuracy is None or reference is None else f"{100.0 * (accuracy - reference):+.2f}"
        rows.append(
            [
                label,
                model.get("name", "?"),
                (model.get("description") or {}).get("model_type", model.get("paradigm", "–")),
                _cmrm_cell(model),
                format_count((model.get("parameters") or {}).get("total")),
                format_count((model.get("description") or {}).get("cmrm_parameters")),
                format_percent(accuracy),
                format_percent(results.get("cer")),
                format_number(results.get("ned")),
                "0.00 (ref.)" if index == 0 else delta,
            ]
        )
    return markdown_table(header, rows) + "\n"


__all__ = [
    "ablation_table", "comparison_table", "format_count", "format_number", "format_percent", "markdown_table",
]
