"""How sure a reading is (beyond the paper): plate scores, per-character scores and the k best readings.

A reading's score is the probability the model gives its whole text, end token included: the product over generated
tokens of the next-token probability of the token taken, with every view of the plate averaged in
(`ViewAveragingLogitsProcessor`) and the log-probabilities divided by the processor's `score_temperature`, a single
number fitted on a validation split after training so that a score of 0.9 means nine plates in ten are right
(`lpllm.evaluation.score_calibration`). Dividing log-probabilities by a temperature changes no greedy choice: only the
scores move. The processor's `score_map` then maps every plate score `s` (a reading's and its candidates') to
`sigmoid(a * log(s) - b * log(1 - s) + c)` (beta calibration, Kull et al. 2017), fitted on the same split from the
readings as the model reads them (its beams and plate-pattern ranking included): a temperature scales every step
alike, and the map bends the plate score where the steps' product alone is over- or under-confident (a search over
beams picks the likeliest of several readings, so its reading is more often right than its probability says). The
map is increasing, so it changes no ranking; `(1, 1, 0)` is the identity.

A character's score is the probability of the token that wrote it; where one token writes several characters (a
stock tokenizer's) they share its probability, and where a character takes several tokens (a multi-byte character
split by a byte-level tokenizer) it gets their product. A plate's score is lower than its lowest character score, so
one blurred character cannot hide behind a high mean (the reason users ask for the minimum).

`top_k` readings come from beam search with `top_k` beams and no length penalty, so candidates are ranked by the same
probability as the score; they are the k best readings beam search finds, not an exhaustive enumeration.
"""

import math

import numpy as np
import torch
from transformers import LogitsProcessor


def check_top_k(top_k, name: str = "top_k") -> int:
    """`top_k` as a whole number >= 1; ValueError naming `name` otherwise."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"`{name}` must be a whole number >= 1 (candidate readings per plate); got {top_k!r}.")
    return int(top_k)


def check_score_temperature(temperature, name: str = "score_temperature") -> float:
    """`temperature` as a positive finite float; ValueError naming `name` otherwise."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating, np.integer)):
        raise ValueError(f"`{name}` must be a positive number; got {temperature!r}.")
    if not 0 < float(temperature) < math.inf:
        raise ValueError(f"`{name}` must be a positive finite number; got {temperature!r}.")
    return float(temperature)


def check_min_score(min_score, name: str = "min_score") -> float | None:
    """`min_score` as a float in [0, 1], or None; ValueError naming `name` otherwise."""
    if min_score is None:
        return None
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float, np.floating, np.integer)):
        raise ValueError(f"`{name}` must be a number in [0, 1] (the lowest plate score accepted) or None; got {min_score!r}.")
    if not 0.0 <= float(min_score) <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1] (the lowest plate score accepted); got {min_score!r}.")
    return float(min_score)


def check_score_map(score_map, name: str = "score_map") -> tuple[float, float, float] | None:
    """`score_map` as `(a, b, c)`, three finite floats with `a`, `b` >= 0 (an increasing map), or None; ValueError
    naming `name` otherwise."""
    if score_map is None:
        return None
    if isinstance(score_map, (str, bytes)) or not hasattr(score_map, "__len__") or len(score_map) != 3:
        raise ValueError(f"`{name}` must be three numbers (a, b, c) or None; got {score_map!r}.")
    values = []
    for value in score_map:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ValueError(f"`{name}` must be three numbers (a, b, c) or None; got {score_map!r}.")
        if not math.isfinite(float(value)):
            raise ValueError(f"`{name}` must hold finite numbers; got {score_map!r}.")
        values.append(float(value))
    if values[0] < 0 or values[1] < 0:
        raise ValueError(f"`{name}`'s a and b must be >= 0 (the map must be increasing); got {score_map!r}.")
    return tuple(values)


def map_plate_score(score: float, score_map: tuple[float, float, float] | None) -> float:
    """`score` through `score_map` (`sigmoid(a * log(score) - b * log(1 - score) + c)`); unchanged when it is None."""
    if score_map is None:
        return score
    a, b, c = score_map
    score = min(max(score, 1e-300), 1.0)
    log_right = math.log(score)
    log_wrong = math.log1p(-score) if score < 1.0 else -745.0  # the log of the smallest positive float
    logit = a * log_right - b * log_wrong + c
    return 1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (1.0 + math.exp(logit))


