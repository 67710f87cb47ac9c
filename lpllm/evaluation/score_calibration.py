"""Fitting a reader's score temperature and abstain threshold on a validation split (beyond the paper).

An LP-LLM reading's score is the product of its tokens' probabilities (`modeling_lpllm.plate_scores`). A small model
trained for minutes is over- or under-confident; one temperature `T`, dividing every step's log-probabilities before
they are renormalised, moves the scores without changing any reading. `T` is the one whose scores best predict
which validation plates were read right (lowest log loss), found on a grid in log space. Then the plates are read as
the model reads them (its `num_beams`, candidates ranked by plate pattern) and a score map (`score_map`, beta
calibration: `sigmoid(a log s - b log(1 - s) + c)`, `modeling_lpllm.plate_scores`) is fitted to those readings'
scores at `T`, pulled towards the identity so that a few plates move it little. The abstain threshold is then the
lowest mapped score whose accepted validation plates are `target_accuracy` right
(`calibration.threshold_for_accuracy`). All three are saved in the processor (`LPLLMProcessor.set_score_calibration`).

Refitting `T` needs every step's whole next-token distribution; the `STEP_TOP_K` most probable tokens of each step
stand for it (the rest of a character-level vocabulary, or of a 151k-token one, holds a negligible share at the
temperatures the grid spans).
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from modeling_lpllm.plate_reading import (
    decode_plate_outputs,
    end_token_ids,
    first_rows,
    generate_plate_outputs,
    plate_reading_inputs,
    reading_group_sizes,
)
from modeling_lpllm.plate_scores import map_plate_score

from .calibration import expected_calibration_error, threshold_for_accuracy
from .evaluation import read_all


logger = logging.get_logger(__name__)

# Written beside a calibrated model: the fit, its split and sources.
SCORE_CALIBRATION_FILE = "score_calibration.json"
STEP_TOP_K = 256
# Temperatures tried: 0.05 to 20, evenly in log space (a factor of ~1.025 between neighbours).
TEMPERATURE_GRID = np.exp(np.linspace(math.log(0.05), math.log(20.0), 241))
DEFAULT_TARGET_ACCURACY = 0.995


@dataclass
class ScoreCalibration:
    """What fitting found on the validation plates.

    Args:
        temperature: the fitted `score_temperature`.
        score_map: the fitted `score_map` `(a, b, c)`.
        abstain_threshold: the lowest score whose accepted plates reached `target_accuracy`; None if none did.
        target_accuracy: the accuracy the threshold was chosen for.
        num_plates: validation plates read.
        accuracy: their exact-match accuracy, read as the model reads them (`num_beams`, pattern ranking).
        ece_before / ece_after: expected calibration error of the greedy readings at temperature 1 and at
            `temperature`.
        log_loss_before / log_loss_after: the temperature's objective at temperature 1 and at `temperature`.
        ece_read / ece_mapped: expected calibration error of the readings as the model reads them, at `temperature`
            without and with `score_map`.
    """

    temperature: float
    score_map: list[float]
    abstain_threshold: float | None
    target_accuracy: float
    num_plates: int
    accuracy: float
    ece_before: float
    ece_after: float
    log_loss_before: float
    log_loss_after: float
    ece_read: float
    ece_mapped: float

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def read_step_distributions(recognizer, samples, batch_size: int = 8) -> tuple[list[str], list[np.ndarray]]:
    """Reads `samples` (evaluation samples) greedily at temperature 1 as `recognizer` (a `VisionLanguageRecognizer`)
    reads them, and returns each plate's raw text and its `(steps, STEP_TOP_K + 1)` log-probabilities: per step
    through the end token, the taken token's first, then the step's most probable tokens."""
    model, processor, num_views = recognizer.model, recognizer.processor, recognizer.num_views
    eos_token_ids = end_token_ids(model, processor)
    texts, distributions = [], []
    for start in tqdm(range(0, len(samples), batch_size), desc="Calibrating scores", unit="batch"):
        batch = samples[start : start + batch_size]
        prompts = [recognizer.prompt or sample.prompt for sample in batch]
        images = [sample.images for sample in batch]
        group_sizes = reading_group_sizes(images, num_views, recognizer.fusion)
        inputs = plate_reading_inputs(processor, images, prompts, num_views, recognizer.fusion)
        outputs = generate_plate_outputs(
            model, processor, inputs.to(model.device), group_sizes, recognizer.max_new_tokens, score_temperature=1.0,
            return_step_scores=True,
        )
        readings = decode_plate_outputs(processor, outputs, group_sizes, 1, eos_token_ids)
        texts.extend(reading["text"] for reading in readings)
        scores = torch.stack(outputs["step_scores"], dim=1).float()  # (rows, steps, vocab)
        top = scores.topk(min(STEP_TOP_K, scores.shape[-1]), dim=-1).values
        for row in first_rows(group_sizes, scores.shape[0]):
            tokens = outputs["sequences"][row].tolist()
            steps = next((step + 1 for step, token in enumerate(tokens) if token in eos_token_ids), len(tokens))
            steps = min(steps, scores.shape[1])
            taken = scores[row, torch.arange(steps), outputs["sequences"][row, :steps]]
            distributions.append(torch.cat([taken.unsqueeze(1), top[row, :steps]], dim=1).cpu().numpy())
    return texts, distributions


def plate_log_scores(distributions: list[np.ndarray], temperature: float) -> np.ndarray:
    """Each plate's log score at `temperature`: the sum over its steps of the taken token's log-probability divided by
    `temperature`, renormalised over the step's most probable tokens."""
    totals = np.empty(len(distributions))
    for index, steps in enumerate(distributions):
        scaled = steps / temperature
        top = scaled[:, 1:]
        peak = top.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(top - peak).sum(axis=1))
        totals[index] = float(np.sum(scaled[:, 0] - log_norm))
    return np.minimum(totals, 0.0)


