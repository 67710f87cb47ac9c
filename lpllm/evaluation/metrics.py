"""Plate-recognition metrics in pure Python (no third-party library), shared by the `evaluate` module
`plate_metrics.py` and by `lpllm eval`.

All functions take strings that are already normalised (see `lpllm.evaluation.normalization`). Definitions:

- **accuracy**: exact match of the whole plate.
- **cer**: character error rate, the paper's "edit distance / label length": total Levenshtein distance over total
  label characters (corpus level, like the Hub's `cer`); `cer_per_plate` is the mean of the per-plate ratios.
- **ned**: normalised edit distance as in LP-Diff: mean of `edit distance / max(len(label), len(prediction))`,
  lower is better (0 for a perfect read, 1 for nothing in common).
- **partial matches** (LCOFL's forensic measure): share of plates with at least `len(label) - 1` (and
  `len(label) - 2`) characters right *in their position*.
- **per-position accuracy**: for position `i`, share of labels longer than `i` whose prediction has the same
  character at `i`.
- **length accuracy**: share of predictions as long as their label.
- **confusions**: (label character, predicted character) pairs from a minimal edit alignment; a deletion pairs a
  label character with `""`, an insertion pairs `""` with a predicted character.
"""

from collections import Counter, defaultdict
from collections.abc import Sequence


def edit_distance(reference: str, prediction: str) -> int:
    """Levenshtein distance (unit cost insertions, deletions and substitutions)."""
    previous = list(range(len(prediction) + 1))
    for i, ref_char in enumerate(reference, start=1):
        current = [i]
        for j, pred_char in enumerate(prediction, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_char != pred_char)))
        previous = current
    return previous[-1]


