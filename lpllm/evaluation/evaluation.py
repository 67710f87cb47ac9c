"""Runs one reader over one dataset and assembles the `results.json` payload; `evaluate_to_report` also writes the
report directory. `eval.py` and the final evaluation of a training run both go through here."""

import datetime
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import evaluate
import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from . import PLATE_METRICS_SCRIPT
from modeling_lpllm import DEFAULT_PLATE_CHARSET

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
    """

    batch_size: int = 8
    latency_runs: int = 20
    latency_warmup: int = 3
    top_k_confusions: int = 20


def load_plate_metric():
    """The plate metrics as a local `evaluate` module (`plate_metrics.py`, from a checkout or a wheel; no Hub)."""
    return evaluate.load(str(PLATE_METRICS_SCRIPT))


def read_all(
    recognizer, samples, batch_size: int, state: PartialState | None = None
) -> tuple[list[str], list[tuple[int, float]]]:
    """Raw outputs for every sample, in order, and `(batch size, seconds)` for each batch.

    With `state` (an `accelerate.PartialState` of several processes, `sharding.py`), each process reads its shard
    of `samples` and gets every output back in order, with every process's batch timings.
    """
    outputs, batch_seconds = [], []
    device = getattr(recognizer, "device", torch.device("cpu"))
    local = shard(samples, state) if state is not None else samples
    progress = state is None or state.is_main_process
    batches = range(0, len(local), batch_size)
    for start in tqdm(batches, desc=f"Reading with {recognizer.name}", unit="batch", disable=not progress):
        batch = local[start : start + batch_size]
        began = time.perf_counter()
        texts = recognizer.read([sample.images for sample in batch], [sample.prompt for sample in batch])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        batch_seconds.append((len(batch), time.perf_counter() - began))
        if len(texts) != len(batch):
            raise RuntimeError(f"{recognizer.name} returned {len(texts)} outputs for a batch of {len(batch)} samples.")
        outputs.extend("" if text is None else str(text) for text in texts)
    if state is not None:
        outputs, batch_seconds = gather_shards(outputs, state), gather_shards(batch_seconds, state)
    return outputs, batch_seconds


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

    Returns:
        `(results payload for results.json, rows for predictions.csv)`.

    Raises:
        ValueError: when no sample of `data` can be evaluated (the reasons of the first few are in the message).
    """
    samples = data.samples
    if not samples:
        reasons = "; ".join(f"{e.id}: {e.reason}" for e in data.excluded[:5])
        raise ValueError(f"No sample of {data.path} can be evaluated ({len(data.excluded)} excluded: {reasons}).")
    logger.info("Evaluating %s on %d samples of %s", recognizer.name, len(samples), data.name)
    raw_predictions, batch_seconds = read_all(recognizer, samples, settings.batch_size, state)
    # An empty or unreadable answer becomes "" and simply counts as wrong.
    predictions = [normalizer(raw, sample.region) for raw, sample in zip(raw_predictions, samples)]
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
            "throughput": throughput_from_batches(batch_seconds, settings.batch_size),
            "total_read_seconds": sum(seconds for _, seconds in batch_seconds),
        },
        "normalization": normalizer.to_dict(),
        "charset": charset,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return results, prediction_rows(samples, raw_predictions, predictions)


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


__all__ = ["EvalSettings", "evaluate_recognizer", "evaluate_to_report", "load_plate_metric", "read_all"]
