"""Tiny LP-LLM models and processors for tests: random weights, offline processor, a few hundred KB."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modeling_lpllm import LPLLMConfig, Qwen3VLForPlateRecognition, build_offline_processor


# Pixel budget for tests: a 94x24 crop becomes 32x192 pixels, 2x12 patches of 16, 6 visual tokens.
TINY_MIN_PIXELS = 32 * 32 * 3
TINY_MAX_PIXELS = 32 * 32 * 12


def tiny_processor():
    return build_offline_processor(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)


# The tiny architecture is the smoke recipe's, so tests and `recipes/smoke.yaml` build the same model.
TINY_MODEL_CONFIG = Path(__file__).resolve().parents[1] / "recipes" / "models" / "lpllm_tiny.json"


def tiny_config(processor=None, **overrides) -> LPLLMConfig:
    processor = processor or tiny_processor()
    tokenizer = processor.tokenizer
    kwargs = json.loads(TINY_MODEL_CONFIG.read_text())
    kwargs["text_config"].update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    kwargs.update(processor.special_token_ids())
    kwargs.update(overrides)
    return LPLLMConfig(**kwargs)


def tiny_model(processor=None, seed: int = 0, **overrides) -> Qwen3VLForPlateRecognition:
    processor = processor or tiny_processor()
    torch.manual_seed(seed)
    model = Qwen3VLForPlateRecognition(tiny_config(processor, **overrides)).eval()
    tokenizer = processor.tokenizer
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.max_new_tokens = 8
    model.generation_config.do_sample = False
    return model


def random_plate_image(seed: int = 0, size=(94, 24), mode: str = "RGB") -> Image.Image:
    """A random-noise image of `size` (width, height) in `mode`."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def save_tiny_checkpoint(directory, seed: int = 0, **overrides):
    """Saves a tiny model with its processor to `directory`; returns (model, processor)."""
    processor = tiny_processor()
    model = tiny_model(processor, seed=seed, **overrides)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return model, processor


# Prepended to scripts run in a fresh process: the project's own packages cannot be imported there, so whatever
# loads must come from the code saved beside a checkpoint (remote code), as on a machine without this package.
BLOCK_PROJECT_IMPORTS = """
import sys

class BlockProjectPackages:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("modeling_lpllm", "dataset_scripts", "lpllm.training", "lpllm.evaluation", "tiny_lpllm"):
            raise ImportError(f"{name} must not be importable in this test")

sys.meta_path.insert(0, BlockProjectPackages())
"""


def run_without_the_package(script: str, *args: str, work_dir) -> subprocess.CompletedProcess:
    """Runs `script` (after `BLOCK_PROJECT_IMPORTS`) with `args` in a fresh Python, from an empty folder under
    `work_dir` and without PYTHONPATH, as on a machine without this package; fails the test on a non-zero exit."""
    elsewhere = Path(work_dir) / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    script_file = elsewhere / "load_elsewhere.py"
    script_file.write_text(BLOCK_PROJECT_IMPORTS + script)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run(
        [sys.executable, str(script_file), *map(str, args)],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def forward_in_a_fresh_process(script: str, model, inputs: dict, checkpoint, work_dir) -> tuple:
    """`model`'s logits on `inputs` here, and what `script` saved when run without this package
    (`run_without_the_package`) with the arguments CHECKPOINT INPUTS_FILE OUTPUT_FILE: (logits, the loaded output)."""
    inputs_file, output_file = Path(work_dir) / "inputs.pt", Path(work_dir) / "out.pt"
    torch.save(inputs, inputs_file)
    with torch.no_grad():
        expected = model(**inputs).logits
    run_without_the_package(script, checkpoint, inputs_file, output_file, work_dir=work_dir)
    return expected, torch.load(output_file)


def assert_same_readings(actual, expected, rtol: float = 1e-4):
    """Readings (pipeline outputs, or lists/dicts of them) are equal: the same structure and texts, and the same
    scores up to float rounding (a batch's padding changes the order of the sums behind them)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), (actual, expected)
        for key in expected:
            assert_same_readings(actual[key], expected[key], rtol)
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), (actual, expected)
        for actual_item, expected_item in zip(actual, expected):
            assert_same_readings(actual_item, expected_item, rtol)
    elif isinstance(expected, float):
        assert isinstance(actual, float) and math.isclose(actual, expected, rel_tol=rtol, abs_tol=1e-12), (
            actual,
            expected,
        )
    else:
        assert actual == expected, (actual, expected)


def teacher_forced_step_log_probs(model, processor, image, tokens: list[int]) -> torch.Tensor:
    """`(len(tokens), vocab)`: the next-token log-probabilities of the plate prompt on `image` followed by `tokens`,
    one forward pass; row i is the distribution `tokens[i]` was drawn from."""
    from modeling_lpllm.plate_reading import plate_reading_inputs

    inputs = plate_reading_inputs(processor, [[image]])
    prompt_length = inputs["input_ids"].shape[1]
    extended = torch.cat([inputs["input_ids"], torch.tensor([tokens])], dim=1)
    with torch.no_grad():
        logits = model(
            input_ids=extended,
            attention_mask=torch.ones_like(extended),
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
            mm_token_type_ids=torch.cat(
                [inputs["mm_token_type_ids"], torch.zeros(1, len(tokens), dtype=torch.long)], dim=1
            ),
        ).logits[0, prompt_length - 1 : -1]
    return torch.log_softmax(logits.float(), dim=-1)
