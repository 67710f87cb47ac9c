"""LP-LLM: Qwen3-VL with a Character-Aware Multimodal Reasoning Module, for degraded license plates."""

from .cmrm import CharacterAwareReasoningModule
from .configuration_lpllm import QWEN3_VL_2B_TEXT_CONFIG, QWEN3_VL_2B_VISION_CONFIG, LPLLMConfig
from .image_checks import PLATE_IMAGE_LIMITS, ImageInputError, ImageLimits, load_image_input
from .modeling_lpllm import LPLLMModel, LPLLMPreTrainedModel, Qwen3VLForPlateRecognition
from .pipeline_lpllm import PlateRecognitionPipeline, load_plate_image
from .plate_constraints import PlatePatternLogitsProcessor
from .plate_patterns import REGION_PATTERNS, matching_regions, parse_plate_pattern, resolve_patterns
from .plate_reading import DEFAULT_MAX_NEW_TOKENS, read_plates
from .processing_lpllm import (
    CHAT_TEMPLATE,
    DEFAULT_PROMPT,
    LPLLMProcessor,
    build_offline_processor,
    build_plate_image_processor,
    plate_messages,
    to_rgb,
)
from .registration import register_lpllm
from .tokenization_lpllm import CN_PROVINCES, DEFAULT_PLATE_CHARSET, add_plate_characters, build_char_tokenizer


__all__ = [
    "QWEN3_VL_2B_TEXT_CONFIG",
    "QWEN3_VL_2B_VISION_CONFIG",
    "CharacterAwareReasoningModule",
    "ImageInputError",
    "ImageLimits",
    "PLATE_IMAGE_LIMITS",
    "load_image_input",
    "LPLLMConfig",
    "LPLLMModel",
    "LPLLMPreTrainedModel",
    "Qwen3VLForPlateRecognition",
    "PlateRecognitionPipeline",
    "PlatePatternLogitsProcessor",
    "REGION_PATTERNS",
    "matching_regions",
    "parse_plate_pattern",
    "resolve_patterns",
    "read_plates",
    "LPLLMProcessor",
    "build_offline_processor",
    "build_plate_image_processor",
    "build_char_tokenizer",
    "add_plate_characters",
    "load_plate_image",
    "plate_messages",
    "register_lpllm",
    "to_rgb",
    "CHAT_TEMPLATE",
    "DEFAULT_MAX_NEW_TOKENS",
    "CN_PROVINCES",
    "DEFAULT_PLATE_CHARSET",
    "DEFAULT_PROMPT",
]
