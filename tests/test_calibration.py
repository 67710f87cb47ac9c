"""Calibration metrics on hand-computed toys and seeded synthetic sets, and the evaluation report of a reader that
scores its plates (the score column, the `calibration` block, the confidence section, both plots, the table
columns) next to one that does not."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lpllm.evaluation.calibration import (
    accepted_metrics,
    accuracy_at_coverage,
    downsample_curve,
    expected_calibration_error,
    reliability_bins,
    risk_coverage_curve,
    threshold_for_accuracy,
)
from lpllm.evaluation.data import load_eval_data
from lpllm.evaluation.evaluation import EvalSettings, evaluate_to_report, read_all
from lpllm.evaluation.tables import comparison_table
from test_eval_helpers import save_plate_dataset, standard_splits


# Five plates, two tied at 0.8 (one right, one wrong). Distinct thresholds 0.9 / 0.8 / 0.5 / 0.1 accept 1 / 3 / 4 / 5
# plates, of which 1 / 2 / 3 / 3 are right.
TOY_SCORES = [0.9, 0.8, 0.8, 0.5, 0.1]
TOY_CORRECT = [1, 1, 0, 1, 0]


def test_ece_by_hand_on_four_plates():
    scores, correct = [0.9, 0.8, 0.3, 0.2], [True, False, False, True]
    # 15 bins: one plate per bin, so ECE = mean |correct - score| = (0.1 + 0.8 + 0.3 + 0.8) / 4.
    assert expected_calibration_error(scores, correct) == pytest.approx(0.5)
    # 2 bins: [0, 0.5) holds 0.3, 0.2 (mean 0.25, accuracy 0.5), [0.5, 1] holds 0.9, 0.8 (mean 0.85, accuracy 0.5).
    assert expected_calibration_error(scores, correct, num_bins=2) == pytest.approx(0.5 * 0.25 + 0.5 * 0.35)
    bins = reliability_bins(scores, correct, num_bins=2)
    assert [(b["lower"], b["upper"], b["count"]) for b in bins] == [(0.0, 0.5, 2), (0.5, 1.0, 2)]
    assert bins[0]["mean_score"] == pytest.approx(0.25) and bins[1]["accuracy"] == 0.5
    # A score of exactly 1 falls in the last bin; empty bins are listed with no mean or accuracy.
    bins = reliability_bins([1.0, 0.0], [1, 0], num_bins=4)
    assert [b["count"] for b in bins] == [1, 0, 0, 1]
    assert bins[1]["mean_score"] is None and bins[1]["accuracy"] is None


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(0)
    scores = rng.random(20_000)
    calibrated = rng.random(20_000) < scores
    overconfident = rng.random(20_000) < scores**3  # true accuracy s^3: expected ECE = integral of s - s^3 = 0.25
    assert expected_calibration_error(scores, calibrated) < 0.02
    assert expected_calibration_error(scores, overconfident) > 0.2


def test_risk_coverage_by_hand_with_ties_accepted_together():
    curve = risk_coverage_curve(TOY_SCORES, TOY_CORRECT)
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.5, 0.1])
    np.testing.assert_allclose(curve.coverage, [0.2, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(curve.accuracy, [1.0, 2 / 3, 3 / 4, 3 / 5])
    # Each group's share of plates times the risk once it is accepted.
    assert curve.aurc == pytest.approx(0.2 * 0 + 0.4 * (1 / 3) + 0.2 * (1 / 4) + 0.2 * (2 / 5))
    # The input order changes nothing, ties included.
    order = [2, 4, 0, 3, 1]
    shuffled = risk_coverage_curve([TOY_SCORES[i] for i in order], [TOY_CORRECT[i] for i in order])
    np.testing.assert_allclose(shuffled.accuracy, curve.accuracy)
    assert shuffled.aurc == curve.aurc


def test_accuracy_at_coverage_splits_a_boundary_tie_in_proportion():
    assert accuracy_at_coverage(TOY_SCORES, TOY_CORRECT, 1.0) == pytest.approx(3 / 5)
    assert accuracy_at_coverage(TOY_SCORES, TOY_CORRECT, 0.9) == pytest.approx(3 / 5)  # ceil(4.5) = 5 plates
    assert accuracy_at_coverage(TOY_SCORES, TOY_CORRECT, 0.6) == pytest.approx(2 / 3)  # 3 plates, not 4
    # 2 plates: 0.9 (right) and half of the 0.8 tie (one right of two).
    assert accuracy_at_coverage(TOY_SCORES, TOY_CORRECT, 0.4) == pytest.approx((1 + 0.5) / 2)


def test_threshold_for_accuracy_and_accepted_metrics():
    # Accuracy 1, 2/3, 3/4, 3/5 as the threshold drops: 0.7 is reached again lower down, at 0.5.
    assert threshold_for_accuracy(TOY_SCORES, TOY_CORRECT, target=0.7) == 0.5
    assert threshold_for_accuracy(TOY_SCORES, TOY_CORRECT, target=1.0) == 0.9
    assert threshold_for_accuracy(TOY_SCORES, TOY_CORRECT, target=0.6) == 0.1
    assert threshold_for_accuracy([0.9, 0.2], [0, 0]) is None
    assert accepted_metrics(TOY_SCORES, TOY_CORRECT, 0.5) == {
        "threshold": 0.5,
        "num_accepted": 4,
        "coverage": 0.8,
        "accuracy": 0.75,
    }
    nothing = accepted_metrics(TOY_SCORES, TOY_CORRECT, 0.95)
    assert nothing["num_accepted"] == 0 and nothing["coverage"] == 0.0 and nothing["accuracy"] is None


def test_the_saved_curve_keeps_at_most_101_points_and_both_ends():
    rng = np.random.default_rng(1)
    curve = risk_coverage_curve(rng.random(1000), rng.random(1000) < 0.7)
    saved = downsample_curve(curve)
    assert 50 < len(saved["coverage"]) <= 101
    assert saved["coverage"][0] == curve.coverage[0] and saved["coverage"][-1] == 1.0
    assert saved["threshold"][0] == curve.thresholds[0] and saved["accuracy"][-1] == curve.accuracy[-1]
    assert downsample_curve(risk_coverage_curve(TOY_SCORES, TOY_CORRECT))["coverage"] == pytest.approx(
        [0.2, 0.6, 0.8, 1.0]
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: expected_calibration_error([0.5, 0.5], [1]), "differ in length: 2 scores for 1 plates"),
        (lambda: expected_calibration_error([0.5, 1.5], [1, 0]), r"scores must be .* scores\[1\] = 1.5"),
        (lambda: risk_coverage_curve([0.5, float("nan")], [1, 0]), r"scores\[1\] = nan"),
        (lambda: reliability_bins([0.5, 0.4], [1, 2]), r"correct must be booleans or 0/1; correct\[1\] = 2"),
        (lambda: expected_calibration_error([], []), "scores is empty"),
        (lambda: expected_calibration_error([0.5], [1], num_bins=0), "num_bins must be a positive integer"),
        (lambda: accuracy_at_coverage([0.5], [1], 0.0), r"coverage must be in \(0, 1\]"),
        (lambda: threshold_for_accuracy([0.5], [1], target=1.5), r"target must be in \(0, 1\]"),
        (lambda: accepted_metrics([0.5], [1], float("nan")), r"threshold must be in \[0, 1\]"),
    ],
)
def test_bad_input_names_the_field(call, message):
    with pytest.raises(ValueError, match=message):
        call()


class FakeReader:
    """A reader with fixed answers: with `scores`, it also has `read_scored` and the model's abstain threshold."""

    paradigm, device = "fake", torch.device("cpu")

    def __init__(self, name, answers, scores=None, abstain_threshold=None):
        self.name = name
        self.answers = dict(answers)
        self.model = torch.nn.Linear(2, 1)
        if scores is not None:
            self.scores = dict(scores)
            self.abstain_threshold = abstain_threshold
            self.read_scored = self._read_scored

    def read(self, batch, prompts):
        return [self.answers[len(images), image_key(images)] for images in batch]

    def _read_scored(self, batch, prompts):
        keys = [(len(images), image_key(images)) for images in batch]
        return [{"text": self.answers[key], "score": self.scores[key], "char_scores": []} for key in keys]

    def describe(self):
        return {"model_type": "fake"}


