"""Configuration of LP-LLM: a Qwen3-VL configuration plus the settings of the Character-Aware Multimodal
Reasoning Module (CMRM)."""

import copy

from huggingface_hub.dataclasses import strict
from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLConfig


# Qwen/Qwen3-VL-2B-Instruct's architecture (its public config.json), the default when no sub-config is given:
# the stock Qwen3VLConfig defaults pair an 8B-sized language model with a vision tower projecting to another size.
QWEN3_VL_2B_TEXT_CONFIG = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 262144,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 5000000.0,
        "mrope_section": [24, 20, 20],
        "mrope_interleaved": True,
    },
}
QWEN3_VL_2B_VISION_CONFIG = {
    "depth": 24,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_heads": 16,
    "hidden_act": "gelu_pytorch_tanh",
    "out_hidden_size": 2048,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [5, 11, 17],
}

# The vision towers `vision_encoder` selects.
VISION_ENCODERS = ("qwen3_vl", "ppocr")
# Classes of PP-OCRv6 small's CTC head (`PPOCRRecognizerConfig.vocab_size`): the blank, 18,708 characters, the space.
PPOCR_CTC_NUM_CLASSES = 18710


@strict
class LPLLMConfig(Qwen3VLConfig):
    r"""
    Configuration of [`Qwen3VLForPlateRecognition`]. It accepts every argument of [`Qwen3VLConfig`]
    (`text_config`, `vision_config`, `image_token_id`, ...) and adds the CMRM settings below. A sub-config that is
    not given takes the dimensions of Qwen/Qwen3-VL-2B-Instruct (`QWEN3_VL_2B_TEXT_CONFIG`,
    `QWEN3_VL_2B_VISION_CONFIG`).

    Args:
        cmrm_num_slots (`int`, *optional*, defaults to 8):
            Number K of learnable character slot queries; the longest plate the model should read (7 for most
            plates, 8 for Chinese new-energy plates).
        cmrm_num_layers (`int`, *optional*, defaults to 2):
            Number L of `S <- LayerNorm(S + MultiHeadAttn(S, H, H))` refinement layers.
        cmrm_num_heads (`int`, *optional*, defaults to 8):
            Attention heads of each CMRM layer. Must divide the language model's hidden size.
        cmrm_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the CMRM attention weights, in `[0, 1)`.
        cmrm_alpha (`float`, *optional*, defaults to 1.0):
            Scale of the character context `g` added to every visual token: `H'_i = H_i + alpha * g`. With
            `0.0` the model computes exactly what the underlying Qwen3-VL computes.
        cmrm_learnable_alpha (`bool`, *optional*, defaults to `False`):
            Whether `alpha` is a trained parameter (initialised to `cmrm_alpha`) instead of a constant.
        cmrm_enabled (`bool`, *optional*, defaults to `True`):
            Switch for the whole module; off gives the plain Qwen3-VL (ablations A and B of the paper).
        cmrm_apply_to_deepstack (`bool`, *optional*, defaults to `False`):
            Whether the character context is also added to the DeepStack visual features that Qwen3-VL injects
            into the first language-model layers (beyond the paper, which only changes the projected tokens).
        cmrm_fuse_frames (`bool`, *optional*, defaults to `False`):
            Beyond the paper: the images of one prompt (the frames of a track, read with one image placeholder per
            frame) share one character context. CMRM's slots attend over the visual tokens of all of them together,
            so `g` pools evidence across frames, and the same `g` is added to every frame's tokens. Which images share
            a prompt comes from `mm_token_type_ids`. A prompt of one image reads as without it.
        vision_encoder (`str`, *optional*, defaults to `"qwen3_vl"`):
            The vision tower. `"qwen3_vl"`: Qwen3-VL's, built from `vision_config` (every stock checkpoint).
            `"ppocr"` (beyond the paper): the backbone and neck of PP-OCRv6 small's text recognizer, its width
            sequence pooled to the processor's number of visual tokens and projected to the language model
            (`ppocr_vision.py`), for from-scratch configs started from its pretrained weights; `vision_config` then
            only gives the patching (`patch_size`, `temporal_patch_size`, `spatial_merge_size`) and
            `out_hidden_size`, and the processor must normalise with mean and std 0.5.
        ppocr_image_width (`int`, *optional*):
            With `vision_encoder="ppocr"`: the width, a multiple of 8, every image is resized to at the encoder's
            height of 48 pixels, whatever the processor's `image_size`. PP-OCR reads text at about its own aspect
            ratio: a plate stretched into a 32x672 strip is almost unreadable to it, the same strip brought back to
            48x192 reads about as well as the crop. None: the processor image's aspect ratio is kept.
        ppocr_ctc_classes (`list[int]`, *optional*):
            With `vision_encoder="ppocr"` (beyond the paper): classes of PP-OCR's pretrained CTC head (0 the blank,
            `i + 1` the dictionary's character `i`, 18,710 in all) whose per-position log-probabilities are
            concatenated to the encoder's features before the merger, e.g. the blank and the plate characters: the
            head's own reading evidence, next to the features it reads it from. The blank must be among them. None:
            the encoder's features alone.

    Example:

    ```python
    >>> from modeling_lpllm import LPLLMConfig, Qwen3VLForPlateRecognition
    >>> config = LPLLMConfig(cmrm_num_slots=7)
    >>> model = Qwen3VLForPlateRecognition(config)
    ```"""

    model_type = "lpllm"
    _auto_class = "AutoConfig"

    cmrm_num_slots: int = 8
    cmrm_num_layers: int = 2
    cmrm_num_heads: int = 8
    cmrm_dropout: float | int = 0.0
    cmrm_alpha: float | int = 1.0
    cmrm_learnable_alpha: bool = False
    cmrm_enabled: bool = True
    cmrm_apply_to_deepstack: bool = False
    cmrm_fuse_frames: bool = False
    vision_encoder: str = "qwen3_vl"
    ppocr_image_width: int | None = None
    ppocr_ctc_classes: list[int] | None = None

    def __post_init__(self, **kwargs):
        if self.text_config is None:
            self.text_config = copy.deepcopy(QWEN3_VL_2B_TEXT_CONFIG)
        if self.vision_config is None:
            self.vision_config = copy.deepcopy(QWEN3_VL_2B_VISION_CONFIG)
        super().__post_init__(**kwargs)
        self.check_cmrm_settings()
        self.check_vision_encoder()

    def check_vision_encoder(self):
        """Raises a `ValueError` naming `vision_encoder`, `ppocr_image_width` or `ppocr_ctc_classes` when its value
        cannot work (run at construction and by the model)."""
        if self.vision_encoder not in VISION_ENCODERS:
            raise ValueError(
                f"`vision_encoder` must be one of {', '.join(map(repr, VISION_ENCODERS))}; got {self.vision_encoder!r}."
            )
        width = self.ppocr_image_width
        if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 8 or width % 8):
            raise ValueError(f"`ppocr_image_width` must be a positive multiple of 8 (pixels), got {width!r}.")
        classes = self.ppocr_ctc_classes
        if classes is None:
            return
        if self.vision_encoder != "ppocr":
            raise ValueError(
                f"`ppocr_ctc_classes` selects classes of PP-OCR's CTC head; it needs `vision_encoder=\"ppocr\"`, got "
                f"{self.vision_encoder!r}."
            )
        # `@strict` checks the type (a list of ints); the range and the repeats are checked here.
        if not all(0 <= index < PPOCR_CTC_NUM_CLASSES for index in classes):
            raise ValueError(
                f"`ppocr_ctc_classes` must be a list of class indices in [0, {PPOCR_CTC_NUM_CLASSES}), got {classes!r}."
            )
        if len(set(classes)) != len(classes):
            raise ValueError(f"`ppocr_ctc_classes` names a class twice: {classes!r}.")
        if 0 not in classes:
            raise ValueError(
                "`ppocr_ctc_classes` must include the blank, class 0: the head tells a doubled character (`A`, blank, "
                "`A`) from one character over two positions (`A`, `A`) by it."
            )

    def check_cmrm_settings(self):
        """Raises a `ValueError` naming the first CMRM field whose value cannot work.

        It runs when the config is built and again when the module is built, so that values set after
        construction (`from_pretrained(..., cmrm_num_heads=3)`) are checked too.
        """
        for name in ("cmrm_num_slots", "cmrm_num_layers", "cmrm_num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if not 0.0 <= self.cmrm_dropout < 1.0:
            raise ValueError(f"`cmrm_dropout` must be in [0, 1), got {self.cmrm_dropout!r}.")
        if isinstance(self.cmrm_alpha, bool) or not isinstance(self.cmrm_alpha, (int, float)):
            raise ValueError(f"`cmrm_alpha` must be a number, got {self.cmrm_alpha!r}.")
        if self.cmrm_alpha != self.cmrm_alpha or abs(self.cmrm_alpha) == float("inf"):
            raise ValueError(f"`cmrm_alpha` must be finite, got {self.cmrm_alpha!r}.")
        for name in ("cmrm_learnable_alpha", "cmrm_enabled", "cmrm_apply_to_deepstack", "cmrm_fuse_frames"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        hidden_size = self.text_config.hidden_size
        if self.vision_config.out_hidden_size != hidden_size:
            raise ValueError(
                f"`vision_config.out_hidden_size` ({self.vision_config.out_hidden_size}) must equal "
                f"`text_config.hidden_size` ({hidden_size}): CMRM works on projected visual tokens."
            )
        if hidden_size % self.cmrm_num_heads != 0:
            raise ValueError(
                f"`cmrm_num_heads` ({self.cmrm_num_heads}) must divide the language model hidden size ({hidden_size})."
            )


__all__ = [
    "LPLLMConfig",
    "VISION_ENCODERS",
    "PPOCR_CTC_NUM_CLASSES",
    "QWEN3_VL_2B_TEXT_CONFIG",
    "QWEN3_VL_2B_VISION_CONFIG",
]
