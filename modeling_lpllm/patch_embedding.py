"""Qwen3-VL's patch embedding computed as one matrix product.

Qwen3-VL embeds each flattened `channels x temporal x patch x patch` patch with a `Conv3d` whose kernel equals its
stride, which is a linear map of the flattened patch. On CPU the convolution (and above all its backward pass) is
several times slower than the equivalent matrix product: for a batch of 16 plate strips it was ~20% of a training
step of the embedded default. The weights keep the parent's `proj` `Conv3d` layout and names, so checkpoints load
either way and the outputs agree to float rounding.

A still image reaches the vision tower as `temporal_patch_size` identical copies of itself (the processor repeats the
frame to fill the temporal patch). For such patches `W @ [x; x] = (W_0 + W_1) @ x`: summing the weight's temporal
slices first halves the product's cost, with the same gradients. Patches that differ in time (video) take the full
product.
"""

import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchEmbed


def repeats_its_first_frame(patches: torch.Tensor) -> bool:
    """Whether every frame of `patches` (`(N, channels, temporal, ...)`) equals the first: a still image."""
    # `torch.equal` makes no boolean tensor: ~2x faster than `(a == b).all()` on a batch of plate strips.
    first = patches[:, :, 0]
    return all(torch.equal(first, patches[:, :, frame]) for frame in range(1, patches.shape[2]))


class LinearPatchEmbed(Qwen3VLVisionPatchEmbed):
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = self.proj.weight  # (embed_dim, channels, temporal, patch, patch)
        patches = hidden_states.reshape(-1, *weight.shape[1:]).to(dtype=weight.dtype)
        if self.temporal_patch_size > 1 and repeats_its_first_frame(patches):
            flat_frames = patches[:, :, 0].reshape(patches.shape[0], -1)
            return torch.nn.functional.linear(flat_frames, weight.sum(dim=2).reshape(self.embed_dim, -1), self.proj.bias)
        flat_patches = patches.reshape(patches.shape[0], -1)
        return torch.nn.functional.linear(flat_patches, weight.reshape(self.embed_dim, -1), self.proj.bias)
