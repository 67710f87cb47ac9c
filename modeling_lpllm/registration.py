"""Registers LP-LLM with the transformers Auto classes in this process, for installed-package use without
`trust_remote_code`. Saved checkpoints do not need it: their `auto_map` points at the code files saved beside them.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .configuration_lpllm import LPLLMConfig
from .modeling_lpllm import Qwen3VLForPlateRecognition
from .processing_lpllm import LPLLMProcessor


def register_lpllm() -> None:
    """Makes `AutoConfig`, `AutoModel`, `AutoModelForImageTextToText`, `AutoModelForCausalLM` and `AutoProcessor`
    resolve the `"lpllm"` model type to this package's classes. Safe to call more than once."""
    AutoConfig.register(LPLLMConfig.model_type, LPLLMConfig, exist_ok=True)
    for auto_class in (AutoModel, AutoModelForImageTextToText, AutoModelForCausalLM):
        auto_class.register(LPLLMConfig, Qwen3VLForPlateRecognition, exist_ok=True)
    AutoProcessor.register(LPLLMConfig, LPLLMProcessor, exist_ok=True)