class CalibratedLogProbabilities(LogitsProcessor):
    """Turns next-token scores into calibrated log-probabilities: `log_softmax(log_softmax(scores) / temperature)`.
    Greedy and beam choices are those of the raw scores; `generate`'s `output_scores` then hold what a reading's score
    is computed from.

    Args:
        temperature: `score_temperature`; 1.0 leaves the model's probabilities as they are.
    """

    def __init__(self, temperature: float = 1.0):
        self.temperature = check_score_temperature(temperature)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        log_probs = torch.log_softmax(scores.float(), dim=-1)
        if self.temperature == 1.0:
            return log_probs
        return torch.log_softmax(log_probs / self.temperature, dim=-1)


def generated_token_log_probs(
    sequences: torch.LongTensor,
    step_scores: tuple[torch.FloatTensor, ...],
    eos_token_ids: list[int],
    beam_indices: torch.LongTensor | None = None,
) -> torch.FloatTensor:
    """The log-probability of every generated token, from `generate`'s processed `scores`; 0 after a row's first
    end token (the end token itself counts: a reading that should have gone on is a wrong reading).

    Args:
        sequences: `(rows, steps)` generated tokens, the prompt cut off.
        step_scores: one `(rows or rows of beams, vocab)` tensor per step, normalised log-probabilities.
        eos_token_ids: the tokens that end a reading.
        beam_indices: `(rows, steps)` from beam search: the beam row each step's token was scored in (-1: past the
            end); None for greedy decoding, where row r was scored in row r.
    """
    rows, steps = sequences.shape
    steps = min(steps, len(step_scores))
    if beam_indices is None:
        scored_rows = torch.arange(rows, device=sequences.device).unsqueeze(1).expand(rows, steps)
        valid = torch.ones(rows, steps, dtype=torch.bool, device=sequences.device)
    else:
        beam_indices = beam_indices[:, :steps].to(sequences.device)
        valid = beam_indices >= 0
        scored_rows = beam_indices.clamp(min=0)
    stacked = torch.stack([score.float() for score in step_scores[:steps]], dim=1)  # (rows of scores, steps, vocab)
    step_index = torch.arange(steps, device=sequences.device).expand(rows, steps)
    log_probs = stacked[scored_rows, step_index, sequences[:, :steps]]
    # Tokens after the first end token are padding.
    is_end = torch.isin(sequences[:, :steps], torch.tensor(eos_token_ids, device=sequences.device))
    after_end = (is_end.long().cumsum(dim=1) - is_end.long()) > 0
    return torch.where(valid & ~after_end, log_probs, torch.zeros_like(log_probs))


def spell_with_scores(tokenizer, token_ids: list[int], token_log_probs: list[float]) -> tuple[str, list[float]]:
    """The text of `token_ids` (special tokens skipped, stripped as readings are) and one probability per
    character of it: the probability of the token that wrote the character, or the product over the tokens it took.

    Args:
        tokenizer: the processor's tokenizer.
        token_ids: generated tokens up to the end token.
        token_log_probs: their log-probabilities (`generated_token_log_probs`).
    """
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    pieces = [tokenizer.decode([token], skip_special_tokens=True) for token in token_ids]
    if "".join(pieces) != text:
        # A character split over tokens (byte-level BPE) decodes only with its neighbours: take what each token adds
        # to the decoded prefix.
        pieces, previous = [], ""
        for end in range(1, len(token_ids) + 1):
            prefix = tokenizer.decode(token_ids[:end], skip_special_tokens=True)
            if prefix.startswith(previous) and "\ufffd" not in prefix[len(previous) :]:
                pieces.append(prefix[len(previous) :])
                previous = prefix
            else:
                pieces.append("")
        if previous != text:  # a decoder that rewrites its prefix: no per-character split to give
            return text.strip(), []
    characters, scores, pending = [], [], 0.0
    for piece, log_prob in zip(pieces, token_log_probs):
        pending += float(log_prob)
        if piece:
            characters.extend(piece)
            scores.extend([math.exp(pending)] * len(piece))
            pending = 0.0
    start = 0
    while start < len(characters) and characters[start].isspace():
        start += 1
    end = len(characters)
    while end > start and characters[end - 1].isspace():
        end -= 1
    return "".join(characters[start:end]), scores[start:end]


__all__ = [
    "CalibratedLogProbabilities",
    "check_min_score",
    "check_score_map",
    "check_score_temperature",
    "check_top_k",
    "generated_token_log_probs",
    "map_plate_score",
    "spell_with_scores",
]
