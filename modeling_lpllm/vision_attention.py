"""Qwen3-VL's vision attention with the images of a batch attended to in one call.

The vision tower receives a batch as one long sequence of patches and `cu_seqlens` marks where each image starts.
Without flash attention, the parent splits the sequence and calls attention once per image: a training batch of 32
plates costs 32 calls per layer, forward and backward, each too small to keep two CPU cores busy. Plates resized
to one fixed size (the processor's `image_size`) all have the same number of patches, so their queries, keys and
values can be stacked into a batch of images and attended to in a single call. The result is the parent's:
attention never crosses an image boundary either way. Batches of images of different sizes, and flash attention
(which handles `cu_seqlens` natively), take the parent's path. The weights keep the parent's names (`qkv`,
`proj`), so checkpoints load either way.
"""

import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    ALL_ATTENTION_FUNCTIONS,
    Qwen3VLVisionAttention,
    apply_rotary_pos_emb_vision,
    eager_attention_forward,
    is_flash_attention_requested,
)


class BatchedVisionAttention(Qwen3VLVisionAttention):
    def forward(
        self,
        hidden_states: torch.Tensor,
        cu_seqlens: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        max_seqlen: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        lengths = cu_seqlens[1:] - cu_seqlens[:-1]
        if is_flash_attention_requested(self.config) or not bool((lengths == lengths[0]).all()):
            return super().forward(hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
        seq_length, num_images = hidden_states.shape[0], lengths.shape[0]
        query_states, key_states, value_states = (
            self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        )
        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb_vision(query_states, key_states, cos, sin)
        # (sequence, heads, head_dim) -> (images, heads, patches per image, head_dim)
        query_states, key_states, value_states = (
            states.reshape(num_images, -1, self.num_heads, self.head_dim).transpose(1, 2)
            for states in (query_states, key_states, value_states)
        )
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, _ = attention_interface(
            self,
            query_states,
            key_states,
            value_states,
            attention_mask=None,
            scaling=self.scaling,
            dropout=0.0 if not self.training else self.attention_dropout,
            is_causal=False,
            **kwargs,
        )
        # The interface returns (images, patches per image, heads, head_dim): back to the patch sequence.
        return self.proj(attn_output.reshape(seq_length, -1).contiguous())
