"""How far a reader's plate-level scores can be trusted: calibration error, reliability bins, the risk-coverage
curve and the abstain threshold, in numpy alone.

Every function takes `scores` (one per plate, the reader's probability that the whole plate is right, in [0, 1])
and `correct` (whether the plate was read right, bool or 0/1). With `n` plates and `B` bins:

- **reliability bins**: `B` equal-width bins of the score, `[b/B, (b+1)/B)` with the last closed at 1; per bin the
  plate count `n_b`, the mean score `conf_b` and the accuracy `acc_b`.
- **ECE** (expected calibration error): `sum_b n_b / n * |acc_b - conf_b|`, the gap between stated and observed
  accuracy averaged over plates (empty bins weigh nothing).
- **risk-coverage curve**: a reader that abstains below a threshold `t` accepts the plates with `score >= t`. For
  each distinct score `t`, from the highest down, the curve holds the share accepted (coverage) and the accuracy of
  the accepted plates. Plates tied at one score are accepted together, as a threshold cannot split them, so the
  curve does not depend on the order of the input.
- **AURC**: the area under selective risk (1 - accuracy of the accepted plates) against coverage, the curve taken as
  a step function: each tied group adds its share of plates times the risk once it is accepted. Without ties this
  is the usual mean over `k = 1..n` of the risk of the `k` best-scored plates; lower is better.
- **accuracy at coverage `c`**: the accuracy of the `ceil(c * n)` best-scored plates; a tied group at the boundary
  counts in proportion to the part of it taken (its own accuracy), the expected accuracy if ties were broken at
  random.
"""

import math
from dataclasses import dataclass

import numpy as np


DEFAULT_NUM_BINS = 15
# The coverages the report and the model card quote accuracy at.
REPORTED_COVERAGES = (1.0, 0.95, 0.9)
# results.json keeps the risk-coverage curve to this many points (evenly spread over coverage).
MAX_CURVE_POINTS = 101


@dataclass
class RiskCoverage:
    """The risk-coverage curve, one point per distinct score, highest first.

    Args:
        thresholds: `(m,)` the distinct scores, descending; accepting `score >= thresholds[i]` gives point `i`.
        coverage: `(m,)` share of plates accepted, increasing, the last 1.
        accuracy: `(m,)` share of accepted plates read right.
        aurc: area under the risk (1 - accuracy) vs coverage step function.
    """

    thresholds: np.ndarray
    coverage: np.ndarray
    accuracy: np.ndarray
    aurc: float


def _check(scores, correct) -> tuple[np.ndarray, np.ndarray]:
    """`scores` as float64 and `correct` as bool, after checking both; ValueError naming the field otherwise."""
    try:
        scores = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"scores must be numbers in [0, 1] (None is not a score): {error}") from None
    correct = np.asarray(correct)
    if scores.ndim != 1 or correct.ndim != 1:
        raise ValueError(f"scores and correct must be 1-D; got shapes {scores.shape} and {correct.shape}.")
    if len(scores) != len(correct):
        raise ValueError(f"scores and correct differ in length: {len(scores)} scores for {len(correct)} plates.")
    if len(scores) == 0:
        raise ValueError("scores is empty: calibration needs at least one scored plate.")
    bad = np.flatnonzero(~((scores >= 0.0) & (scores <= 1.0)))  # NaN fails both comparisons
    if len(bad):
        raise ValueError(
            f"scores must be probabilities in [0, 1] (not None or NaN); scores[{bad[0]}] = {scores[bad[0]]}"
            f" ({len(bad)} bad values)."
        )
    if correct.dtype != np.bool_:
        values = correct.tolist()
        bad = [i for i, value in enumerate(values) if isinstance(value, str) or value not in (0, 1)]
        if bad:
            raise ValueError(f"correct must be booleans or 0/1; correct[{bad[0]}] = {values[bad[0]]!r}.")
        correct = np.asarray(values, dtype=np.float64) == 1.0
    return scores, correct


def _check_num_bins(num_bins: int) -> None:
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}.")


def _bin_index(scores: np.ndarray, num_bins: int) -> np.ndarray:
    # A score of exactly 1 belongs to the last bin, not to a bin of its own.
    return np.minimum((scores * num_bins).astype(np.int64), num_bins - 1)


def reliability_bins(scores, correct, num_bins: int = DEFAULT_NUM_BINS) -> list[dict]:
    """The reliability diagram's bins: `num_bins` equal-width bins over [0, 1], every one listed, empty ones too.

    Returns:
        One dict per bin, lowest first: `lower`, `upper`, `count`, `mean_score` and `accuracy` (both None when the
        bin is empty).
    """
    scores, correct = _check(scores, correct)
    _check_num_bins(num_bins)
    index = _bin_index(scores, num_bins)
    counts = np.bincount(index, minlength=num_bins)
    score_sums = np.bincount(index, weights=scores, minlength=num_bins)
    correct_sums = np.bincount(index, weights=correct.astype(np.float64), minlength=num_bins)
    return [
        {
            "lower": b / num_bins,
            "upper": (b + 1) / num_bins,
            "count": int(counts[b]),
            "mean_score": float(score_sums[b] / counts[b]) if counts[b] else None,
            "accuracy": float(correct_sums[b] / counts[b]) if counts[b] else None,
        }
        for b in range(num_bins)
    ]


def expected_calibration_error(scores, correct, num_bins: int = DEFAULT_NUM_BINS) -> float:
    """ECE over `num_bins` equal-width score bins, each bin weighted by its share of plates (module docstring)."""
    bins = reliability_bins(scores, correct, num_bins)
    total = sum(b["count"] for b in bins)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["mean_score"]) for b in bins if b["count"]))


