"""Runs one reader over one dataset and assembles the `results.json` payload; `evaluate_to_report` also writes the
report directory. `eval.py` and the final evaluation of a training run both go through here."""

import datetime
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import evaluate
import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from . import PLATE_METRICS_SCRIPT
from modeling_lpllm import DEFAULT_PLATE_CHARSET

from .calibration import calibration_summary
from .data import EvalData
from .efficiency import count_parameters, describe_device, measure_latency, throughput_from_batches
from .normalization import PlateNormalizer
from .outputs import prepare_output_dir
from .report import prediction_rows, write_report
from .sharding import gather_shards, shard


logger = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    """How to run an evaluation.

    Args:
        batch_size: samples read together (left-padded greedy generation for VLMs); also the throughput batch.
        latency_runs: timed batch-1 reads for the latency figures; 0 skips the latency measurement.
        latency_warmup: untimed batch-1 reads before them.
        top_k_confusions: confusion pairs listed in the report.
        track_frames: also read every track of at least `max(track_frames)` frames from its first k frames, for each
            k (`track_frames_accuracy`); None: not done.
    """

    batch_size: int = 8
    latency_runs: int = 20
    latency_warmup: int = 3
    top_k_confusions: int = 20
    track_frames: list[int] | None = None


def load_plate_metric():
    """The plate metrics as a local `evaluate` module (`plate_metrics.py`, from a checkout or a wheel; no Hub)."""
    return evaluate.load(str(PLATE_METRICS_SCRIPT))


@dataclass
class Readings:
    """What `read_all` read, one entry per sample in order.

    Args:
        texts: the raw outputs ("" for a reader that answered None).
        scores: plate-level scores in [0, 1], None where the reader gives none.
        candidates: each sample's candidate readings `{"text", "score"}`, best first, for a reader that reads
            several per plate (`top_k` > 1); None otherwise.
        batch_seconds: `(batch size, seconds)` for each batch read.
    """

    texts: list[str]
    scores: list[float | None]
    candidates: list[list[dict] | None]
    batch_seconds: list[tuple[int, float]]


def read_all(recognizer, samples, batch_size: int, state: PartialState | None = None) -> Readings:
    """Reads every sample with `recognizer` (`Readings`).

    A reader with `read_scored(batch, prompts)` (one dict per sample with `text`, `score`, the probability that the
    whole plate is right, and with several readings per plate their `candidates`) is read through it; its other keys
    are not used here. Any other reader is read with `read`, and its scores and candidates are None.

    With `state` (an `accelerate.PartialState` of several processes, `sharding.py`), each process reads its shard
    of `samples` and gets every reading back in order, with every process's batch timings.

    Raises:
        RuntimeError: when the reader answers a batch with another number of outputs, or a score outside [0, 1].
    """
    texts, scores, candidates, batch_seconds = [], [], [], []
    device = getattr(recognizer, "device", torch.device("cpu"))
    read_scored = getattr(recognizer, "read_scored", None)
    local = shard(samples, state) if state is not None else samples
    progress = state is None or state.is_main_process
    batches = range(0, len(local), batch_size)
    for start in tqdm(batches, desc=f"Reading with {recognizer.name}", unit="batch", disable=not progress):
        batch = local[start : start + batch_size]
        images, prompts = [sample.images for sample in batch], [sample.prompt for sample in batch]
        began = time.perf_counter()
        if read_scored is not None:
            readings = read_scored(images, prompts)
        else:
            readings = [{"text": text, "score": None} for text in recognizer.read(images, prompts)]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        batch_seconds.append((len(batch), time.perf_counter() - began))
        if len(readings) != len(batch):
            raise RuntimeError(
                f"{recognizer.name} returned {len(readings)} outputs for a batch of {len(batch)} samples."
            )
        for sample, reading in zip(batch, readings):
            text = reading.get("text")
            texts.append("" if text is None else str(text))
            scores.append(_checked_score(reading.get("score"), recognizer.name, sample.id))
            candidates.append(_checked_candidates(reading.get("candidates"), recognizer.name, sample.id))
    if state is not None:
        texts, scores = gather_shards(texts, state), gather_shards(scores, state)
        candidates, batch_seconds = gather_shards(candidates, state), gather_shards(batch_seconds, state)
    return Readings(texts, scores, candidates, batch_seconds)


