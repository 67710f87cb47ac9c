"""Metric values on hand-computed cases, independent of the code that computes them, and the local `evaluate`
module loading offline."""

import os
from pathlib import Path

import pytest

from lpllm.evaluation.metrics import (
    align,
    compute_plate_metrics,
    edit_distance,
    normalized_edit_distance,
    top_confusions,
    confusion_counts,
)
from lpllm.evaluation.normalization import PlateNormalizer, parse_region_maps


REPO = Path(__file__).resolve().parents[1]

# Six plates; per plate: edit distance, characters right in place, lengths (worked out by hand):
#   AB123    / AB123  : 0 edits, 5/5 in place, same length
#   AB123    / A8123  : 1 (B->8), 4/5, same length
#   XY789    / XY78   : 1 (9 deleted), 4/5, shorter
#   皖A12345 / ""     : 7 (all deleted), 0/7, shorter
#   AB12     / AB123  : 1 (3 inserted), 4/4, longer
#   CD456    / C0457  : 2 (D->0, 6->7), 3/5, same length
REFERENCES = ["AB123", "AB123", "XY789", "皖A12345", "AB12", "CD456"]
PREDICTIONS = ["AB123", "A8123", "XY78", "", "AB123", "C0457"]


def test_edit_distance_and_ned_by_hand():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "ABC") == 3
    assert edit_distance("皖A1", "皖A1") == 0
    assert normalized_edit_distance("AB12", "AB123") == pytest.approx(1 / 5)
    assert normalized_edit_distance("", "") == 0.0


def test_alignment_pairs_substitutions_deletions_insertions():
    assert align("ABC", "AXC") == [("A", "A"), ("B", "X"), ("C", "C")]
    assert align("XY789", "XY78") == [("X", "X"), ("Y", "Y"), ("7", "7"), ("8", "8"), ("9", "")]
    assert align("AB12", "AB123") == [("A", "A"), ("B", "B"), ("1", "1"), ("2", "2"), ("", "3")]
    assert align("", "") == []


def test_headline_metrics_by_hand():
    results = compute_plate_metrics(PREDICTIONS, REFERENCES)
    assert results["num_samples"] == 6
    assert results["accuracy"] == pytest.approx(1 / 6)
    # 12 edits over 5+5+5+7+4+5 = 31 label characters.
    assert results["cer"] == pytest.approx(12 / 31)
    assert results["cer_per_plate"] == pytest.approx((0 + 1 / 5 + 1 / 5 + 7 / 7 + 1 / 4 + 2 / 5) / 6)
    # NED divides by the longer string: AB12/AB123 -> 1/5.
    assert results["ned"] == pytest.approx((0 + 1 / 5 + 1 / 5 + 1 + 1 / 5 + 2 / 5) / 6)
    assert results["length_accuracy"] == pytest.approx(3 / 6)
    assert results["num_empty_predictions"] == 1


def test_partial_matches_by_hand():
    partial = compute_plate_metrics(PREDICTIONS, REFERENCES)["partial_match"]
    # >= len-1 in place: plates 1, 2, 3 and 5; >= len-2 adds CD456/C0457 (3 of 5).
    assert partial["len-1"] == pytest.approx(4 / 6)
    assert partial["len-2"] == pytest.approx(5 / 6)


def test_per_position_accuracy_by_hand():
    results = compute_plate_metrics(PREDICTIONS, REFERENCES)
    assert results["per_position_support"] == [6, 6, 6, 6, 5, 1, 1]
    expected = [5 / 6, 3 / 6, 5 / 6, 5 / 6, 2 / 5, 0.0, 0.0]
    assert results["per_position_accuracy"] == pytest.approx(expected)


def test_confusions_by_hand():
    references = ["AB123", "B8", "XY789", "AB12"]
    predictions = ["A8123", "88", "XY78", "AB123"]
    counts = confusion_counts(predictions, references)
    assert counts[("B", "8")] == 2
    assert counts[("A", "A")] == 2
    assert counts[("9", "")] == 1
    assert counts[("", "3")] == 1
    assert top_confusions(counts, top_k=3) == [
        {"label": "B", "prediction": "8", "count": 2},
        {"label": "", "prediction": "3", "count": 1},
        {"label": "9", "prediction": "", "count": 1},
    ]
    results = compute_plate_metrics(predictions, references, top_k_confusions=1)
    assert results["confusion_pairs"] == [{"label": "B", "prediction": "8", "count": 2}]
    assert results["confusion_matrix"]["B"]["8"] == 2