def image_key(images):
    return images[0].tobytes()[:16]


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    directory = save_plate_dataset(tmp_path_factory.mktemp("plates") / "data", standard_splits())
    return load_eval_data(directory, "test")


def answers_for(data, texts):
    return {(len(sample.images), image_key(sample.images)): text for sample, text in zip(data.samples, texts)}


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_scoring_reader_gets_the_confidence_report(test_split, tmp_path):
    # Labels 皖A88888, AB999, XY111, CD222: right at 0.9, right at 0.8, wrong at 0.3, right but unscored.
    answers = answers_for(test_split, ["皖A88888", "AB999", "XY112", "CD222"])
    scores = answers_for(test_split, [0.9, 0.8, 0.3, None])
    reader = FakeReader("scored", answers, scores, abstain_threshold=0.5)
    output = tmp_path / "report"
    results = evaluate_to_report(reader, test_split, output, settings=EvalSettings(batch_size=3, latency_runs=0))
    saved = json.loads((output / "results.json").read_text(encoding="utf-8"))
    calibration = saved["calibration"]
    assert calibration == results["calibration"]
    assert calibration["num_scored"] == 3 and calibration["num_unscored"] == 1
    assert calibration["ece"] == pytest.approx((0.1 + 0.2 + 0.3) / 3)  # one scored plate per bin
    assert calibration["num_bins"] == 15 and len(calibration["reliability"]) == 15
    assert calibration["accuracy_at_coverage"] == pytest.approx({"100": 2 / 3, "95": 2 / 3, "90": 2 / 3})
    assert calibration["risk_coverage"]["coverage"] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert calibration["risk_coverage"]["accuracy"] == pytest.approx([1.0, 1.0, 2 / 3])
    assert calibration["abstain"] == {"threshold": 0.5, "num_accepted": 2, "coverage": pytest.approx(2 / 3),
                                      "accuracy": 1.0}  # fmt: skip
    rows = read_csv(output / "predictions.csv")
    assert [row["score"] for row in rows] == ["0.9", "0.8", "0.3", ""]
    markdown = (output / "results.md").read_text(encoding="utf-8")
    assert "## Confidence" in markdown and "| ECE (%), 15 equal-width bins | 20.00 |" in markdown
    assert "| Coverage at the threshold (%) | 66.67 |" in markdown
    assert "| Method | Paradigm | Acc. (%) ↑ | ECE (%) ↓ | Acc. @90% cov. (%) ↑ | CER (%) ↓ |" in markdown
    for name in ("reliability_diagram.png", "risk_coverage.png"):
        with Image.open(output / name) as image:
            assert image.format == "PNG" and image.width > 100
        assert f"]({name})" in markdown