def _checked_score(score, reader: str, sample_id: str) -> float | None:
    if score is None:
        return None
    score = float(score)
    if not 0.0 <= score <= 1.0:  # also refuses NaN
        raise RuntimeError(f"{reader} scored sample {sample_id} {score}; a plate score must be in [0, 1].")
    return score


def _checked_candidates(candidates, reader: str, sample_id: str) -> list[dict] | None:
    if candidates is None:
        return None
    return [
        {
            "text": "" if candidate.get("text") is None else str(candidate["text"]),
            "score": _checked_score(candidate.get("score"), reader, sample_id),
        }
        for candidate in candidates
    ]


def _top_k_accuracy(samples, readings: Readings, normalizer: PlateNormalizer) -> dict | None:
    """The `top_k` block: `k`, the most candidates read per plate, and `accuracy`, the share of plates whose label is
    among their candidates' normalised texts; None when the reader read one text per plate."""
    if all(candidates is None for candidates in readings.candidates):
        return None
    found = []
    for sample, text, candidates in zip(samples, readings.texts, readings.candidates):
        texts = [candidate["text"] for candidate in candidates] if candidates is not None else [text]
        found.append(sample.label in {normalizer(candidate, sample.region) for candidate in texts})
    k = max(len(candidates) for candidates in readings.candidates if candidates is not None)
    return {"k": k, "accuracy": sum(found) / len(found)}


def _abstain_threshold(recognizer) -> float | None:
    """The score below which the reader's model abstains (saved with it by training), None when it has none."""
    threshold = getattr(recognizer, "abstain_threshold", None)
    if threshold is None:
        return None
    if not 0.0 <= float(threshold) <= 1.0:  # also refuses NaN
        raise ValueError(f"{recognizer.name} has abstain_threshold {threshold}; it must be in [0, 1].")
    return float(threshold)


def _calibration(
    recognizer, scores: list[float | None], correct: list[bool], threshold: float | None
) -> dict | None:
    """The `calibration` block over the scored samples (`calibration_summary`), with `num_unscored`; None when the
    reader scored none."""
    scored = [(score, right) for score, right in zip(scores, correct) if score is not None]
    if not scored:
        if threshold is not None:
            logger.warning("%s has an abstain threshold but scored no plate: no calibration report.", recognizer.name)
        return None
    if len(scored) < len(scores):
        logger.warning(
            "%s scored %d of %d plates; calibration covers the scored ones.", recognizer.name, len(scored), len(scores)
        )
    block = calibration_summary([score for score, _ in scored], [right for _, right in scored], threshold)
    return {**block, "num_unscored": len(scores) - len(scored)}


def track_indices(samples, track_frames: list[int]) -> list[int]:
    """The places in `samples` of the tracks read by `track_frames_accuracy`: those of at least `max(track_frames)`
    frames, so that every k reads the same plates.

    Raises:
        ValueError: when no sample has that many frames (the most frames a sample has is in the message).
    """
    needed = max(track_frames)
    indices = [index for index, sample in enumerate(samples) if len(sample.images) >= needed]
    if not indices:
        most = max((len(sample.images) for sample in samples), default=0)
        raise ValueError(
            f"`track_frames` {list(track_frames)} reads tracks of at least {needed} frames; the samples have at most "
            f"{most}. Give frame counts up to {most}, or a multi-frame dataset (`--frames N` when building it)."
        )
    return indices


