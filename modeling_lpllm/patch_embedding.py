"""Qwen3-VL's patch embedding computed as one matrix product.

Qwen3-VL embeds each flattened `channels x temporal x patch x patch` patch with a `Conv3d` whose kernel equals its
stride, which is a linear map of the flattened patch. On CPU the convolution (and above all its backward pass) is
several times slower than the equivalent matrix product: for a batch of 16 plate strips it was ~20% of a training
step of the embedded default. The weights keep the parent's `proj` `Conv3d` layout and names, so checkpoints load
either way and the outputs agree to float rounding.
"""

import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchEmbed


class LinearPatchEmbed(Qwen3VLVisionPatchEmbed):
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = self.proj.weight
        flat_patches = hidden_states.reshape(-1, weight[0].numel()).to(dtype=weight.dtype)
        return torch.nn.functional.linear(flat_patches, weight.reshape(self.embed_dim, -1), self.proj.bias)
