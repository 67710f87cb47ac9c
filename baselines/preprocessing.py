"""Turns plate images into the fixed-size tensors the CTC baselines read."""

import numpy as np
import torch
from PIL import Image

from modeling_lpllm import to_rgb
from modeling_lpllm.deskew import deskew


def images_to_uint8(
    images: list[Image.Image], size: tuple[int, int], deskew_max_degrees: float = 0.0, rectify_plate: bool = False
) -> torch.Tensor:
    """`(batch, 3, height, width)` uint8 tensor; each image resized to `size = (height, width)` without keeping the
    aspect ratio (plate crops are already close to it), after levelling tilts up to `deskew_max_degrees` (0: off)
    and, with `rectify_plate`, undoing the plate's keystone: the same preparation as `LPLLMProcessor`'s. uint8
    keeps a whole training set in memory cheaply."""
    height, width = size
    arrays = [
        np.asarray(
            deskew(to_rgb(image), deskew_max_degrees, rectify=rectify_plate).resize(
                (width, height), Image.Resampling.BILINEAR
            ),
            dtype=np.uint8,
        )
        for image in images
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_model_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [-1, 1]."""
    return pixels.float() / 127.5 - 1.0


def images_to_tensor(
    images: list[Image.Image], size: tuple[int, int], deskew_max_degrees: float = 0.0, rectify_plate: bool = False
) -> torch.Tensor:
    """`(batch, 3, height, width)` float tensor in [-1, 1]."""
    return to_model_input(images_to_uint8(images, size, deskew_max_degrees, rectify_plate))


__all__ = ["images_to_tensor", "images_to_uint8", "to_model_input"]