def track_frames_accuracy(
    recognizer,
    samples,
    track_frames: list[int],
    normalizer: PlateNormalizer,
    batch_size: int,
    state: PartialState | None = None,
    full_track_texts: list[str] | None = None,
) -> dict:
    """Exact match of the tracks (`track_indices`) read from their first k frames, for each k of `track_frames`, by
    the reader's own fusion: the `track_frames` block of results.json, `{"frames", "fusion", "num_tracks",
    "accuracy", "per_degradation": {name: {"num_tracks", "accuracy"}}}`, each `accuracy` a list in the order of
    `frames` (ascending). `full_track_texts`, the readings of every sample from all its frames, spare reading again a
    track whose k frames are all it has."""
    frames = sorted(track_frames)
    indices = track_indices(samples, frames)
    tracks = [samples[index] for index in indices]
    correct = {}
    for k in frames:
        texts = {}
        if full_track_texts is not None:
            texts = {
                place: full_track_texts[index] for place, index in enumerate(indices) if len(samples[index].images) == k
            }
        to_read = [place for place in range(len(tracks)) if place not in texts]
        if to_read:
            first_frames = [replace(tracks[place], images=tracks[place].images[:k]) for place in to_read]
            texts.update(zip(to_read, read_all(recognizer, first_frames, batch_size, state).texts))
        correct[k] = [normalizer(texts[place], track.region) == track.label for place, track in enumerate(tracks)]
    by_degradation = defaultdict(list)
    for place, track in enumerate(tracks):
        by_degradation[track.degradation or "none"].append(place)

    def accuracy(places):
        return [sum(correct[k][place] for place in places) / len(places) for k in frames]

    return {
        "frames": frames,
        "fusion": getattr(recognizer, "fusion", None),
        "num_tracks": len(tracks),
        "accuracy": accuracy(range(len(tracks))),
        "per_degradation": {
            name: {"num_tracks": len(places), "accuracy": accuracy(places)}
            for name, places in sorted(by_degradation.items())
        },
    }