def test_a_reader_without_scores_gets_no_confidence_report(test_split, tmp_path):
    reader = FakeReader("plain", answers_for(test_split, ["皖A88888", "AB999", "XY112", "CD222"]))
    output = tmp_path / "report"
    results = evaluate_to_report(reader, test_split, output, settings=EvalSettings(batch_size=2, latency_runs=0))
    assert results["accuracy"] == 0.75 and results["calibration"] is None
    assert json.loads((output / "results.json").read_text(encoding="utf-8"))["calibration"] is None
    assert [row["score"] for row in read_csv(output / "predictions.csv")] == ["", "", "", ""]
    markdown = (output / "results.md").read_text(encoding="utf-8")
    assert "## Confidence" not in markdown and "ECE" not in markdown
    assert not (output / "reliability_diagram.png").exists() and not (output / "risk_coverage.png").exists()
    assert (output / "per_position_accuracy.png").is_file()
    # Side by side with a scoring reader, it gets dashes in the confidence columns.
    scored = {**results, "model": {"name": "scored"}, "calibration": {"ece": 0.031, "accuracy_at_coverage": {"90": 1}}}
    table = comparison_table([scored, results])
    assert "| scored | – | 75.00 | 3.10 | 100.00 |" in table
    assert "| plain | fake | 75.00 | – | – |" in table


def test_read_all_refuses_a_score_outside_0_1(test_split):
    reader = FakeReader(
        "broken",
        answers_for(test_split, ["A", "B", "C", "D"]),
        answers_for(test_split, [0.5, 1.2, 0.5, 0.5]),
    )
    with pytest.raises(RuntimeError, match="broken scored sample plate-21 1.2; a plate score must be in"):
        read_all(reader, test_split.samples, batch_size=4)