def log_loss(log_scores: np.ndarray, correct: np.ndarray) -> float:
    """Mean binary cross-entropy of the scores `exp(log_scores)` against `correct`."""
    log_scores = np.minimum(log_scores, -1e-12)
    log_wrong = np.log(-np.expm1(log_scores))  # log(1 - score), exact for scores near 1
    return float(-np.mean(np.where(correct, log_scores, log_wrong)))


def fit_temperature(distributions: list[np.ndarray], correct) -> float:
    """The temperature of `TEMPERATURE_GRID` whose plate scores have the lowest log loss against `correct`."""
    correct = np.asarray(correct, dtype=bool)
    if len(distributions) != len(correct) or not len(correct):
        raise ValueError(
            f"Fitting a temperature needs one `correct` flag per plate and at least one plate; got "
            f"{len(distributions)} plates and {len(correct)} flags."
        )
    losses = [log_loss(plate_log_scores(distributions, temperature), correct) for temperature in TEMPERATURE_GRID]
    return float(TEMPERATURE_GRID[int(np.argmin(losses))])


def fit_score_map(scores, correct) -> list[float]:
    """The score map `(a, b, c)` (`sigmoid(a log s - b log(1 - s) + c)`, a, b > 0) of lowest log loss against
    `correct`, with a penalty of `(log a)^2 + (log b)^2 + c^2` over the number of plates: the identity `(1, 1, 0)` is
    where the penalty is 0, so a few plates, or plates all right, move it little."""
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if len(scores) != len(correct) or not len(correct):
        raise ValueError(
            f"Fitting a score map needs one `correct` flag per plate and at least one plate; got {len(scores)} "
            f"scores and {len(correct)} flags."
        )
    clipped = np.clip(scores, 1e-300, 1.0)
    log_right = torch.from_numpy(np.log(clipped))
    log_wrong = torch.from_numpy(np.log1p(-np.minimum(clipped, 1.0 - 1e-16)))
    target = torch.from_numpy(correct)
    params = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # log a, log b, c
    optimizer = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = params[0].exp() * log_right - params[1].exp() * log_wrong + params[2]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        loss = loss + params.pow(2).sum() / len(target)
        loss.backward()
        return loss

    optimizer.step(closure)
    log_a, log_b, c = params.detach().tolist()
    return [math.exp(log_a), math.exp(log_b), c]


