"""Tiny LP-LLM models and processors for tests: random weights, offline processor, a few hundred KB."""

import numpy as np
import torch
from PIL import Image

from modeling_lpllm import LPLLMConfig, Qwen3VLForPlateRecognition, build_offline_processor


# Pixel budget for tests: a 94x24 crop becomes 32x192 pixels, 2x12 patches of 16, 6 visual tokens.
TINY_MIN_PIXELS = 32 * 32 * 3
TINY_MAX_PIXELS = 32 * 32 * 12


def tiny_processor():
    return build_offline_processor(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)


def tiny_text_config(vocab_size: int, pad_token_id: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [2, 3, 3],
            "mrope_interleaved": True,
        },
        "pad_token_id": pad_token_id,
    }


def tiny_vision_config() -> dict:
    return {
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


def tiny_config(processor=None, **overrides) -> LPLLMConfig:
    processor = processor or tiny_processor()
    tokenizer = processor.tokenizer
    kwargs = {
        "text_config": tiny_text_config(len(tokenizer), tokenizer.pad_token_id),
        "vision_config": tiny_vision_config(),
        "cmrm_num_slots": 8,
        "cmrm_num_layers": 2,
        "cmrm_num_heads": 2,
        **processor.special_token_ids(),
    }
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
