"""LP-LLM: Qwen3-VL with the Character-Aware Multimodal Reasoning Module between the vision-language projector and
the language model.

The only change to Qwen3-VL is in the image-feature hook: each image's merged visual tokens go through CMRM before
they are scattered into the language model's input. Everything else (forward, loss, generation, caching, M-RoPE) is
the parent's code, and the attribute names (`model.visual`, `model.language_model`, `lm_head`) are the parent's, so
a stock Qwen3-VL checkpoint loads with only the CMRM weights reported missing. A few of the parent's pieces are
swapped for cheaper ones that compute the same values on CPU (`patch_embedding.py`, `vision_attention.py`,
`rope_index.py`).
"""

import functools
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
from .conv_stem import MergeWindowConvStem
from .patch_embedding import LinearPatchEmbed
from .pipeline_lpllm import PlateRecognitionPipeline
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
        CMRM's refined character slots `S_L` for each image (None when CMRM is off).
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

    def initialize_weights(self):
        super().initialize_weights()
        # The stem's own scheme, after the stock one: the vision tower is a sub-model whose stock initialisation gives
        # every convolution the config's `initializer_range`. Loaded weights are left alone (`init` functions skip
        # them), so a checkpoint that has the stem keeps it.
        for module in self.modules():
            if isinstance(module, MergeWindowConvStem):
                self._init_conv_stem(module)

    def _init_conv_stem(self, stem: MergeWindowConvStem):
        """He initialisation inside the stem (the config's `initializer_range` would blow activations up through
        convolutions with hundreds of inputs), a residual block that starts as the identity, and an output layer at
        the model's own scale, like the linear patch embedding it replaces: the size of the first attention logits
        decides how long a from-scratch model sits on its initial loss plateau."""
        for conv in (stem.patchify, stem.conv1):
            init.kaiming_normal_(conv.weight, nonlinearity="relu")
            init.zeros_(conv.bias)
        init.zeros_(stem.conv2.weight)
        init.zeros_(stem.conv2.bias)
        init.normal_(stem.project.weight, mean=0.0, std=self.config.vision_config.initializer_range)
        init.zeros_(stem.project.bias)


