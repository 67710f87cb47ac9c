"""A small convolutional stem in place of Qwen3-VL's linear patch embedding (beyond the paper; from scratch only).

Qwen3-VL embeds each 16x16 patch with one linear map, and its merger concatenates the 2x2 patches of a merge window:
neither is invariant to a shift of the picture. In a plate strip two patch rows high, a tilted plate runs from the
bottom patch row on one side to the top one on the other, so the same character reaches the vision tower through
different weights depending on its height, and a small model trained from scratch has to learn each case. A few
convolutions before the patch grid share their weights across positions, as a CRNN's do.

The processor sends the patches of each merge window together (Qwen2-VL's patch order), so each window's pixels are
reassembled into a `(merge * patch)`-pixel square and convolved on their own: no image grid is needed, any image
size the processor accepts works, and the module takes the same inputs as the patch embedding it replaces and gives
one `embed_dim` vector per patch, in the same order. For a plate strip one merge window high, the window holds the
whole height of the plate. (On the CPU recipe it read perspective plates better and the rest worse, no gain overall
in 15 minutes: see the project's results/embedded_default.md.)

Layers, per window: a `stem_patch`-pixel patchify convolution to `channels`, a residual block of two 3x3
convolutions, and a convolution from each patch's `patch_size / stem_patch` cells to `embed_dim`.
"""

import torch
from torch import nn

from .patch_embedding import repeats_its_first_frame


class MergeWindowConvStem(nn.Module):
    """Maps flattened patches `(num_patches, channels * temporal * patch * patch)` to `(num_patches, embed_dim)`.

    Args:
        vision_config: the Qwen3-VL vision config (`patch_size`, `temporal_patch_size`, `in_channels`,
            `spatial_merge_size`, `hidden_size`).
        channels (`int`): width of the convolutional stem.
    """

    stem_patch = 4

    def __init__(self, vision_config, channels: int):
        super().__init__()
        self.patch_size = vision_config.patch_size
        self.temporal_patch_size = vision_config.temporal_patch_size
        self.in_channels = vision_config.in_channels
        self.merge_size = vision_config.spatial_merge_size
        self.embed_dim = vision_config.hidden_size
        if self.patch_size % self.stem_patch:
            raise ValueError(
                f"The convolutional stem needs `vision_config.patch_size` divisible by {self.stem_patch}, "
                f"got {self.patch_size}."
            )
        cells = self.patch_size // self.stem_patch
        self.patchify = nn.Conv2d(
            self.in_channels * self.temporal_patch_size, channels, self.stem_patch, stride=self.stem_patch
        )
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.activation = nn.GELU()
        self.project = nn.Conv2d(channels, self.embed_dim, cells, stride=cells)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        merge, patch = self.merge_size, self.patch_size
        windows = hidden_states.reshape(
            -1, merge, merge, self.in_channels, self.temporal_patch_size, patch, patch
        ).to(dtype=self.patchify.weight.dtype)
        # (windows, rows, cols, C, T, P, P) -> (windows, C, T, rows, P, cols, P) -> (windows, C*T, rows*P, cols*P)
        windows = windows.permute(0, 3, 4, 1, 5, 2, 6)
        num_windows = windows.shape[0]
        pixels = windows.reshape(num_windows, self.in_channels * self.temporal_patch_size, merge * patch, merge * patch)
        features = self._patchify(pixels)
        features = features + self.conv2(self.activation(self.conv1(self.activation(features))))
        tokens = self.project(self.activation(features))  # (windows, embed_dim, merge, merge)
        return tokens.permute(0, 2, 3, 1).reshape(num_windows * merge * merge, self.embed_dim)

    def _patchify(self, pixels: torch.Tensor) -> torch.Tensor:
        frames = pixels.unflatten(1, (self.in_channels, self.temporal_patch_size))
        if self.temporal_patch_size == 1 or not repeats_its_first_frame(frames):
            return self.patchify(pixels)
        # A still image repeats its frame over the temporal patch: sum the weight's temporal slices instead.
        weight = self.patchify.weight.unflatten(1, (self.in_channels, self.temporal_patch_size)).sum(dim=2)
        return nn.functional.conv2d(frames[:, :, 0], weight, self.patchify.bias, stride=self.stem_patch)