def calibrate_scores(
    recognizer, samples, normalizer, batch_size: int = 8, target_accuracy: float = DEFAULT_TARGET_ACCURACY
) -> ScoreCalibration:
    """Fits `recognizer`'s score temperature and abstain threshold on `samples` (validation plates, never the test
    split) and sets them on its processor (`set_score_calibration`); save the processor to keep them.

    Args:
        normalizer: the evaluation's `PlateNormalizer`: a plate is right when its normalised reading is its label.
        target_accuracy: the accuracy the abstain threshold's accepted plates must reach.

    Raises:
        ValueError: for no samples, or a processor without `set_score_calibration` (a stock Qwen3-VL one).
    """
    if not samples:
        raise ValueError("Calibrating scores needs validation plates; got none.")
    if not hasattr(recognizer.processor, "set_score_calibration"):
        raise ValueError(
            f"A {type(recognizer.processor).__name__} cannot hold a score calibration: calibrate an LP-LLM checkpoint."
        )
    texts, distributions = read_step_distributions(recognizer, samples, batch_size)
    correct = np.array([normalizer(text, sample.region) == sample.label for text, sample in zip(texts, samples)])
    temperature = fit_temperature(distributions, correct)
    before, after = plate_log_scores(distributions, 1.0), plate_log_scores(distributions, temperature)
    # The temperature alone for now: an earlier map or threshold in the processor must not bend the scores the map
    # is fitted to.
    recognizer.processor.set_score_calibration(temperature)
    if recognizer.num_beams > 1:
        # Beam search and pattern ranking may read other texts than the greedy pass: the map is fitted to what the
        # model reads.
        readings = read_all(recognizer, samples, batch_size)
        scores = np.asarray(readings.scores, dtype=np.float64)
        read_correct = np.array(
            [normalizer(text, sample.region) == sample.label for text, sample in zip(readings.texts, samples)]
        )
    else:
        scores, read_correct = np.exp(after), correct
    score_map = fit_score_map(scores, read_correct)
    mapped = np.array([map_plate_score(float(score), score_map) for score in scores])
    threshold = threshold_for_accuracy(mapped, read_correct, target_accuracy)
    recognizer.processor.set_score_calibration(temperature, threshold, score_map)
    fit = ScoreCalibration(
        temperature=temperature,
        score_map=score_map,
        abstain_threshold=threshold,
        target_accuracy=target_accuracy,
        num_plates=len(samples),
        accuracy=float(read_correct.mean()),
        ece_before=expected_calibration_error(np.exp(before), correct),
        ece_after=expected_calibration_error(np.exp(after), correct),
        log_loss_before=log_loss(before, correct),
        log_loss_after=log_loss(after, correct),
        ece_read=expected_calibration_error(scores, read_correct),
        ece_mapped=expected_calibration_error(mapped, read_correct),
    )
    logger.warning(
        f"Score calibration on {fit.num_plates} validation plates ({100 * fit.accuracy:.2f}% right): temperature "
        f"{fit.temperature:.3g}, score map ({', '.join(f'{value:.3g}' for value in score_map)}), ECE "
        f"{100 * fit.ece_before:.2f}% -> {100 * fit.ece_mapped:.2f}%, abstain threshold "
        f"{'none reaches' if threshold is None else f'{threshold:.4g}'} ({100 * target_accuracy:g}% of accepted right)"
    )
    return fit


__all__ = [
    "DEFAULT_TARGET_ACCURACY",
    "SCORE_CALIBRATION_FILE",
    "STEP_TOP_K",
    "ScoreCalibration",
    "calibrate_scores",
    "fit_score_map",
    "fit_temperature",
    "log_loss",
    "plate_log_scores",
    "read_step_distributions",
]
