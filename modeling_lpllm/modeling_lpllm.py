"""LP-LLM: Qwen3-VL with the Character-Aware Multimodal Reasoning Module between the vision-language projector and
the language model.

The only change to Qwen3-VL is in the image-feature hook: each image's merged visual tokens go through CMRM before
they are scattered into the language model's input (with `config.cmrm_fuse_frames`, the images of one prompt
together: the hook then takes the prompts' `mm_token_type_ids`, which generation passes it, and so does `forward`).
Everything else (forward, loss, generation, caching, M-RoPE) is the parent's code, and the attribute names
(`model.visual`, `model.language_model`, `lm_head`) are the parent's, so a stock Qwen3-VL checkpoint loads with only
the CMRM weights reported missing. A few of the parent's pieces are swapped for cheaper ones that compute the same
values on CPU (`patch_embedding.py`, `vision_attention.py`, `rope_index.py`). With `config.vision_encoder="ppocr"`
(beyond the paper) the vision tower is PP-OCR's pretrained text encoder behind the same interface
(`ppocr_vision.py`).
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.dynamic_module_utils import custom_object_save
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    BaseModelOutputWithDeepstackFeatures,
    Qwen3VLForConditionalGeneration,
    Qwen3VLModel,
    Qwen3VLPreTrainedModel,
)
from transformers.utils import can_return_tuple, logging

from .cmrm import CharacterAwareReasoningModule
from .configuration_lpllm import LPLLMConfig
from .patch_embedding import LinearPatchEmbed
from .pipeline_lpllm import PlateRecognitionPipeline
from .ppocr_vision import PPOCRVisionModel
from .rope_index import rope_index_per_distinct_row
from .vision_attention import BatchedVisionAttention


logger = logging.get_logger(__name__)

# The auto classes a saved checkpoint answers to with `trust_remote_code=True`.
_AUTO_MAP = {
    "AutoConfig": "configuration_lpllm.LPLLMConfig",
    "AutoModel": "modeling_lpllm.Qwen3VLForPlateRecognition",
    "AutoModelForImageTextToText": "modeling_lpllm.Qwen3VLForPlateRecognition",
    "AutoModelForCausalLM": "modeling_lpllm.Qwen3VLForPlateRecognition",
}


def _custom_pipelines() -> dict:
    implementation = f"pipeline_lpllm.{PlateRecognitionPipeline.__name__}"
    # transformers 5 removed the "image-to-text" task; the checkpoint brings its own implementation for it.
    return {
        "image-to-text": {"impl": implementation, "pt": ["AutoModelForImageTextToText"], "type": "multimodal"},
    }


@dataclass
class LPLLMImageFeatures(BaseModelOutputWithDeepstackFeatures):
    r"""
    character_slots (`torch.FloatTensor` of shape `(num_images, cmrm_num_slots, hidden_size)`, *optional*):
        CMRM's refined character slots `S_L` for each image (None when CMRM is off); with `cmrm_fuse_frames` the
        images of one prompt have the same.
    """

    character_slots: torch.FloatTensor | None = None


class LPLLMPreTrainedModel(Qwen3VLPreTrainedModel):
    config: LPLLMConfig

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, CharacterAwareReasoningModule):
            init.normal_(module.slot_queries, mean=0.0, std=self.config.text_config.initializer_range)
            if isinstance(module.alpha, nn.Parameter):
                init.constant_(module.alpha, float(self.config.cmrm_alpha))
        elif isinstance(module, nn.Conv2d):
            # The PP-OCR encoder's (the only 2-D convolutions here) take PyTorch's default initialisation: that network
            # has no normalisation between its convolutions, and `initializer_range` (0.2 in the from-scratch
            # configs) would blow its activations up block after block.
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            init.zeros_(module.bias)


class LPLLMModel(LPLLMPreTrainedModel, Qwen3VLModel):
    """Qwen3-VL base model whose image features pass through CMRM, one image at a time or, with
    `config.cmrm_fuse_frames`, the images of one prompt together. Its vision tower is Qwen3-VL's or, with
    `config.vision_encoder="ppocr"`, PP-OCR's encoder behind the same interface (`ppocr_vision.py`)."""

    def __init__(self, config: LPLLMConfig):
        config.check_vision_encoder()
        super().__init__(config)
        if config.vision_encoder == "ppocr":
            # In place of the Qwen3-VL tower the parent built from `vision_config`, which keeps the patching.
            self.visual = PPOCRVisionModel(config)
        else:
            self.visual.patch_embed = LinearPatchEmbed(config.vision_config)
            for block in self.visual.blocks:
                block.attn = BatchedVisionAttention(block.attn.config)
        self.cmrm = CharacterAwareReasoningModule(config) if config.cmrm_enabled else None

    @can_return_tuple
    def get_image_features(
        self, pixel_values, image_grid_thw=None, mm_token_type_ids=None, **kwargs
    ) -> LPLLMImageFeatures:
        r"""
        mm_token_type_ids (`torch.IntTensor` of shape `(batch_size, sequence_length)`, *optional*):
            The processor's token types (1 at image tokens) of the prompts the images belong to. With
            `config.cmrm_fuse_frames`, the images of one prompt share one character context (`cmrm.py`); without
            them, or without the option, each image has its own.
        """
        kwargs.pop("return_dict", None)
        vision_output = super().get_image_features(pixel_values, image_grid_thw, return_dict=True, **kwargs)
        features = LPLLMImageFeatures(**vision_output)
        if self.cmrm is None:
            return features
        # A named parameter, not a keyword in **kwargs: `generate` encodes the images before its first step with the
        # model inputs this signature names, so it hands over the prompts' token types too.
        images_per_group = None
        if self.config.cmrm_fuse_frames and mm_token_type_ids is not None:
            images_per_group = self.images_per_prompt(mm_token_type_ids, image_grid_thw)
        features.pooler_output, features.character_slots = self.cmrm.forward_with_slots(
            vision_output.pooler_output, images_per_group
        )
        if self.config.cmrm_apply_to_deepstack:
            contexts = features.character_slots.mean(dim=1)
            features.deepstack_features = [
                tuple(self.cmrm.add_context(feature[None], context[None])[0] for feature, context in zip(level, contexts))
                for level in vision_output.deepstack_features
            ]
        return features

    def images_per_prompt(self, mm_token_type_ids, image_grid_thw) -> list[int]:
        """How many of the batch's images each prompt (row) holds, for the rows that hold any. The processor lays the
        images out prompt after prompt, so a row's image tokens (type 1 in `mm_token_type_ids`) are those of its next
        images in `image_grid_thw` order.

        Raises:
            ValueError: when the rows' image tokens do not add up image by image to `image_grid_thw`'s.
        """
        tokens_per_image = (image_grid_thw.prod(-1) // self.visual.spatial_merge_size**2).tolist()
        counts, image = [], 0
        for row, row_tokens in enumerate((mm_token_type_ids == 1).sum(-1).tolist()):
            first = image
            while row_tokens > 0 and image < len(tokens_per_image):
                row_tokens -= tokens_per_image[image]
                image += 1
            if row_tokens != 0:
                raise ValueError(
                    f"Row {row} of `mm_token_type_ids` marks image tokens that are not whole images of "
                    f"`image_grid_thw` ({tokens_per_image} tokens per image): the prompts and images do not match."
                )
            if image > first:
                counts.append(image - first)
        if image != len(tokens_per_image):
            raise ValueError(
                f"`mm_token_type_ids` marks the tokens of {image} image(s); `image_grid_thw` holds "
                f"{len(tokens_per_image)}."
            )
        return counts

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        cache=None,
        inputs_embeds=None,
        pixel_values=None,
        pixel_values_videos=None,
        image_grid_thw=None,
        video_grid_thw=None,
        mm_token_type_ids=None,
        mm_encoder_outputs=None,
        **kwargs,
    ):
        if self.config.cmrm_fuse_frames and pixel_values is not None and not (mm_encoder_outputs or {}).get("image"):
            # The parent encodes the images without `mm_token_type_ids`, which says which of them share a prompt.
            image_outputs = self.get_image_features(
                pixel_values, image_grid_thw, mm_token_type_ids, return_dict=True, **kwargs
            )
            mm_encoder_outputs, pixel_values = {**(mm_encoder_outputs or {}), "image": image_outputs}, None
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )

    def get_slot_attention(self, pixel_values, image_grid_thw) -> tuple[torch.Tensor, ...]:
        """Where CMRM's character slots look in each image: the vision tower runs on the image processor's
        `pixel_values` and `image_grid_thw`, then CMRM's slot refinement alone (`cmrm.slot_attention`).

        Returns:
            one `(K, N_i)` tensor per image: the last CMRM layer's attention weights averaged over its heads, over the
            image's `N_i` visual tokens in the order the language model reads them (each row sums to one).

        Raises:
            ValueError: when CMRM is off (`cmrm_enabled=False`).
        """
        if self.cmrm is None:
            raise ValueError("This model has no CMRM (`cmrm_enabled=False`): it has no slot attention to show.")
        vision_output = super().get_image_features(pixel_values, image_grid_thw, return_dict=True)
        return self.cmrm.slot_attention(vision_output.pooler_output)

    def get_rope_index(
        self, input_ids, mm_token_type_ids, image_grid_thw=None, video_grid_thw=None, attention_mask=None, **kwargs
    ):
        # The parent's positions, once per distinct row (`rope_index.py`): the same tensors, fewer Python loops.
        return rope_index_per_distinct_row(
            super().get_rope_index, input_ids, mm_token_type_ids, image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw, attention_mask=attention_mask, **kwargs,
        )

    def get_video_features(self, pixel_values_videos, video_grid_thw=None, **kwargs):
        # CMRM reads plates in still images; video frames keep the plain Qwen3-VL features.
        return Qwen3VLModel.get_image_features(self, pixel_values_videos, video_grid_thw, **kwargs)