def align(reference: str, prediction: str) -> list[tuple[str, str]]:
    """A minimal edit alignment of `reference` with `prediction`, as `(label char, predicted char)` pairs in order.

    `("A", "A")` is a match, `("A", "4")` a substitution, `("A", "")` a deletion and `("", "A")` an insertion. Ties
    between alignments of equal cost prefer substitutions, then deletions, so the result is deterministic.
    """
    rows, cols = len(reference) + 1, len(prediction) + 1
    cost = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i
    for j in range(cols):
        cost[0][j] = j
    for i in range(1, rows):
        for j in range(1, cols):
            cost[i][j] = min(
                cost[i - 1][j] + 1,
                cost[i][j - 1] + 1,
                cost[i - 1][j - 1] + (reference[i - 1] != prediction[j - 1]),
            )
    pairs = []
    i, j = rows - 1, cols - 1
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + (reference[i - 1] != prediction[j - 1]):
            pairs.append((reference[i - 1], prediction[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((reference[i - 1], ""))
            i -= 1
        else:
            pairs.append(("", prediction[j - 1]))
            j -= 1
    return pairs[::-1]


def correct_positions(reference: str, prediction: str) -> int:
    """Number of label characters that the prediction has at the same position."""
    return sum(ref_char == pred_char for ref_char, pred_char in zip(reference, prediction))


def normalized_edit_distance(reference: str, prediction: str) -> float:
    """`edit distance / max(len(reference), len(prediction))`, 0.0 when both are empty."""
    longest = max(len(reference), len(prediction))
    return edit_distance(reference, prediction) / longest if longest else 0.0


def _check_inputs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions for {len(references)} references; they must pair up.")
    for index, reference in enumerate(references):
        if not reference:
            raise ValueError(
                f"Reference {index} is empty: a plate label needs at least one character (CER divides by its length)."
            )


def summary_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """The headline numbers (`num_samples`, `accuracy`, `cer`, `cer_per_plate`, `ned`) for one group of samples."""
    _check_inputs(predictions, references)
    if not references:
        return {"num_samples": 0, "accuracy": None, "cer": None, "cer_per_plate": None, "ned": None}
    distances = [edit_distance(ref, pred) for pred, ref in zip(predictions, references)]
    count = len(references)
    return {
        "num_samples": count,
        "accuracy": sum(pred == ref for pred, ref in zip(predictions, references)) / count,
        "cer": sum(distances) / sum(len(ref) for ref in references),
        "cer_per_plate": sum(dist / len(ref) for dist, ref in zip(distances, references)) / count,
        "ned": sum(normalized_edit_distance(ref, pred) for pred, ref in zip(predictions, references)) / count,
    }


def partial_match_rates(predictions: Sequence[str], references: Sequence[str], max_missing: int = 2) -> dict:
    """`{"len-1": rate, "len-2": rate, ...}`: share of plates with at least `len(label) - k` characters right in
    their position, for k = 1..max_missing."""
    _check_inputs(predictions, references)
    rates = {}
    for missing in range(1, max_missing + 1):
        hits = sum(correct_positions(ref, pred) >= len(ref) - missing for pred, ref in zip(predictions, references))
        rates[f"len-{missing}"] = hits / len(references) if references else None
    return rates


def per_position_accuracy(predictions: Sequence[str], references: Sequence[str]) -> tuple[list[float], list[int]]:
    """`(accuracy per position, number of labels long enough for that position)`, up to the longest label."""
    _check_inputs(predictions, references)
    longest = max((len(ref) for ref in references), default=0)
    hits, support = [0] * longest, [0] * longest
    for pred, ref in zip(predictions, references):
        for position, ref_char in enumerate(ref):
            support[position] += 1
            hits[position] += position < len(pred) and pred[position] == ref_char
    return [hit / total for hit, total in zip(hits, support)], support


def length_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float | None:
    """Share of predictions exactly as long as their label."""
    _check_inputs(predictions, references)
    if not references:
        return None
    return sum(len(pred) == len(ref) for pred, ref in zip(predictions, references)) / len(references)


def confusion_counts(predictions: Sequence[str], references: Sequence[str]) -> Counter:
    """`Counter{(label char, predicted char): count}` over all alignments, matches included."""
    _check_inputs(predictions, references)
    counts = Counter()
    for pred, ref in zip(predictions, references):
        counts.update(align(ref, pred))
    return counts


def top_confusions(counts: Counter, top_k: int = 20) -> list[dict]:
    """The `top_k` most frequent errors (matches left out), most frequent first, ties in character order."""
    errors = [(pair, count) for pair, count in counts.items() if pair[0] != pair[1]]
    errors.sort(key=lambda item: (-item[1], item[0]))
    return [{"label": ref, "prediction": pred, "count": count} for (ref, pred), count in errors[:top_k]]


def group_metrics(predictions: Sequence[str], references: Sequence[str], keys: Sequence) -> dict:
    """`summary_metrics` for each distinct key (samples whose key is None are left out), keys in sorted order."""
    _check_inputs(predictions, references)
    grouped = defaultdict(lambda: ([], []))
    for pred, ref, key in zip(predictions, references, keys):
        if key is not None:
            grouped[key][0].append(pred)
            grouped[key][1].append(ref)
    return {key: summary_metrics(*grouped[key]) for key in sorted(grouped, key=_sort_key)}


def _sort_key(value):
    # Severities may be numbers or names; numbers first in numeric order, then names alphabetically.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def compute_plate_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    regions: Sequence | None = None,
    sources: Sequence | None = None,
    degradations: Sequence | None = None,
    severities: Sequence | None = None,
    subsets: Sequence | None = None,
    top_k_confusions: int = 20,
) -> dict:
    """Every metric of the report for normalised `predictions` and `references`.

    Args:
        regions, sources, subsets, degradations: optional per-sample group labels for the breakdowns (None =
            unknown; such samples are left out of that breakdown).
        severities: optional per-sample severity (number or name), broken down per degradation type.
        top_k_confusions: how many of the most frequent confusion pairs to list.

    Returns:
        a JSON-serialisable dict: `num_samples`, `accuracy`, `cer`, `cer_per_plate`, `ned`, `partial_match`,
        `length_accuracy`, `per_position_accuracy`, `per_position_support`, `num_empty_predictions`,
        `confusion_pairs`, `confusion_matrix` (`{label char: {predicted char: count}}`) and `breakdowns`.
    """
    predictions, references = list(predictions), list(references)
    results = summary_metrics(predictions, references)
    results["partial_match"] = partial_match_rates(predictions, references)
    results["length_accuracy"] = length_accuracy(predictions, references)
    results["per_position_accuracy"], results["per_position_support"] = per_position_accuracy(predictions, references)
    results["num_empty_predictions"] = sum(not pred for pred in predictions)
    counts = confusion_counts(predictions, references)
    results["confusion_pairs"] = top_confusions(counts, top_k_confusions)
    matrix = defaultdict(dict)
    for (ref_char, pred_char), count in sorted(counts.items()):
        matrix[ref_char][pred_char] = count
    results["confusion_matrix"] = dict(matrix)

    breakdowns = {}
    for name, keys in (("region", regions), ("source", sources), ("subset", subsets), ("degradation", degradations)):
        if keys is not None and any(key is not None for key in keys):
            breakdowns[name] = {str(k): v for k, v in group_metrics(predictions, references, list(keys)).items()}
    if degradations is not None and severities is not None:
        per_type = defaultdict(lambda: ([], [], []))
        for pred, ref, kind, severity in zip(predictions, references, degradations, severities):
            if kind is not None and severity is not None:
                per_type[kind][0].append(pred)
                per_type[kind][1].append(ref)
                per_type[kind][2].append(severity)
        if per_type:
            breakdowns["degradation_severity"] = {
                str(kind): {str(sev): value for sev, value in group_metrics(*per_type[kind]).items()}
                for kind in sorted(per_type, key=_sort_key)
            }
    results["breakdowns"] = breakdowns
    return results


__all__ = [
    "align",
    "compute_plate_metrics",
    "confusion_counts",
    "correct_positions",
    "edit_distance",
    "group_metrics",
    "length_accuracy",
    "normalized_edit_distance",
    "partial_match_rates",
    "per_position_accuracy",
    "summary_metrics",
    "top_confusions",
]