def risk_coverage_curve(scores, correct) -> RiskCoverage:
    """Coverage and accuracy of the accepted plates at each distinct score, highest first (ties accepted together),
    and the AURC (module docstring)."""
    scores, correct = _check(scores, correct)
    # Sorting by score alone would leave tied plates in input order; grouping them makes the curve order-free.
    thresholds, inverse = np.unique(-scores, return_inverse=True)
    group_sizes = np.bincount(inverse)
    group_correct = np.bincount(inverse, weights=correct.astype(np.float64))
    accepted = np.cumsum(group_sizes)
    accuracy = np.cumsum(group_correct) / accepted
    coverage = accepted / len(scores)
    aurc = float(np.sum(group_sizes / len(scores) * (1.0 - accuracy)))
    return RiskCoverage(thresholds=-thresholds, coverage=coverage, accuracy=accuracy, aurc=aurc)


def accuracy_at_coverage(scores, correct, coverage: float) -> float:
    """Accuracy of the `ceil(coverage * n)` best-scored plates, a tied group at the boundary counted in proportion
    (module docstring). `coverage` in (0, 1]."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage!r}.")
    scores, correct = _check(scores, correct)
    # The small slack keeps 0.95 * 20 (= 19.000000000000004) at 19 plates.
    take = max(1, math.ceil(coverage * len(scores) - 1e-9))
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_correct = scores[order], correct[order].astype(np.float64)
    boundary = sorted_scores[take - 1]
    above = sorted_scores > boundary
    tied = sorted_scores == boundary
    taken_from_tie = take - int(above.sum())
    right = sorted_correct[above].sum() + taken_from_tie * sorted_correct[tied].mean()
    return float(right / take)


def accepted_metrics(scores, correct, threshold: float) -> dict:
    """What a reader that abstains below `threshold` accepts: `threshold`, `num_accepted`, `coverage` (share of
    plates with `score >= threshold`) and `accuracy` of those (None when none is accepted)."""
    scores, correct = _check(scores, correct)
    if not 0.0 <= threshold <= 1.0:  # also refuses NaN
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}.")
    accepted = scores >= threshold
    count = int(accepted.sum())
    return {
        "threshold": float(threshold),
        "num_accepted": count,
        "coverage": count / len(scores),
        "accuracy": float(correct[accepted].mean()) if count else None,
    }


def threshold_for_accuracy(scores, correct, target: float = 0.995) -> float | None:
    """The lowest score threshold whose accepted plates (`score >= threshold`) are at least `target` right: the
    widest coverage at that accuracy, what training saves as the model's abstain threshold from the validation
    split. None when no non-empty accepted set reaches `target`.

    The threshold is one of the scores, so the set it accepts on these plates is exactly the one measured.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must be in (0, 1], got {target!r}.")
    curve = risk_coverage_curve(scores, correct)
    # Accuracy need not fall monotonically as the threshold drops: look at every point, keep the lowest that holds.
    reaching = np.flatnonzero(curve.accuracy >= target)
    return float(curve.thresholds[reaching[-1]]) if len(reaching) else None


def downsample_curve(curve: RiskCoverage, max_points: int = MAX_CURVE_POINTS) -> dict:
    """The curve as JSON lists (`threshold`, `coverage`, `accuracy`), at most `max_points` points spread evenly over
    coverage; the first (highest threshold) and last (coverage 1) points are always kept."""
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points!r}.")
    keep = np.arange(len(curve.coverage))
    if len(keep) > max_points:
        grid = np.linspace(curve.coverage[0], 1.0, max_points)
        keep = np.unique(np.minimum(np.searchsorted(curve.coverage, grid), len(keep) - 1))
    return {
        "threshold": curve.thresholds[keep].tolist(),
        "coverage": curve.coverage[keep].tolist(),
        "accuracy": curve.accuracy[keep].tolist(),
    }


def calibration_summary(
    scores, correct, abstain_threshold: float | None = None, num_bins: int = DEFAULT_NUM_BINS
) -> dict:
    """The `calibration` block of `results.json` for scored plates.

    Returns:
        `num_scored`, `ece`, `num_bins`, `reliability` (`reliability_bins`), `accuracy_at_coverage` (keyed by the
        coverage in percent: "100", "95", "90"), `aurc`, `risk_coverage` (`downsample_curve`) and `abstain`
        (`accepted_metrics` at `abstain_threshold`, None without one).
    """
    scores, correct = _check(scores, correct)
    curve = risk_coverage_curve(scores, correct)
    return {
        "num_scored": len(scores),
        "ece": expected_calibration_error(scores, correct, num_bins),
        "num_bins": num_bins,
        "reliability": reliability_bins(scores, correct, num_bins),
        "accuracy_at_coverage": {
            f"{100 * coverage:g}": accuracy_at_coverage(scores, correct, coverage) for coverage in REPORTED_COVERAGES
        },
        "aurc": curve.aurc,
        "risk_coverage": downsample_curve(curve),
        "abstain": None if abstain_threshold is None else accepted_metrics(scores, correct, abstain_threshold),
    }


__all__ = [
    "DEFAULT_NUM_BINS",
    "MAX_CURVE_POINTS",
    "REPORTED_COVERAGES",
    "RiskCoverage",
    "accepted_metrics",
    "accuracy_at_coverage",
    "calibration_summary",
    "downsample_curve",
    "expected_calibration_error",
    "reliability_bins",
    "risk_coverage_curve",
    "threshold_for_accuracy",
]