def evaluate_recognizer(
    recognizer,
    data: EvalData,
    metric,
    normalizer: PlateNormalizer,
    settings: EvalSettings,
    charset: str | None,
    state: PartialState | None = None,
) -> tuple[dict, list[dict]]:
    """Reads `data` with `recognizer` and scores it with `metric` (the `plate_metrics.py` evaluate module).

    With `state` (several processes, `sharding.py`), the processes share the reading and each gets the same
    metrics; the main process alone measures latency, and the throughput is per process.

    A reader that scores its plates (`read_all`) also gets the `calibration` block (`calibration.calibration_summary`
    over its scored samples, with its `abstain_threshold` when it has one); for any other reader it is None. A reader
    of several candidates per plate (`top_k` > 1) gets the `top_k` block (`{"k", "accuracy"}`: the share of plates
    whose label is among the normalised candidates); for any other reader it is None. With `settings.track_frames`,
    the `track_frames` block (`track_frames_accuracy`); None without.

    Returns:
        `(results payload for results.json, rows for predictions.csv)`.

    Raises:
        ValueError: when no sample of `data` can be evaluated (the reasons of the first few are in the message), or
            the reader's `abstain_threshold` is outside [0, 1].
    """
    samples = data.samples
    if not samples:
        reasons = "; ".join(f"{e.id}: {e.reason}" for e in data.excluded[:5])
        raise ValueError(f"No sample of {data.path} can be evaluated ({len(data.excluded)} excluded: {reasons}).")
    threshold = _abstain_threshold(recognizer)
    logger.info("Evaluating %s on %d samples of %s", recognizer.name, len(samples), data.name)
    readings = read_all(recognizer, samples, settings.batch_size, state)
    # An empty or unreadable answer becomes "" and simply counts as wrong.
    predictions = [normalizer(raw, sample.region) for raw, sample in zip(readings.texts, samples)]
    metrics = metric.compute(
        predictions=predictions,
        references=[sample.label for sample in samples],
        regions=[sample.region for sample in samples],
        sources=[sample.source for sample in samples],
        subsets=[sample.subset for sample in samples],
        degradations=[sample.degradation for sample in samples],
        severities=[sample.severity for sample in samples],
        normalize=False,
        top_k_confusions=settings.top_k_confusions,
    )
    latency = None
    if settings.latency_runs > 0 and (state is None or state.is_main_process):
        items = [(sample.images, sample.prompt) for sample in samples[: settings.latency_runs]]
        latency = measure_latency(
            recognizer.read, items, recognizer.device, warmup=settings.latency_warmup, runs=settings.latency_runs
        )
    # Readers that are not torch modules (an ONNX graph) count their own weights.
    counter = getattr(recognizer, "parameter_counts", None)
    parameters = counter() if counter else count_parameters(recognizer.model)
    description = recognizer.describe()
    results = {
        **metrics,
        "model": {
            "name": recognizer.name,
            "path": getattr(recognizer, "path", None),
            "paradigm": recognizer.paradigm,
            "parameters": parameters,
            "description": description,
            "training": description.pop("training", None),
        },
        "dataset": {
            "name": data.name,
            "path": data.path,
            "split": data.split,
            "num_rows": len(samples) + len(data.excluded),
            "num_evaluated": len(samples),
            "num_excluded": len(data.excluded),
            "multi_frame": any(len(sample.images) > 1 for sample in samples),
        },
        "excluded": [{"id": e.id, "file": e.file, "reason": e.reason} for e in data.excluded],
        "efficiency": {
            "device": describe_device(recognizer.device),
            "processes": 1 if state is None else state.num_processes,
            "parameters": parameters,
            "latency": latency,
            "throughput": throughput_from_batches(readings.batch_seconds, settings.batch_size),
            "total_read_seconds": sum(seconds for _, seconds in readings.batch_seconds),
        },
        "top_k": _top_k_accuracy(samples, readings, normalizer),
        "calibration": _calibration(
            recognizer,
            readings.scores,
            [prediction == sample.label for prediction, sample in zip(predictions, samples)],
            threshold,
        ),
        "track_frames": None,
        "normalization": normalizer.to_dict(),
        "charset": charset,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if settings.track_frames:
        results["track_frames"] = track_frames_accuracy(
            recognizer, samples, settings.track_frames, normalizer, settings.batch_size, state, readings.texts
        )
    return results, prediction_rows(samples, readings.texts, predictions, readings.scores, readings.candidates)


def evaluate_to_report(
    recognizer,
    data: EvalData,
    output_dir: str | Path,
    metric=None,
    normalizer: PlateNormalizer | None = None,
    settings: EvalSettings | None = None,
    charset: str | None = DEFAULT_PLATE_CHARSET,
    command: list[str] | None = None,
    overwrite: bool = True,
    state: PartialState | None = None,
) -> dict:
    """`evaluate_recognizer`, then the report (`write_report`) in `output_dir`, which `eval.py --compare` reuses as
    it is. Defaults are eval.py's: the plate metric, `PlateNormalizer()`, `EvalSettings()`, `DEFAULT_PLATE_CHARSET`.

    Args:
        data: loaded with the same `normalizer` and `charset` (`load_eval_data`).
        command: the command line recorded in `results.json`.
        overwrite: replace the reports of an earlier run in `output_dir` (`prepare_output_dir`).
        state: several processes share the reading (`evaluate_recognizer`); the main process writes the report.

    Returns:
        The results written to `results.json`.
    """
    output_dir = prepare_output_dir(output_dir, overwrite=overwrite)
    results, rows = evaluate_recognizer(
        recognizer,
        data,
        metric if metric is not None else load_plate_metric(),
        normalizer if normalizer is not None else PlateNormalizer(),
        settings if settings is not None else EvalSettings(),
        charset,
        state,
    )
    results["command"] = command
    if state is None or state.is_main_process:
        write_report(output_dir, results, rows)
    return results


__all__ = [
    "EvalSettings",
    "Readings",
    "evaluate_recognizer",
    "evaluate_to_report",
    "load_plate_metric",
    "read_all",
    "track_frames_accuracy",
    "track_indices",
]
