"""Turns plate images into the fixed-size tensors the CTC baselines read."""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from modeling_lpllm import to_rgb
from modeling_lpllm.deskew import deskew


@dataclass(frozen=True)
class CropPreparation:
    """How a baseline turns plate crops into its input: levelled (tilts up to `deskew_max_degrees`; 0: off), trimmed
    to the plate with its keystone undone (`rectify_plate`), then resized to `size = (height, width)` without keeping
    the aspect ratio (plate crops are already close to it). The levelling and rectification are `LPLLMProcessor`'s,
    so a baseline can see the crops LP-LLM sees. `BaselineConfig.crop_preparation` builds one from a checkpoint's
    config."""

    size: tuple[int, int]
    deskew_max_degrees: float = 0.0
    rectify_plate: bool = False

    def level(self, image: Image.Image) -> Image.Image:
        """The RGB crop levelled and rectified as configured, at its own size (what a training augmentation that
        resamples to `size` starts from)."""
        return deskew(to_rgb(image), self.deskew_max_degrees, rectify=self.rectify_plate)

    def to_uint8(self, images: list[Image.Image]) -> torch.Tensor:
        """`(batch, 3, height, width)` uint8 tensor: uint8 keeps a whole training set in memory cheaply."""
        height, width = self.size
        return stack_uint8([self.level(image).resize((width, height), Image.Resampling.BILINEAR) for image in images])

    def to_tensor(self, images: list[Image.Image]) -> torch.Tensor:
        """`(batch, 3, height, width)` float tensor in [-1, 1]."""
        return to_model_input(self.to_uint8(images))


def stack_uint8(images: list[Image.Image]) -> torch.Tensor:
    """RGB images of one size -> `(batch, 3, height, width)` uint8 tensor."""
    arrays = np.stack([np.asarray(image, dtype=np.uint8) for image in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


def to_model_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [-1, 1]."""
    return pixels.float() / 127.5 - 1.0


__all__ = ["CropPreparation", "stack_uint8", "to_model_input"]
