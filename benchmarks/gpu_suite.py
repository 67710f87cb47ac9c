"""LP-LLM on one GPU: latency, CMRM overhead, throughput, a LoRA training step, static cache and torch.compile.

Measures the paper-size model (the Qwen3-VL-2B-Instruct architecture plus CMRM, RANDOM weights, built from the
config in `modeling_lpllm`, nothing from the Hub; `--model_size 4b|8b` for the larger Qwen3-VL-Instruct
architectures) and prints one table row per measurement:

  latency          batch-1 read of one plate: prefill + 8 greedy new tokens through `model.generate`, per image size
  cmrm_on_off      prefill and read with CMRM on and off, alternating, on the same weights; the ratio on/off, and the
                   CMRM module alone
  lora_train_step  one LoRA (r=64, alpha=16) + CMRM step of the paper's recipe at batch 16, 448x448: forward,
                   backward and AdamW, and the peak memory
  throughput       plates/s of batched reads at growing batch sizes, until out of memory or the time cap; the
                   batch that would fill the memory, from the peaks of the largest two
  static_cache     the batch-1 read with `cache_implementation="static"` (no compile)
  compile          torch.compile: the decode step through generate's own compile (static cache, CUDA graphs), and
                   the prefill forward; capped by --compile_budget_s

Every row is printed as it finishes and the JSON (--output) is rewritten after each one, so a killed run still
shows what finished. A row that fails records its error and the others still run.

    python benchmarks/gpu_suite.py                     # the 2B model on the GPU: ~4-5 min on an H200 (capped at
                                                       # --time_budget_s 330 s of measuring), results/gpu_suite.json
    python benchmarks/gpu_suite.py --skip_compile      # ~2-3 min
    python benchmarks/gpu_suite.py --model_size 8b --skip_compile
    python benchmarks/gpu_suite.py --tiny --output /tmp/gpu_tiny.json   # a tiny random model: seconds, on a CPU

`benchmarks/gpu_device_check.sh` runs the 2B and 8B suites as one device check, and `benchmarks/gpu_report.py`
turns their JSON into results/gpu.md.

Where to spend the time: --repeats (10), --throughput_budget_s (60), --compile_budget_s (120).

Needs only torch, transformers, peft, numpy, pillow and `modeling_lpllm`; runs on transformers 5.17 / peft 0.18 (the GPU
machine's) as on the project's 5.25 / 0.21.
"""

import argparse
import contextlib
import copy
import gc
import json
import logging
import os
import platform
import signal
import statistics
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image


try:
    import modeling_lpllm  # noqa: F401
except ImportError:  # a plain copy of the repository (the GPU machine's): the package sits beside this folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import peft
import transformers
from peft import LoraConfig, get_peft_model
from transformers import CompileConfig

from modeling_lpllm import (
    QWEN3_VL_2B_TEXT_CONFIG,
    QWEN3_VL_2B_VISION_CONFIG,
    LPLLMConfig,
    Qwen3VLForPlateRecognition,
    build_offline_processor,
    plate_messages,
)


# The project defines these as LANGUAGE_MODEL_LORA_TARGETS in lpllm/training/arguments.py; copied because this script
# must run with only torch, transformers and peft installed. LoRA on the language model's attention and MLP projections only.
LANGUAGE_MODEL_LORA_TARGETS = (
    r".*language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
)
# The paper's recipe, recipes/qwen3vl_2b_lora_cmrm.yaml.
PAPER_LORA = {"r": 64, "lora_alpha": 16, "lora_dropout": 0.05}
PAPER_CMRM = {"cmrm_num_slots": 8, "cmrm_num_layers": 2, "cmrm_num_heads": 16, "cmrm_alpha": 1.0}
PAPER_LEARNING_RATE = 1e-4
PAPER_IMAGE_SIZE = (448, 448)
# The CPU recipe's plate strip (recipes/demo_cpu.yaml, `image_size: [32, 672]`, height x width).
STRIP_IMAGE_SIZE = (32, 672)
PLATE_ANSWER = "A12345B"  # a 7-character plate: the answer of the training batch
NEW_TOKENS = 8  # a plate's characters and the end of the answer

# The larger Qwen3-VL-Instruct models, as their public config.json files differ from the 2B one (the same vocabulary,
# rope, patches and merge): name -> (text changes, vision changes, tie_word_embeddings).
MODEL_SIZES = {
    "2b": ({}, {}, True),
    "4b": (
        {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32},
        {"out_hidden_size": 2560},
        True,
    ),
    "8b": (
        {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32},
        {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "out_hidden_size": 4096,
         "deepstack_visual_indexes": [8, 16, 24]},
        False,
    ),
}  # fmt: skip

# The tiny architecture of the tests (recipes/models/lpllm_tiny.json), written out so that this script reads no file.
TINY_TEXT_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "rope_parameters": {
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True
    },
}
TINY_VISION_CONFIG = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": 32,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 64,
    "deepstack_visual_indexes": [1],
}

DEFAULT_BATCH_SIZES = (1, 8, 32, 128, 512, 2048, 8192, 32768)  # the time cap or memory ends the sweep first
TINY_BATCH_SIZES = (1, 4, 16)
THROUGHPUT_REPEATS = 2  # timed reads per batch size, after one warm-up: big batches take seconds each
TRAIN_WARMUP_STEPS = 2
TRAIN_TIMED_STEPS = 3
CMRM_MODULE_REPEATS = 50  # the module alone takes well under a millisecond: more runs for a stable median
MIN_COMPILE_SECONDS = 15  # a compile row is not started with less of the compile budget left than this
OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class TimeCapExceeded(Exception):
    """A measurement ran past its time cap."""


class RowSkipped(Exception):
    """A measurement that does not apply here; its message says why."""


class Unsupported(Exception):
    """A variant this model, device or library version cannot run; its message says why."""


# ----------------------------------------------------------------------------------------------------- arguments