def test_breakdowns_by_region_source_degradation_and_severity():
    results = compute_plate_metrics(
        predictions=["AB1", "AB2", "XY9", "ZZ1"],
        references=["AB1", "AB1", "XY9", "ZZ2"],
        regions=["EU", "EU", "US", None],
        sources=["synth", "synth", "synth", "real"],
        degradations=["blur", "blur", "noise", "blur"],
        severities=[1, 2, 0.5, 2],
    )
    breakdowns = results["breakdowns"]
    assert breakdowns["region"]["EU"]["accuracy"] == pytest.approx(0.5)
    assert breakdowns["region"]["US"]["accuracy"] == 1.0
    assert "None" not in breakdowns["region"]  # unknown region is left out of that breakdown, not invented
    assert breakdowns["source"]["real"]["cer"] == pytest.approx(1 / 3)
    assert breakdowns["degradation"]["blur"]["num_samples"] == 3
    assert breakdowns["degradation"]["blur"]["accuracy"] == pytest.approx(1 / 3)
    blur = breakdowns["degradation_severity"]["blur"]
    assert list(blur) == ["1", "2"]  # numeric order
    assert blur["1"]["accuracy"] == 1.0
    assert blur["2"]["accuracy"] == 0.0
    assert blur["2"]["cer"] == pytest.approx(2 / 6)
    assert breakdowns["degradation_severity"]["noise"]["0.5"]["num_samples"] == 1


def test_empty_reference_and_length_mismatch_are_errors():
    with pytest.raises(ValueError, match="Reference 1 is empty"):
        compute_plate_metrics(["A", "B"], ["A", ""])
    with pytest.raises(ValueError, match="pair up"):
        compute_plate_metrics(["A"], ["A", "B"])


def test_normalizer_is_explicit_and_configurable():
    normalizer = PlateNormalizer()
    assert normalizer("ab-12 o3", region="US") == "AB1203"
    assert normalizer("ab-12 o3", region="EU") == "AB12O3"
    assert normalizer(None) == ""
    assert PlateNormalizer(uppercase=False)("ab-1") == "ab1"
    assert PlateNormalizer(separators="", letters_and_digits_only=False)("AB 1") == "AB 1"
    # emblems read as symbols are no part of a plate; letters and digits of every script are
    assert normalizer("RK=576*AH'") == "RK576AH"
    assert normalizer("皖a·12345") == "皖A12345"
    assert normalizer("ак 123 в") == "АК123В"
    assert PlateNormalizer(letters_and_digits_only=False)("RK=576") == "RK=576"
    cn = PlateNormalizer(region_maps=parse_region_maps(["CN:O=0,I=1"], use_defaults=False))
    assert cn("皖AOI23", region="cn") == "皖A0123"
    assert cn("AO1", region="US") == "AO1"
    assert parse_region_maps(["CN:O=0"]) == {"US": {"O": "0"}, "CN": {"O": "0"}}
    with pytest.raises(ValueError, match="REGION:A=B"):
        parse_region_maps(["O=0"])
    with pytest.raises(ValueError, match="one character"):
        parse_region_maps(["US:OO=0"])


def test_local_evaluate_module_loads_offline(monkeypatch, tmp_path):
    import evaluate

    from lpllm.evaluation import PLATE_METRICS_SCRIPT

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # the packaged script loads from anywhere, not only from a checkout
    metric = evaluate.load(str(PLATE_METRICS_SCRIPT))
    results = metric.compute(
        predictions=["ab-123", "O12", "XY78"], references=["AB123", "012", "XY789"], regions=["EU", "US", "EU"]
    )
    # "ab-123" == "AB123" after normalisation, and O reads as 0 on a US plate; XY78 misses one of 13 characters.
    assert results["accuracy"] == pytest.approx(2 / 3)
    assert results["cer"] == pytest.approx(1 / 13)
    assert results["breakdowns"]["region"]["US"]["accuracy"] == 1.0
    raw = metric.compute(predictions=["ab-123"], references=["AB123"], normalize=False)
    assert raw["accuracy"] == 0.0
    assert os.environ["HF_HUB_OFFLINE"] == "1"
