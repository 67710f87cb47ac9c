"""Efficiency as the paper reports it: parameter counts, latency per image at batch 1, throughput at a larger batch,
and the device they were measured on. Numbers belong in reports and benchmarks, never in unit-test assertions."""

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def count_parameters(model: torch.nn.Module) -> dict:
    """`{"total": ..., "trainable": ...}`; trainable counts parameters with `requires_grad` (for a PEFT model: the
    adapters, since PEFT freezes the base)."""
    total = sum(param.numel() for param in model.parameters())
    trainable = sum(param.numel() for param in model.parameters() if param.requires_grad)
    return {"total": total, "trainable": trainable}


def describe_device(device: torch.device) -> str:
    """A human-readable name of the device, e.g. 'cuda:0 (NVIDIA A100-SXM4-40GB)' or 'cpu (Intel Xeon ..., 2
    threads)'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"{device.type} ({_cpu_name()}, {torch.get_num_threads()} threads)"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or f"{os.cpu_count()} cores"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile (`fraction` in [0, 1]) of a non-empty list."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure_latency(
    read: Callable[[list], list], items: list, device: torch.device, warmup: int = 3, runs: int = 20
) -> dict | None:
    """Milliseconds per sample read one at a time (batch 1), end to end from PIL images to text, after `warmup`
    untimed reads. `items` are `(images, prompt)` pairs, cycled if fewer than `warmup + runs`. None without items."""
    if not items or runs < 1:
        return None
    timings = []
    for step in range(warmup + runs):
        images, prompt = items[step % len(items)]
        _synchronize(device)
        start = time.perf_counter()
        read([images], [prompt])
        _synchronize(device)
        if step >= warmup:
            timings.append((time.perf_counter() - start) * 1000.0)
    return {
        "median_ms": statistics.median(timings),
        "p95_ms": percentile(timings, 0.95),
        "mean_ms": statistics.fmean(timings),
        "runs": runs,
        "warmup": warmup,
        "batch_size": 1,
    }


def throughput_from_batches(batch_seconds: list[tuple[int, float]], batch_size: int) -> dict | None:
    """Images per second over the evaluation batches, the first (warm-up) batch left out when there are others."""
    timed = batch_seconds[1:] if len(batch_seconds) > 1 else batch_seconds
    images = sum(count for count, _ in timed)
    seconds = sum(duration for _, duration in timed)
    if not images or seconds <= 0:
        return None
    return {"images_per_second": images / seconds, "batch_size": batch_size, "images_timed": images}


__all__ = ["count_parameters", "describe_device", "measure_latency", "percentile", "throughput_from_batches"]
