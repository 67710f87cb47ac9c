"""Fitting the score temperature: the fitted scores are the reading's scores, fitting lowers the calibration error
of a miscalibrated set (the temperature of a set too sure everywhere, the score map of one bent otherwise), and
calibrating a model sets (and saves) its processor's temperature, score map and threshold."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lpllm.evaluation.calibration import expected_calibration_error
from lpllm.evaluation.evaluation import read_all
from lpllm.evaluation.normalization import PlateNormalizer
from lpllm.evaluation.recognizers import VisionLanguageRecognizer
from lpllm.evaluation.score_calibration import (
    calibrate_scores,
    fit_score_map,
    fit_temperature,
    plate_log_scores,
    read_step_distributions,
)
from modeling_lpllm import LPLLMProcessor
from modeling_lpllm.plate_scores import map_plate_score
from tiny_lpllm import random_plate_image, tiny_model, tiny_processor


@pytest.fixture(scope="module")
def recognizer():
    processor = tiny_processor()
    processor.set_plate_options(num_views=2)
    model = tiny_model(processor, seed=9)
    return VisionLanguageRecognizer(model, processor, "tiny", torch.device("cpu"), max_new_tokens=8)


def samples(count: int, label: str = "AB123"):
    return [
        SimpleNamespace(id=f"plate{seed}", images=[random_plate_image(seed)], prompt=None, label=label, region=None)
        for seed in range(count)
    ]


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_refitted_scores_are_the_scores_a_reading_at_that_temperature_gives(recognizer, temperature):
    plates = samples(3)
    texts, distributions = read_step_distributions(recognizer, plates, batch_size=2)
    recognizer.processor.set_score_calibration(temperature)
    try:
        readings = recognizer.read_scored([plate.images for plate in plates])
    finally:
        recognizer.processor.set_score_calibration(1.0)
    assert texts == [reading["text"] for reading in readings]
    expected = [math.log(reading["score"]) for reading in readings]
    np.testing.assert_allclose(plate_log_scores(distributions, temperature), expected, rtol=1e-4)


def test_fitting_a_temperature_calibrates_an_overconfident_set():
    rng = np.random.default_rng(0)
    # One step per plate over two tokens whose logits differ by d: the plate is right with probability sigmoid(d),
    # and the model says sigmoid(3 d), three times too sure.
    margin = rng.uniform(-1.0, 3.0, size=4000)
    correct = rng.random(4000) < 1 / (1 + np.exp(-margin))
    model_log_probs = -np.logaddexp(0.0, -3 * np.stack([margin, -margin], axis=1))
    distributions = [np.array([[taken, taken, other]]) for taken, other in model_log_probs]
    before = expected_calibration_error(np.exp(plate_log_scores(distributions, 1.0)), correct)
    temperature = fit_temperature(distributions, correct)
    after = expected_calibration_error(np.exp(plate_log_scores(distributions, temperature)), correct)
    assert before > 0.1 and after < 0.02 and temperature == pytest.approx(3.0, rel=0.1)
    with pytest.raises(ValueError, match="one `correct` flag per plate"):
        fit_temperature(distributions, correct[:10])


def test_fitting_a_score_map_calibrates_an_underconfident_set():
    rng = np.random.default_rng(1)
    # Scores whose plates are right with probability sigmoid(log s - 0.4 log(1 - s) + 1.5), more often than the
    # scores say (as when beam search picks the likeliest of several readings).
    scores = rng.uniform(0.0, 1.0, size=6000) ** 3
    truth = (1.0, 0.4, 1.5)
    correct = rng.random(len(scores)) < np.array([map_plate_score(score, truth) for score in scores])
    score_map = fit_score_map(scores, correct)
    mapped = np.array([map_plate_score(score, score_map) for score in scores])
    assert expected_calibration_error(scores, correct) > 0.1 and expected_calibration_error(mapped, correct) < 0.02
    assert score_map == pytest.approx(truth, abs=0.25)
    # Scores that are already calibrated keep (about) the identity.
    calibrated = rng.random(len(scores)) < scores
    assert fit_score_map(scores, calibrated) == pytest.approx([1.0, 1.0, 0.0], abs=0.15)
    with pytest.raises(ValueError, match="one `correct` flag per plate"):
        fit_score_map(scores, correct[:10])


def test_calibrating_sets_the_processors_temperature_and_it_is_saved(recognizer, tmp_path):
    processor = recognizer.processor
    # A random model reads nothing right: its fitted scores must say so, and no threshold reaches 99.5%.
    fit = calibrate_scores(recognizer, samples(6), PlateNormalizer(), batch_size=4)
    try:
        assert fit.accuracy == 0.0 and fit.abstain_threshold is None
        assert processor.score_temperature == fit.temperature and processor.score_map == fit.score_map
        assert fit.ece_after <= fit.ece_before + 1e-9 and fit.log_loss_after <= fit.log_loss_before + 1e-9
        # Nothing is right: the map pulls every score down.
        assert fit.ece_mapped <= fit.ece_read + 1e-9
        processor.save_pretrained(tmp_path)
        saved = LPLLMProcessor.from_pretrained(tmp_path)
        assert saved.score_temperature == pytest.approx(fit.temperature)
        assert saved.score_map == pytest.approx(fit.score_map)
    finally:
        processor.set_score_calibration(1.0)
    with pytest.raises(ValueError, match="needs validation plates"):
        calibrate_scores(recognizer, [], PlateNormalizer())


def test_with_beams_the_map_is_fitted_to_the_readings_the_model_makes():
    """A model that reads with beams is calibrated on its beam readings (their texts and scores at the fitted
    temperature), not on the greedy pass the temperature is fitted on: a region whose one pattern is a beam the greedy
    pass does not read makes the two differ."""
    processor, normalizer, plates = tiny_processor(), PlateNormalizer(), samples(6)
    model = tiny_model(processor, seed=9)
    searched = VisionLanguageRecognizer(model, processor, "tiny", torch.device("cpu"), max_new_tokens=8, num_beams=3,
                                        top_k=3, region=None)  # fmt: skip
    candidates = searched.read_scored([plates[0].images])[0]["candidates"]
    best, other_beam = candidates[0]["text"], candidates[1]["text"]
    processor.plate_patterns = {"XX": [other_beam]}  # a literal pattern: that text alone fits it
    beams = VisionLanguageRecognizer(
        model, processor, "tiny", torch.device("cpu"), max_new_tokens=8, num_beams=3, region="XX"
    )
    read = beams.read_scored([plate.images for plate in plates])
    assert normalizer(read[0]["text"], None) != normalizer(best, None)
    for plate, reading in zip(plates[:3], read):  # half the plates labelled with what the beams read
        plate.label = normalizer(reading["text"], None)
    fit = calibrate_scores(beams, plates, normalizer, batch_size=4)

    processor.set_score_calibration(fit.temperature)  # the scores the map was fitted to: at the temperature alone
    readings = read_all(beams, plates, batch_size=4)
    right = [normalizer(text, None) == plate.label for text, plate in zip(readings.texts, plates)]
    assert right == [True] * 3 + [False] * 3 and fit.accuracy == 0.5
    assert fit.score_map == pytest.approx(fit_score_map(readings.scores, right), rel=1e-6)


def test_lpllm_calibrate_writes_a_calibrated_copy_and_refuses_to_replace_anything(tmp_path):
    import json

    from lpllm.cli import main as lpllm
    from tiny_lpllm import save_tiny_checkpoint

    model_dir, crops = tmp_path / "model", tmp_path / "crops"
    save_tiny_checkpoint(model_dir, seed=1)
    crops.mkdir()
    for seed in range(12):
        random_plate_image(seed).save(crops / f"{seed}.png")
    labels = "".join(f"{seed}.png,AB{seed:03d}\n" for seed in range(12))
    (crops / "labels.csv").write_text("file,text\n" + labels, encoding="utf-8")
    original = (model_dir / "processor_config.json").read_text(encoding="utf-8")

    output = tmp_path / "calibrated"
    # The folder is split as training splits it; its training split is read here, the tiny folder's largest.
    lpllm(["calibrate", "--model", str(model_dir), "--dataset_name", str(crops), "--split", "train",
           "--output_dir", str(output)])  # fmt: skip
    fit = json.loads((output / "score_calibration.json").read_text(encoding="utf-8"))
    assert 0 < fit["num_plates"] < 12 and fit["sources"] == [str(crops)]
    saved = json.loads((output / "processor_config.json").read_text(encoding="utf-8"))
    assert saved["score_temperature"] == pytest.approx(fit["temperature"])
    assert (model_dir / "processor_config.json").read_text(encoding="utf-8") == original  # the source is untouched
    with pytest.raises(FileExistsError, match="exists"):
        lpllm(["calibrate", "--model", str(model_dir), "--dataset_name", str(crops), "--output_dir", str(output)])
    with pytest.raises(ValueError, match="either `output_dir`"):
        lpllm(["calibrate", "--model", str(model_dir), "--dataset_name", str(crops)])
    with pytest.raises(ValueError, match="not a saved LP-LLM folder"):
        lpllm(["calibrate", "--model", str(crops), "--dataset_name", str(crops), "--in_place"])