class LPLLMModel(LPLLMPreTrainedModel, Qwen3VLModel):
    """Qwen3-VL base model whose image features pass through CMRM, one image at a time."""

    def __init__(self, config: LPLLMConfig):
        super().__init__(config)
        if config.vision_stem_channels:
            self.visual.patch_embed = MergeWindowConvStem(config.vision_config, config.vision_stem_channels)
        else:
            self.visual.patch_embed = LinearPatchEmbed(config.vision_config)
        for block in self.visual.blocks:
            block.attn = BatchedVisionAttention(block.attn.config)
        self.cmrm = CharacterAwareReasoningModule(config) if config.cmrm_enabled else None

    @can_return_tuple
    def get_image_features(self, pixel_values, image_grid_thw=None, **kwargs) -> LPLLMImageFeatures:
        kwargs.pop("return_dict", None)
        vision_output = super().get_image_features(pixel_values, image_grid_thw, return_dict=True, **kwargs)
        features = LPLLMImageFeatures(**vision_output)
        if self.cmrm is None:
            return features
        features.pooler_output, features.character_slots = self.cmrm.forward_with_slots(vision_output.pooler_output)
        if self.config.cmrm_apply_to_deepstack:
            contexts = features.character_slots.mean(dim=1)
            features.deepstack_features = [
                tuple(self.cmrm.add_context(feature[None], context[None])[0] for feature, context in zip(level, contexts))
                for level in vision_output.deepstack_features
            ]
        return features

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

    # `generate` and `Trainer` read the forward signature to know which inputs the model takes: show them the
    # parent's, which this forward passes through unchanged.
    @functools.wraps(Qwen3VLForConditionalGeneration.forward, assigned=(), updated=())
    def forward(
        self,
        *args,
        slot_labels: torch.LongTensor | None = None,
        plate_labels: torch.LongTensor | None = None,
        **kwargs,
    ):
        r"""
        The parent's forward, plus two optional auxiliary losses beyond the paper, added to `loss`:

        slot_labels (`torch.LongTensor` of shape `(num_images, cmrm_num_slots)`, *optional*):
            Token id of the plate character each CMRM slot should hold (slot k: the k-th character; slots past the
            plate's end: the end-of-answer token; -100: ignored), for `config.cmrm_slot_loss_weight > 0`. Each slot
            is classified through `lm_head`, so no parameter is added: dense, per-character supervision straight into
            CMRM and the vision tower.
        plate_labels (`torch.LongTensor` of shape `(num_images, max_plate_length)`, *optional*):
            Token ids of each image's plate characters, padded with -100, for `config.visual_ctc_loss_weight > 0`:
            a CTC loss on the visual tokens the language model reads (see [`LPLLMConfig`]). It teaches the vision
            tower where each character is from the first step, before the language model has learnt where to look.
        """
        if slot_labels is None and plate_labels is None:
            return super().forward(*args, **kwargs)
        if slot_labels is not None and (self.cmrm is None or self.config.cmrm_slot_loss_weight <= 0):
            raise ValueError("`slot_labels` needs CMRM on and `config.cmrm_slot_loss_weight` > 0.")
        if plate_labels is not None and self.config.visual_ctc_loss_weight <= 0:
            raise ValueError("`plate_labels` needs `config.visual_ctc_loss_weight` > 0.")
        if args or kwargs.get("pixel_values") is None:
            raise ValueError(
                "`slot_labels` and `plate_labels` need keyword inputs with `pixel_values` and `image_grid_thw`."
            )
        features = self.model.get_image_features(kwargs.pop("pixel_values"), kwargs["image_grid_thw"])
        outputs = super().forward(mm_encoder_outputs={"image": features}, **kwargs)
        auxiliary = []
        if slot_labels is not None:
            auxiliary.append(self.config.cmrm_slot_loss_weight * self._slot_loss(features.character_slots, slot_labels))
        if plate_labels is not None:
            ctc_loss = self._visual_ctc_loss(features.pooler_output, kwargs["image_grid_thw"], plate_labels)
            auxiliary.append(self.config.visual_ctc_loss_weight * ctc_loss)
        for weighted in auxiliary:
            outputs.loss = weighted if outputs.loss is None else outputs.loss + weighted
        return outputs

    def _slot_loss(self, character_slots: torch.Tensor, slot_labels: torch.LongTensor) -> torch.Tensor:
        slot_logits = self.lm_head(character_slots).float()
        if slot_labels.shape != slot_logits.shape[:2]:
            raise ValueError(
                f"`slot_labels` must have shape (num_images, cmrm_num_slots) = {tuple(slot_logits.shape[:2])}, "
                f"got {tuple(slot_labels.shape)}."
            )
        return nn.functional.cross_entropy(
            slot_logits.flatten(0, 1), slot_labels.flatten().to(slot_logits.device), ignore_index=-100
        )

    def _visual_ctc_loss(self, image_tokens, image_grid_thw: torch.LongTensor, plate_labels: torch.LongTensor):
        """CTC of each image's token columns (its merged token grid averaged over rows, left to right)."""
        if plate_labels.shape[0] != len(image_tokens):
            raise ValueError(
                f"`plate_labels` has {plate_labels.shape[0]} rows for {len(image_tokens)} images: one row per image."
            )
        merge = self.config.vision_config.spatial_merge_size
        columns = []
        for tokens, (frames, height, width) in zip(image_tokens, image_grid_thw.tolist()):
            columns.append(tokens.reshape(frames * height // merge, width // merge, -1).mean(dim=0))
        input_lengths = torch.tensor([len(sequence) for sequence in columns])
        plate_labels = plate_labels.cpu()
        target_lengths = (plate_labels != -100).sum(dim=1)
        # CTC needs a blank between repeated characters: a plate fits in `L + repeats` columns at least.
        repeats = ((plate_labels[:, 1:] == plate_labels[:, :-1]) & (plate_labels[:, 1:] != -100)).sum(dim=1)
        too_long = (target_lengths + repeats > input_lengths).nonzero().flatten().tolist()
        if too_long:
            image = too_long[0]
            raise ValueError(
                f"Image {image} has {int(input_lengths[image])} visual token columns, too few for its "
                f"{int(target_lengths[image])}-character plate under the visual CTC loss: give the images more width "
                "(`image_size`) or turn `visual_ctc_loss_weight` off."
            )
        padded = nn.utils.rnn.pad_sequence(columns)  # (max_columns, num_images, hidden)
        log_probs = self.lm_head(padded).float().log_softmax(dim=-1)
        return nn.functional.ctc_loss(
            log_probs,
            plate_labels[plate_labels != -100].to(log_probs.device),
            input_lengths,
            target_lengths,
            blank=self.config.image_token_id,
        )

    def save_pretrained(self, save_directory, *args, **kwargs):
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **_AUTO_MAP}
        self.config.custom_pipelines = _custom_pipelines()
        super().save_pretrained(save_directory, *args, **kwargs)
        custom_object_save(PlateRecognitionPipeline, save_directory)


__all__ = ["LPLLMImageFeatures", "LPLLMPreTrainedModel", "LPLLMModel", "Qwen3VLForPlateRecognition"]