class Qwen3VLForPlateRecognition(LPLLMPreTrainedModel, Qwen3VLForConditionalGeneration):
    """Qwen3-VL for license-plate recognition, with CMRM on the visual tokens. Generates the plate text.

    Start from any stock Qwen3-VL checkpoint (`Qwen3VLForPlateRecognition.from_pretrained("Qwen/Qwen3-VL-2B-Instruct",
    cmrm_num_slots=8)`), or from a saved LP-LLM checkpoint, which `AutoModel.from_pretrained(path,
    trust_remote_code=True)` also loads without this package installed.
    """

    _auto_class = "AutoModel"

    def __init__(self, config: LPLLMConfig):
        # Not the parent's __init__: it would build a plain Qwen3VLModel only to throw it away.
        Qwen3VLPreTrainedModel.__init__(self, config)
        self.model = LPLLMModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    @property
    def cmrm(self) -> CharacterAwareReasoningModule | None:
        return self.model.cmrm

    def get_slot_attention(self, pixel_values, image_grid_thw) -> tuple[torch.Tensor, ...]:
        """`LPLLMModel.get_slot_attention`: each image's `(K, N_i)` slot attention weights."""
        return self.model.get_slot_attention(pixel_values, image_grid_thw)

    def _expand_multimodal_outputs(self, input_ids, mm_encoder_output: dict, *args, **kwargs):
        # Beam search repeats the encoded images per beam; transformers' expansion reads the first DeepStack feature,
        # and a tower without DeepStack features (PP-OCR's) has an empty list: there is nothing of it to repeat.
        empty = [
            output for output in mm_encoder_output.values() if getattr(output, "deepstack_features", None) == []
        ]
        for output in empty:
            output.deepstack_features = None
        try:
            return super()._expand_multimodal_outputs(input_ids, mm_encoder_output, *args, **kwargs)
        finally:
            for output in empty:
                output.deepstack_features = []

    def save_pretrained(self, save_directory, *args, **kwargs):
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **_AUTO_MAP}
        self.config.custom_pipelines = _custom_pipelines()
        super().save_pretrained(save_directory, *args, **kwargs)
        custom_object_save(PlateRecognitionPipeline, save_directory)


__all__ = ["LPLLMImageFeatures", "LPLLMPreTrainedModel", "LPLLMModel", "Qwen3VLForPlateRecognition"]