def parse_size(text: str) -> tuple[int, int]:
    """'448x448' -> (448, 448), height x width."""
    try:
        height, width = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 32x672, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"image sides must be positive, got {text!r}")
    return height, width


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(size) for size in text.split(","))
    if not sizes or min(sizes) < 1 or list(sizes) != sorted(sizes):
        raise argparse.ArgumentTypeError(f"expected increasing positive batch sizes such as 1,8,32, got {text!r}")
    return sizes


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model_size", choices=sorted(MODEL_SIZES), default="2b",
        help="Which Qwen3-VL-Instruct architecture carries CMRM (default 2b, the paper's).",
    )  # fmt: skip
    parser.add_argument(
        "--tiny", action="store_true", help="A tiny random model instead (tests; overrides --model_size)."
    )  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", choices=["bfloat16", "float16", "float32"], default=None,
        help="Default: bfloat16 on an accelerator, float32 on CPU.",
    )  # fmt: skip
    parser.add_argument(
        "--sizes", type=parse_size, nargs="+", default=[PAPER_IMAGE_SIZE, STRIP_IMAGE_SIZE],
        help="Image sizes HEIGHTxWIDTH (default: the paper's 448x448 and the CPU recipe's 32x672 strip).",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=10, help="Timed runs per latency row, after warm-ups.")
    parser.add_argument("--warmups", type=int, default=3, help="Untimed runs before each latency row.")
    parser.add_argument(
        "--batch_sizes", type=parse_batch_sizes, default=None,
        help=f"Throughput sweep, comma-separated (default {','.join(map(str, DEFAULT_BATCH_SIZES))}; "
        f"--tiny: {','.join(map(str, TINY_BATCH_SIZES))}).",
    )  # fmt: skip
    parser.add_argument("--train_batch_size", type=int, default=16, help="LoRA step batch (paper: 16).")
    parser.add_argument(
        "--gradient_checkpointing", action="store_true",
        help="Recompute activations in the LoRA step (the paper recipe's `activation_checkpointing: true`).",
    )  # fmt: skip
    parser.add_argument("--throughput_budget_s", type=float, default=60.0, help="Cap on the whole throughput sweep.")
    parser.add_argument("--compile_budget_s", type=float, default=120.0, help="Cap on all torch.compile rows.")
    parser.add_argument("--skip_compile", action="store_true", help="Record the compile rows as skipped.")
    parser.add_argument(
        "--time_budget_s", type=float, default=330.0,
        help="Wall-clock budget of all measurements (model building excluded): rows past it are recorded as skipped.",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("results/gpu_suite.json"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.device = torch.device(args.device)
    if args.dtype is None:
        args.dtype = "float32" if args.device.type == "cpu" else "bfloat16"
    if args.batch_sizes is None:
        args.batch_sizes = TINY_BATCH_SIZES if args.tiny else DEFAULT_BATCH_SIZES
    if args.repeats < 1 or args.warmups < 0:
        parser.error("--repeats must be >= 1 and --warmups >= 0")
    return args


# ------------------------------------------------------------------------------------------------ device helpers


def device_module(device: torch.device):
    """`torch.cuda` (or `torch.xpu`, ...) for an accelerator; None for the CPU, which runs synchronously."""
    return None if device.type == "cpu" else getattr(torch, device.type, None)


def synchronize(device: torch.device) -> None:
    backend = device_module(device)
    if backend is not None:
        backend.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    backend = device_module(device)
    if backend is not None and hasattr(backend, "empty_cache"):
        backend.empty_cache()


def memory_allocated(device: torch.device) -> int | None:
    backend = device_module(device)
    return backend.memory_allocated(device) if backend is not None and hasattr(backend, "memory_allocated") else None


def reset_peak_memory(device: torch.device) -> None:
    backend = device_module(device)
    if backend is not None and hasattr(backend, "reset_peak_memory_stats"):
        backend.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    backend = device_module(device)
    if backend is None or not hasattr(backend, "max_memory_allocated"):
        return None
    return backend.max_memory_allocated(device)


def total_memory(device: torch.device) -> int | None:
    backend = device_module(device)
    if backend is None or not hasattr(backend, "get_device_properties"):
        return None
    return backend.get_device_properties(device).total_memory


def gib(num_bytes: int | None) -> float | None:
    return None if num_bytes is None else round(num_bytes / 2**30, 3)


def environment(device: torch.device, dtype: str) -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "dtype": dtype,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    backend = device_module(device)
    if backend is not None and hasattr(backend, "get_device_properties"):
        properties = backend.get_device_properties(device)
        info["device_name"] = properties.name
        info["device_memory_gib"] = gib(properties.total_memory)
        if device.type == "cuda":
            info["compute_capability"] = f"{properties.major}.{properties.minor}"
            info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["device_name"] = platform.processor() or "CPU"
    return info


def describe_environment(info: dict) -> str:
    device = f"device {info['device']}: {info['device_name']}"
    if "device_memory_gib" in info:
        device += f", {info['device_memory_gib']:.0f} GiB"
    if "compute_capability" in info:
        device += f", compute capability {info['compute_capability']}"
    return (
        f"{device}; CUDA {info['cuda']}; torch {info['torch']}, transformers {info['transformers']}, "
        f"peft {info['peft']}, python {info['python']}; {info['cpu_count']} CPUs"
    )


# --------------------------------------------------------------------------------------------------- timing


def median_ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


def time_calls(function, device: torch.device, warmups: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls of `function`, after `warmups` untimed ones; the device is synchronised
    around every call, so that queued kernels count in the call that launched them."""
    for _ in range(warmups):
        function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def time_cap(seconds: float):
    """Raises `TimeCapExceeded` inside the block after `seconds`, so that a compilation running long becomes a
    recorded row instead of eating the whole run. Uses SIGALRM, so only in the main thread on POSIX; elsewhere the
    block runs uncapped."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    state = {"armed": True, "fired": False}

    def interrupt(signum, frame):
        if state["armed"]:
            state["fired"] = True
            raise TimeCapExceeded(f"over its {seconds:.0f} s cap")

    previous = signal.signal(signal.SIGALRM, interrupt)
    # The alarm repeats every second: an exception raised while Python runs a finaliser or weakref callback is
    # printed and dropped (seen during compiles), and the next alarm must then interrupt the block again.
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001), 1.0)
    try:
        yield
    except Exception as error:
        state["armed"] = False
        # The alarm's exception can come back wrapped (dynamo re-raises it as an internal error): say what it was.
        if state["fired"] and not isinstance(error, TimeCapExceeded):
            raise TimeCapExceeded(f"over its {seconds:.0f} s cap") from error
        raise
    finally:
        state["armed"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def variant_support():
    """For the optional variants (static cache, compile): any failure means this model, device or library version
    does not support the variant, and becomes an `unsupported` row; running past the time cap becomes `skipped`.
    Out-of-memory stays an error."""
    try:
        yield
    except (RowSkipped, OUT_OF_MEMORY):
        raise
    except TimeCapExceeded as error:
        torch._dynamo.reset()  # drop what the interrupted compilation left half-built
        raise RowSkipped(f"stopped: {error}") from error
    except Exception as error:
        raise Unsupported(describe_error(error)) from error


# ---------------------------------------------------------------------------------------------- model, inputs


def build_config(processor, tiny: bool, model_size: str = "2b") -> LPLLMConfig:
    """The paper's model: a Qwen3-VL-Instruct architecture (2B by default) and the recipe's CMRM. The special tokens
    take the offline processor's ids (within the Qwen3-VL vocabulary), so its prompts feed the model directly; the
    ids' values do not change the cost of anything measured here."""
    text_changes, vision_changes, tie_word_embeddings = MODEL_SIZES[model_size]
    if tiny:
        text_config, vision_config = copy.deepcopy(TINY_TEXT_CONFIG), copy.deepcopy(TINY_VISION_CONFIG)
        text_config["vocab_size"] = len(processor.tokenizer)
        tie_word_embeddings = True
    else:
        text_config = {**copy.deepcopy(QWEN3_VL_2B_TEXT_CONFIG), **text_changes}
        vision_config = {**copy.deepcopy(QWEN3_VL_2B_VISION_CONFIG), **vision_changes}
    text_config["pad_token_id"] = processor.tokenizer.pad_token_id
    cmrm = {**PAPER_CMRM, "cmrm_num_heads": 2} if tiny else PAPER_CMRM
    return LPLLMConfig(
        text_config=text_config,
        vision_config=vision_config,
        tie_word_embeddings=tie_word_embeddings,
        **cmrm,
        **processor.special_token_ids(),
    )


def build_model(config: LPLLMConfig, tokenizer, device: torch.device, dtype: torch.dtype, seed: int):
    """Random weights, built on the device (initialising 2B parameters on the CPU takes minutes), then cast."""
    torch.manual_seed(seed)
    with device:
        model = Qwen3VLForPlateRecognition(config)
    model = model.to(dtype).eval()
    # The end-of-answer token as a trained model has it; `min_new_tokens` keeps random weights from emitting it, so
    # every read makes exactly NEW_TOKENS tokens.
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


@dataclass
class PlatePrompt:
    """One plate prompt at one image size, ready on the device; `batched` repeats it."""

    size: tuple[int, int]
    requested_size: tuple[int, int]
    inputs: dict
    prompt_tokens: int
    visual_tokens: int

    @property
    def label(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"

    def batched(self, batch: int) -> dict:
        return repeat_plate(self.inputs, batch)


def repeat_plate(inputs: dict, batch: int) -> dict:
    """`batch` copies of one plate's inputs. Every tensor of a one-plate prompt has the plate on dim 0 (input rows,
    patches, grid rows), so repeating dim 0 batches it; identical plates cost what distinct ones of their size do."""
    return {name: value.repeat(batch, *[1] * (value.dim() - 1)) for name, value in inputs.items()}


def valid_image_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """The nearest size whose sides are positive multiples of `factor` (patch size x merge size)."""
    return tuple(max(factor, factor * round(side / factor)) for side in size)


def random_plate(size: tuple[int, int], seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def encode_plate(size: tuple[int, int], seed: int, answer: str | None = None) -> dict:
    """The processor's tensors for one plate prompt (with the assistant's `answer` when given)."""
    processor = build_offline_processor(image_size=list(size))
    text = processor.apply_chat_template(
        plate_messages(answer=answer), add_generation_prompt=answer is None, tokenize=False
    )
    return dict(processor(images=[random_plate(size, seed)], text=[text], return_tensors="pt"))


def to_device(inputs: dict, device: torch.device, dtype: torch.dtype) -> dict:
    return {
        name: value.to(device, dtype) if value.is_floating_point() else value.to(device)
        for name, value in inputs.items()
    }


def build_prompt(model, size: tuple[int, int], seed: int) -> PlatePrompt:
    """The plate prompt at `size`, or at the nearest size the vision tower takes (sides multiples of its patch size
    times its merge size)."""
    vision = model.config.vision_config
    used = valid_image_size(size, vision.patch_size * vision.spatial_merge_size)
    inputs = to_device(encode_plate(used, seed), model.device, model.dtype)
    input_ids = inputs["input_ids"]
    visual_tokens = int((input_ids == model.config.image_token_id).sum())
    return PlatePrompt(used, tuple(size), inputs, input_ids.shape[1], visual_tokens)


def build_training_batch(model, size: tuple[int, int], batch: int, seed: int) -> dict:
    """`batch` copies of a plate prompt with its answer; the loss is on the answer tokens only, as in training."""
    full = encode_plate(size, seed, answer=PLATE_ANSWER)
    prompt_length = encode_plate(size, seed)["input_ids"].shape[1]
    labels = full["input_ids"].clone()
    labels[:, :prompt_length] = -100
    full["labels"] = labels
    return repeat_plate(to_device(full, model.device, model.dtype), batch)


def count_parameters(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


# ------------------------------------------------------------------------------------------------- workloads


def read_plates(model, inputs: dict, **generate_kwargs) -> torch.Tensor:
    """Reads the plates of `inputs` as LP-LLM does: `model.generate`, greedy, exactly NEW_TOKENS new tokens (the
    prefill yields the first, each later one takes a decoding step)."""
    with torch.inference_mode():
        return model.generate(
            **inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, **generate_kwargs
        )


def prefill(model, inputs: dict, forward=None):
    """One forward over the prompt, logits for the last position only (what generate's prefill computes)."""
    with torch.inference_mode():
        return (forward or model)(**inputs, logits_to_keep=1)


def new_tokens(model, inputs: dict, **generate_kwargs) -> int:
    return read_plates(model, inputs, **generate_kwargs).shape[1] - inputs["input_ids"].shape[1]


@contextlib.contextmanager
def cmrm_switched(model, enabled: bool):
    """CMRM on or off on the same weights: off detaches the module (`get_image_features` skips CMRM when
    `model.model.cmrm` is None, as with `cmrm_enabled=False`), which removes its cost entirely; `cmrm_alpha=0`
    would still compute it."""
    cmrm = model.model.cmrm
    model.model.cmrm = cmrm if enabled else None
    try:
        yield
    finally:
        model.model.cmrm = cmrm


# ------------------------------------------------------------------------------------------------------- rows


def measure_latency(model, prompt: PlatePrompt, args) -> dict:
    """Batch-1 read of one plate, and its prefill alone, the model as it ships (CMRM on)."""
    generated = new_tokens(model, prompt.inputs)
    read = time_calls(lambda: read_plates(model, prompt.inputs), args.device, args.warmups, args.repeats)
    prefills = time_calls(lambda: prefill(model, prompt.inputs), args.device, args.warmups, args.repeats)
    return {
        "method": f"model.generate(max_new_tokens={NEW_TOKENS}, min_new_tokens={NEW_TOKENS}, do_sample=False), "
        "dynamic cache; prefill: one forward with logits_to_keep=1",
        "image_size": prompt.label,
        "prompt_tokens": prompt.prompt_tokens,
        "visual_tokens": prompt.visual_tokens,
        "new_tokens": generated,
        "read_ms": median_ms(read),
        "read_min_ms": 1000 * min(read),
        "prefill_ms": median_ms(prefills),
        # The prefill yields the first token; each later one takes a decoding step.
        "decode_ms_per_step": (median_ms(read) - median_ms(prefills)) / max(generated - 1, 1),
        "repeats": args.repeats,
        "read_runs_ms": [1000 * seconds for seconds in read],
        "prefill_runs_ms": [1000 * seconds for seconds in prefills],
    }


def measure_cmrm_on_off(model, prompt: PlatePrompt, args) -> dict:
    if model.model.cmrm is None:
        raise RowSkipped("the model has no CMRM")
    workloads = {"prefill": lambda: prefill(model, prompt.inputs), "read": lambda: read_plates(model, prompt.inputs)}
    timings = {(setting, name): [] for setting in ("on", "off") for name in workloads}
    for setting in ("on", "off"):
        with cmrm_switched(model, setting == "on"):
            for workload in workloads.values():
                time_calls(workload, args.device, warmups=max(args.warmups, 1), repeats=0)
    for repeat in range(args.repeats):
        # Alternate the order so that drift (clocks, other work on the machine) falls on both settings alike.
        for setting in ("on", "off") if repeat % 2 == 0 else ("off", "on"):
            with cmrm_switched(model, setting == "on"):
                for name, workload in workloads.items():
                    timings[setting, name] += time_calls(workload, args.device, warmups=0, repeats=1)

    # Evidence that the switch changes the computation: the last-position logits with CMRM on and off differ.
    logits = {}
    for setting in ("on", "off"):
        with cmrm_switched(model, setting == "on"):
            logits[setting] = prefill(model, prompt.inputs).logits.float()
    row = {
        "image_size": prompt.label,
        "off_means": "model.model.cmrm = None (the module skipped, as cmrm_enabled=False); same model, same weights",
        "order": "alternating on/off",
        "repeats": args.repeats,
        "logits_max_abs_diff_on_vs_off": float((logits["on"] - logits["off"]).abs().max()),
    }
    for (setting, name), seconds in timings.items():
        row[f"{name}_{setting}_ms"] = median_ms(seconds)
        row[f"{name}_{setting}_runs_ms"] = [1000 * value for value in seconds]
    for name in workloads:
        row[f"{name}_ratio_on_off"] = row[f"{name}_on_ms"] / row[f"{name}_off_ms"]
    row.update(measure_cmrm_module(model, prompt, args.device))
    row["cmrm_module_share_of_prefill"] = row["cmrm_module_ms"] / row["prefill_off_ms"]
    return row


def measure_cmrm_module(model, prompt: PlatePrompt, device: torch.device) -> dict:
    """The CMRM module alone on one image's visual tokens."""
    cmrm = model.model.cmrm
    tokens = [torch.randn(prompt.visual_tokens, model.config.text_config.hidden_size, device=device, dtype=model.dtype)]

    def run():
        with torch.inference_mode():
            cmrm(tokens)

    seconds = time_calls(run, device, warmups=5, repeats=CMRM_MODULE_REPEATS)
    return {"cmrm_module_ms": median_ms(seconds), "cmrm_module_parameters": count_parameters(cmrm)}


def measure_throughput(model, prompt: PlatePrompt, args, budget_s: float) -> dict:
    """Batched reads at growing batch sizes until out of memory, the end of the list, or the time cap (a batch is
    not started when the last one's time, scaled by the batch ratio, says it would not finish in time)."""
    deadline = time.perf_counter() + budget_s
    points, stopped_by = [], "end of the batch-size list"
    for batch in args.batch_sizes:
        if points:
            last = points[-1]
            predicted = last["seconds_per_batch"] * batch / last["batch"] * (1 + THROUGHPUT_REPEATS)
            if time.perf_counter() + predicted > deadline:
                stopped_by = f"time cap ({budget_s:.0f} s): batch {batch} would need ~{predicted:.0f} s more"
                break
        point = throughput_point(model, prompt, batch, args.device)
        if point is None:
            stopped_by = f"out of memory at batch {batch}"
            break
        points.append(point)
        log(f"    batch {batch:>5}: {point['plates_per_s']:10.1f} plates/s, {point['seconds_per_batch']:.3f} s a batch")
    if not points:
        raise RuntimeError(f"no batch size ran ({stopped_by})")
    best = max(points, key=lambda point: point["plates_per_s"])
    per_plate_gib, filling_batch = memory_filling_batch(points, gib(total_memory(args.device)))
    return {
        "image_size": prompt.label,
        "method": f"model.generate of identical plates, {NEW_TOKENS} new tokens each; "
        f"median of {THROUGHPUT_REPEATS} after 1 warm-up",
        "best_plates_per_s": best["plates_per_s"],
        "best_batch": best["batch"],
        "stopped_by": stopped_by,
        "memory_per_plate_gib": per_plate_gib,
        "memory_filling_batch_estimate": filling_batch,
        "points": points,
    }


def memory_filling_batch(points: list[dict], capacity_gib: float | None) -> tuple[float | None, int | None]:
    """(GiB per plate, the batch whose peak would fill `capacity_gib`) on the line through the peaks of the two
    largest batches measured: a read's memory is the weights once plus the activations and cache of each plate.
    (None, None) without two measured peaks, a capacity, or growth between them."""
    measured = [point for point in points if point.get("peak_memory_gib") is not None]
    if capacity_gib is None or len(measured) < 2:
        return None, None
    smaller, larger = measured[-2], measured[-1]
    per_plate = (larger["peak_memory_gib"] - smaller["peak_memory_gib"]) / (larger["batch"] - smaller["batch"])
    if per_plate <= 0:
        return None, None
    return per_plate, int(larger["batch"] + (capacity_gib - larger["peak_memory_gib"]) / per_plate)


def throughput_point(model, prompt: PlatePrompt, batch: int, device: torch.device) -> dict | None:
    """One batch size's reads; None when it does not fit in memory (the memory is freed before returning)."""
    out_of_memory = False
    reset_peak_memory(device)
    try:
        inputs = prompt.batched(batch)
        seconds = time_calls(lambda: read_plates(model, inputs), device, warmups=1, repeats=THROUGHPUT_REPEATS)
    except OUT_OF_MEMORY:
        out_of_memory = True  # freed below, once the exception (which holds the frames' tensors) is gone
    finally:
        inputs = None
    if out_of_memory:
        free_memory(device)
        return None
    per_batch = statistics.median(seconds)
    return {
        "batch": batch,
        "seconds_per_batch": per_batch,
        "plates_per_s": batch / per_batch,
        "peak_memory_gib": gib(peak_memory(device)),
    }


def measure_lora_step(model, args) -> dict:
    """One training step of the paper's recipe: LoRA on the language model's attention and MLP projections plus CMRM
    in full (peft `modules_to_save`, as the training package's model_setup.py sets it up), everything else frozen,
    AdamW, and autocast when the model is in a half precision (as Trainer's `bf16: true`)."""
    resident = memory_allocated(args.device)
    # A copy: get_peft_model injects LoRA layers into the model in place, and the rows after this one need it plain.
    train_model = copy.deepcopy(model).train()
    if args.gradient_checkpointing:
        train_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora_config = LoraConfig(
        **PAPER_LORA,
        target_modules=LANGUAGE_MODEL_LORA_TARGETS,
        modules_to_save=["cmrm"],
        task_type="CAUSAL_LM",
        bias="none",
    )
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing`: noise, not a problem of this step.
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(train_model, lora_config)
    counts = trainable_parameter_counts(peft_model, cmrm_parameters=count_parameters(model.model.cmrm))
    optimizer = torch.optim.AdamW(
        [parameter for parameter in peft_model.parameters() if parameter.requires_grad], lr=PAPER_LEARNING_RATE
    )
    batch = build_training_batch(model, PAPER_IMAGE_SIZE, args.train_batch_size, args.seed)
    half = model.dtype in (torch.bfloat16, torch.float16)
    losses = []

    def step():
        with torch.autocast(args.device.type, dtype=model.dtype, enabled=half):
            loss = peft_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    reset_peak_memory(args.device)
    try:
        seconds = time_calls(step, args.device, TRAIN_WARMUP_STEPS, TRAIN_TIMED_STEPS)
        peak = peak_memory(args.device)
    finally:
        # Frees the copies; `step` shares these variables, so they are emptied rather than deleted.
        peft_model = train_model = optimizer = batch = None
        free_memory(args.device)
    step_ms = median_ms(seconds)
    return {
        "image_size": "x".join(map(str, PAPER_IMAGE_SIZE)),
        "batch": args.train_batch_size,
        "method": f"peft LoRA r={PAPER_LORA['r']} alpha={PAPER_LORA['lora_alpha']} on the language model's "
        f"attention+MLP, CMRM trained (modules_to_save), AdamW lr {PAPER_LEARNING_RATE}; forward+backward+step, "
        f"median of {TRAIN_TIMED_STEPS} after {TRAIN_WARMUP_STEPS} warm-ups",
        "autocast": str(model.dtype).removeprefix("torch.") if half else None,
        "gradient_checkpointing": args.gradient_checkpointing,
        "step_ms": step_ms,
        "plates_per_s": args.train_batch_size / (step_ms / 1000),
        "step_runs_ms": [1000 * value for value in seconds],
        "losses": [float(loss) for loss in losses],
        "peak_memory_gib": gib(peak),
        # The process also holds the untouched inference model: this is what a training process alone would peak at.
        "peak_memory_without_inference_model_gib": gib(None if peak is None else peak - resident),
        **counts,
    }


def trainable_parameter_counts(peft_model, cmrm_parameters: int) -> dict:
    """Trainable parameters by origin; `only_lora_and_cmrm_train` is False if any base weight trains."""
    trainable = {name: weight.numel() for name, weight in peft_model.named_parameters() if weight.requires_grad}
    lora = sum(count for name, count in trainable.items() if "lora_" in name)
    cmrm = sum(count for name, count in trainable.items() if "modules_to_save" in name and ".cmrm." in name)
    return {
        "trainable_parameters": sum(trainable.values()),
        "lora_parameters": lora,
        "cmrm_parameters": cmrm_parameters,
        "trainable_cmrm_parameters": cmrm,
        "total_parameters": count_parameters(peft_model),
        "only_lora_and_cmrm_train": lora + cmrm == sum(trainable.values()) and cmrm == cmrm_parameters,
    }


def measure_static_cache(model, prompt: PlatePrompt, args, dynamic_read_ms: float | None) -> dict:
    # disable_compile: on an accelerator generate would otherwise compile the decode step for a static cache, and
    # this row measures the cache alone (the compile row measures both).
    kwargs = {"cache_implementation": "static", "disable_compile": True}
    with variant_support():
        generated = new_tokens(model, prompt.inputs, **kwargs)
        seconds = time_calls(
            lambda: read_plates(model, prompt.inputs, **kwargs), args.device, args.warmups, args.repeats
        )
    return {
        "image_size": prompt.label,
        "method": "model.generate(cache_implementation='static', disable_compile=True)",
        "new_tokens": generated,
        "read_ms": median_ms(seconds),
        "read_runs_ms": [1000 * value for value in seconds],
        "ratio_to_dynamic_cache": None if not dynamic_read_ms else median_ms(seconds) / dynamic_read_ms,
    }


def measure_compiled_decode(model, prompt: PlatePrompt, args, cap_s: float, eager_read_ms: float | None) -> dict:
    """generate's own torch.compile: with a static cache on an accelerator it compiles the forward it runs for each
    decoding step (CompileConfig's defaults: inductor, mode reduce-overhead, i.e. CUDA graphs); the prefill stays
    eager."""
    kwargs = {"cache_implementation": "static", "compile_config": CompileConfig()}
    with variant_support(), time_cap(cap_s):
        start = time.perf_counter()
        generated = new_tokens(model, prompt.inputs, **kwargs)  # compiles
        first_call_s = time.perf_counter() - start
        # Untimed reads first: CUDA graphs are recorded on the calls after the compiling one.
        seconds = time_calls(
            lambda: read_plates(model, prompt.inputs, **kwargs), args.device, args.warmups, args.repeats
        )
    return {
        "image_size": prompt.label,
        "method": "model.generate(cache_implementation='static', compile_config=CompileConfig()): "
        "decode-step forward compiled by transformers, prefill eager",
        # `_compiled_call` is where transformers keeps the compiled forward: absent means generate did not compile.
        "compiled": getattr(model, "_compiled_call", None) is not None,
        "new_tokens": generated,
        "first_call_s": first_call_s,
        "read_ms": median_ms(seconds),
        "read_runs_ms": [1000 * value for value in seconds],
        "ratio_to_eager": None if not eager_read_ms else median_ms(seconds) / eager_read_ms,
    }


def measure_compiled_prefill(model, prompt: PlatePrompt, args, cap_s: float, eager_prefill_ms: float | None) -> dict:
    """torch.compile of the whole forward (vision tower, CMRM, language model) for the prefill, default mode; the
    vision tower's Python loops over image grids make graph breaks, so fullgraph is off."""
    with variant_support(), time_cap(cap_s):
        compiled_forward = torch.compile(model.forward, dynamic=False)
        start = time.perf_counter()
        prefill(model, prompt.inputs, forward=compiled_forward)  # compiles
        synchronize(args.device)
        first_call_s = time.perf_counter() - start
        seconds = time_calls(
            lambda: prefill(model, prompt.inputs, forward=compiled_forward), args.device, args.warmups, args.repeats
        )
    return {
        "image_size": prompt.label,
        "method": "torch.compile(model.forward, dynamic=False), one prefill forward with logits_to_keep=1",
        "first_call_s": first_call_s,
        "prefill_ms": median_ms(seconds),
        "prefill_runs_ms": [1000 * value for value in seconds],
        "ratio_to_eager": None if not eager_prefill_ms else median_ms(seconds) / eager_prefill_ms,
    }


# ---------------------------------------------------------------------------------------------------- report


def describe_error(error: BaseException) -> str:
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"[:300]


def format_count(count: int) -> str:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return str(count)


def log(message: str) -> None:
    print(message, flush=True)


def format_ms(milliseconds: float | None) -> str:
    if milliseconds is None:
        return "-"
    decimals = 2 if milliseconds < 10 else 1 if milliseconds < 100 else 0
    return f"{milliseconds:.{decimals}f} ms"


def ratio_text(ratio: float | None, baseline: str) -> str:
    return "" if ratio is None else f" = {ratio:.2f}x {baseline}"


def summarize_latency(row: dict) -> str:
    return (
        f"{format_ms(row['read_ms'])} a plate = prefill {format_ms(row['prefill_ms'])} "
        f"+ {row['new_tokens'] - 1} steps x {format_ms(row['decode_ms_per_step'])}; "
        f"{row['visual_tokens']} visual of {row['prompt_tokens']} tokens"
    )


def summarize_cmrm(row: dict) -> str:
    return (
        f"on/off prefill {format_ms(row['prefill_on_ms'])}/{format_ms(row['prefill_off_ms'])} "
        f"= {row['prefill_ratio_on_off']:.3f}, read {format_ms(row['read_on_ms'])}/{format_ms(row['read_off_ms'])} "
        f"= {row['read_ratio_on_off']:.3f}; module alone {format_ms(row['cmrm_module_ms'])} "
        f"({100 * row['cmrm_module_share_of_prefill']:.1f}% of prefill)"
    )


def summarize_training(row: dict) -> str:
    peak = "not measured on CPU" if row["peak_memory_gib"] is None else f"{row['peak_memory_gib']:.1f} GiB"
    return (
        f"{format_ms(row['step_ms'])} a step ({row['plates_per_s']:.1f} plates/s), peak {peak}; trains "
        f"{format_count(row['trainable_parameters'])} = LoRA {format_count(row['lora_parameters'])} "
        f"+ CMRM {format_count(row['trainable_cmrm_parameters'])}"
    )


def summarize_throughput(row: dict) -> str:
    sweep = ", ".join(f"{point['batch']}: {point['plates_per_s']:.0f}" for point in row["points"])
    filling = row.get("memory_filling_batch_estimate")
    memory = (
        ""
        if filling is None
        else f"; {1024 * row['memory_per_plate_gib']:.0f} MiB a plate, memory full at ~{filling} plates (estimate)"
    )
    return (
        f"best {row['best_plates_per_s']:.1f} plates/s at batch {row['best_batch']} (plates/s by batch: {sweep}); "
        f"stopped: {row['stopped_by']}{memory}"
    )


def summarize_static_cache(row: dict) -> str:
    return f"{format_ms(row['read_ms'])} a plate{ratio_text(row['ratio_to_dynamic_cache'], 'dynamic cache')}"


def summarize_compile(row: dict) -> str:
    compiling = f"first call (compiling) {row['first_call_s']:.0f} s"
    if "read_ms" in row:  # the decode step
        compiled = "" if row["compiled"] else " (generate did NOT compile)"
        return f"{format_ms(row['read_ms'])} a plate{ratio_text(row['ratio_to_eager'], 'eager')}{compiled}; {compiling}"
    return f"prefill {format_ms(row['prefill_ms'])}{ratio_text(row['ratio_to_eager'], 'eager')}; {compiling}"


SUMMARIES = {
    "latency": summarize_latency,
    "cmrm_on_off": summarize_cmrm,
    "lora_train_step": summarize_training,
    "throughput": summarize_throughput,
    "static_cache": summarize_static_cache,
    "compile": summarize_compile,
}


def summarize(row: dict) -> str:
    """One readable line of a row's main numbers, or of why it has none."""
    if row["status"] != "ok":
        return f"{row['status']}: {row.get('reason', '')}"
    return SUMMARIES[row["kind"]](row)


class Report:
    """The suite's results: printed row by row and rewritten to `path` after each row (atomically: a temporary file
    then `os.replace`), so that a run killed midway leaves a readable JSON of what finished."""

    def __init__(self, path: Path, header: dict, time_budget_s: float):
        self.path = Path(path)
        self.data = {**header, "status": "running", "started_at": datetime.now(timezone.utc).isoformat(), "rows": []}
        self.start = time.perf_counter()
        self.time_budget_s = time_budget_s
        self.write()

    @property
    def rows(self) -> list[dict]:
        return self.data["rows"]

    def time_left(self) -> float:
        return self.time_budget_s - (time.perf_counter() - self.start)

    def find(self, kind: str, image_size: str) -> dict | None:
        for row in self.rows:
            if row["kind"] == kind and row.get("image_size") == image_size and row["status"] == "ok":
                return row
        return None

    def add(self, row: dict) -> None:
        self.rows.append(row)
        log(f"[{time.perf_counter() - self.start:6.1f} s] {row_line(row)}")
        self.write()

    def finish(self, status: str) -> None:
        self.data["status"] = status
        self.data["elapsed_s"] = time.perf_counter() - self.start
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        os.replace(temporary, self.path)


def row_line(row: dict) -> str:
    return f"{row['kind']:<16} {row['case']:<18} {summarize(row)}"


def run_row(report: Report, kind: str, case: str, measure, device: torch.device) -> dict:
    """Runs one measurement and records its row whatever happens: `ok` with its numbers, `skipped` (no time left,
    or not applicable), `unsupported` (a variant that cannot run here) or `error` (with the traceback's tail)."""
    row = {"kind": kind, "case": case}
    start = time.perf_counter()
    try:
        if report.time_left() <= 0:
            raise RowSkipped(f"--time_budget_s ({report.time_budget_s:.0f} s) spent")
        row.update(measure())
        row["status"] = "ok"
    except RowSkipped as reason:
        row.update(status="skipped", reason=str(reason))
    except Unsupported as reason:
        row.update(status="unsupported", reason=str(reason))
    except OUT_OF_MEMORY as error:
        row.update(status="error", reason=f"out of memory: {describe_error(error)}")
    except Exception as error:
        row.update(status="error", reason=describe_error(error), traceback=traceback.format_exc(limit=8)[-3000:])
    row["seconds"] = time.perf_counter() - start
    free_memory(device)
    report.add(row)
    return row


def print_table(report: Report) -> None:
    environment = report.data["environment"]
    model = report.data["model"]
    log("")
    log(
        f"LP-LLM suite: {model['architecture']}, {format_count(model['parameters'])} parameters "
        f"(CMRM {format_count(model['cmrm_parameters'])}), random weights, {environment['dtype']}; "
        + describe_environment(environment)
    )
    log(f"{'kind':<16} {'case':<18} result")
    log("-" * 120)
    for row in report.rows:
        log(row_line(row))
    log(f"{len(report.rows)} rows in {report.data['elapsed_s']:.0f} s -> {report.path}")


# ------------------------------------------------------------------------------------------------------ main


def run_suite(report: Report, model, prompts: list[PlatePrompt], args) -> None:
    device = args.device
    for prompt in prompts:
        run_row(report, "latency", prompt.label, lambda: measure_latency(model, prompt, args), device)
    for prompt in prompts:
        run_row(report, "cmrm_on_off", prompt.label, lambda: measure_cmrm_on_off(model, prompt, args), device)
    train_case = f"{'x'.join(map(str, PAPER_IMAGE_SIZE))} batch {args.train_batch_size}"
    run_row(report, "lora_train_step", train_case, lambda: measure_lora_step(model, args), device)

    sweep_budget = args.throughput_budget_s / len(prompts)
    for prompt in prompts:
        budget = min(sweep_budget, report.time_left())
        run_row(report, "throughput", prompt.label, lambda: measure_throughput(model, prompt, args, budget), device)
    for prompt in prompts:
        dynamic_ms = (report.find("latency", prompt.label) or {}).get("read_ms")
        run_row(
            report, "static_cache", prompt.label, lambda: measure_static_cache(model, prompt, args, dynamic_ms), device
        )
    run_compile_rows(report, model, prompts, args)


def run_compile_rows(report: Report, model, prompts: list[PlatePrompt], args) -> None:
    """The compile rows last (a compile cut short by its cap can leave compiler state behind), most useful first:
    the decode step at the first size, the prefill at the first size, then the other sizes, while the budget lasts."""
    compile_deadline = time.perf_counter() + args.compile_budget_s
    # Dynamo logs at length about each graph break (the vision tower's loops over image grids) and about a compile
    # cut short by its cap; the rows say what matters.
    torch._logging.set_logs(dynamo=logging.CRITICAL)
    try:
        for prompt in prompts:
            run_compile_rows_for(report, model, prompt, args, compile_deadline)
    finally:
        torch._logging.set_logs()  # back to the defaults


def run_compile_rows_for(report: Report, model, prompt: PlatePrompt, args, compile_deadline: float) -> None:
    eager = report.find("latency", prompt.label) or {}
    cases = {
        "decode": lambda cap: measure_compiled_decode(model, prompt, args, cap, eager.get("read_ms")),
        "prefill": lambda cap: measure_compiled_prefill(model, prompt, args, cap, eager.get("prefill_ms")),
    }
    for name, measure in cases.items():

        def capped_measure():
            if args.skip_compile:
                raise RowSkipped("--skip_compile")
            if args.device.type == "cpu":
                # generate compiles its decode step on accelerators only, and inductor's CPU build is slow.
                raise RowSkipped("compile is measured on accelerators only")
            cap = min(compile_deadline - time.perf_counter(), report.time_left())
            if cap < MIN_COMPILE_SECONDS:
                raise RowSkipped(f"compile budget spent ({args.compile_budget_s:.0f} s, --compile_budget_s)")
            return measure(cap)

        run_row(report, "compile", f"{name} {prompt.label}", capped_measure, args.device)


def architecture_name(args) -> str:
    return "tiny LP-LLM (tests)" if args.tiny else f"Qwen3-VL-{args.model_size.upper()}-Instruct + CMRM"


def model_description(model, prompts: list[PlatePrompt], args) -> dict:
    config = model.config
    return {
        "architecture": architecture_name(args),
        "weights": f"random (seed {args.seed})",
        "parameters": count_parameters(model),
        "cmrm_parameters": count_parameters(model.model.cmrm),
        "cmrm": {name: getattr(config, name) for name in PAPER_CMRM},
        "text_layers": config.text_config.num_hidden_layers,
        "vision_depth": config.vision_config.depth,
        "attn_implementation": getattr(config, "_attn_implementation", None),
        "image_sizes": [
            {
                "size": prompt.label,
                "requested": "x".join(map(str, prompt.requested_size)),
                "prompt_tokens": prompt.prompt_tokens,
                "visual_tokens": prompt.visual_tokens,
            }
            for prompt in prompts
        ],
    }


def settings(args) -> dict:
    """The arguments as JSON values (devices and paths become strings when written)."""
    return {**vars(args), "sizes": ["x".join(map(str, size)) for size in args.sizes]}


def main(argv=None) -> dict:
    args = parse_args(argv)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # generate's advice about generation flags would bury the table
    try:
        return run(args)
    finally:
        transformers.logging.set_verbosity(verbosity)


def run(args) -> dict:
    env = environment(args.device, args.dtype)
    log("environment: " + describe_environment(env))

    build_start = time.perf_counter()
    processor = build_offline_processor()
    config = build_config(processor, args.tiny, args.model_size)
    model = build_model(config, processor.tokenizer, args.device, getattr(torch, args.dtype), args.seed)
    prompts = [build_prompt(model, size, args.seed) for size in args.sizes]
    for prompt in prompts:
        if prompt.size != prompt.requested_size:
            log(f"image size {prompt.requested_size} is not a multiple of patch x merge: using {prompt.label}")
    description = model_description(model, prompts, args)
    description["build_s"] = time.perf_counter() - build_start
    log(
        f"model: {description['architecture']}, {format_count(description['parameters'])} parameters, "
        f"built in {description['build_s']:.1f} s; sizes "
        + ", ".join(f"{item['size']} ({item['visual_tokens']} visual tokens)" for item in description["image_sizes"])
    )

    header = {"suite": "benchmarks/gpu_suite.py", "environment": env, "settings": settings(args), "model": description}
    report = Report(args.output, header, args.time_budget_s)
    try:
        run_suite(report, model, prompts, args)
    except BaseException:
        report.finish("interrupted")
        raise
    report.finish("finished")
    print_table(report)
    return report.data


if __name__ == "__main__":
    main()
