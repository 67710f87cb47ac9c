"""Random geometric jitter of plate crops, for training from scratch on a few thousand plates.

A small vision transformer trained from scratch on 18k synthetic plates overfits within minutes (training loss half
the validation loss after ~8 epochs) and reads perspective-warped plates worst. Re-drawing each crop through a
randomly moved quadrilateral every time it is seen gives it shifted, scaled, sheared and slightly rotated plates for
free, in one resampling straight to the model's input size. An optional cast shadow (`RandomShadow`) darkens a
random polygon of the crop: a shadow edge across a character is the one kind of uneven light a model trained on a
few severe examples kept misreading (D read as U, Y as X).
"""

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from modeling_lpllm.plate_views import check_corner_shift


def check_max_shift(max_shift) -> tuple[float, float]:
    """`max_shift` as `(horizontal, vertical)` floats, each a fraction in [0, 0.5); ValueError otherwise."""
    return check_corner_shift(max_shift, "the corner jitter")


def check_shadow(probability, max_darkening) -> tuple[float, float]:
    """`(probability, max_darkening)` as floats, a probability in [0, 1] and a darkening in (0, 1); ValueError
    otherwise."""
    try:
        probability, max_darkening = float(probability), float(max_darkening)
    except (TypeError, ValueError):
        probability = max_darkening = float("nan")
    if not (0 <= probability <= 1 and 0 < max_darkening < 1):
        raise ValueError(
            f"the shadow must be a probability in [0, 1] and a largest darkening in (0, 1); got {probability!r}, "
            f"{max_darkening!r}."
        )
    return probability, max_darkening


class RandomShadow:
    """With probability `probability`, darkens the pixels inside a random polygon of `num_vertices` points spread over
    the whole crop (a cast shadow, as albumentations' `RandomShadow` draws it) by a fraction uniform in
    `[0, max_darkening]`: the shadow keeps `1 - darkening` of the light, in every channel.

    Every call makes the same number of draws from torch's global generator, whether or not a shadow falls, so a
    resumed run draws the same shadows as an uninterrupted one and `strength` (which scales the darkening, 1.0 unless
    changed) never shifts the random stream.
    """

    def __init__(self, probability: float, max_darkening: float, num_vertices: int = 5):
        self.probability, self.max_darkening = check_shadow(probability, max_darkening)
        if num_vertices < 3:
            raise ValueError(f"a shadow polygon needs at least 3 vertices, got {num_vertices}.")
        self.num_vertices = num_vertices
        self.strength = 1.0

    def __call__(self, image: Image.Image) -> Image.Image:
        happens, fraction, *coordinates = torch.rand(2 + 2 * self.num_vertices).tolist()
        darkening = fraction * self.max_darkening * self.strength
        if happens >= self.probability or darkening == 0:
            return image
        width, height = image.size
        polygon = [(x * width, y * height) for x, y in zip(coordinates[0::2], coordinates[1::2])]
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).polygon(polygon, fill=255)
        inside = np.asarray(mask) > 0
        pixels = np.array(image)
        pixels[inside] = (pixels[inside] * (1.0 - darkening)).round().astype(np.uint8)
        return Image.fromarray(pixels)


class AugmentationChain:
    """Applies `transforms` in order; setting `strength` sets it on each (`AugmentationWarmupCallback` ramps it)."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        self._strength = 1.0

    @property
    def strength(self) -> float:
        return self._strength

    @strength.setter
    def strength(self, value: float):
        self._strength = value
        for transform in self.transforms:
            transform.strength = value

    def __call__(self, image: Image.Image) -> Image.Image:
        for transform in self.transforms:
            image = transform(image)
        return image


class RandomQuadJitter:
    """Moves each corner of the crop independently, uniformly within `±max_shift` of the crop's width and height,
    and resamples that quadrilateral onto `output_size`.

    Randomness comes from torch's global generator, which the Trainer seeds and restores on resume, so a resumed run
    draws the same jitter as an uninterrupted one.

    Args:
        max_shift: `(horizontal, vertical)` largest corner shift as a fraction of the width and height; None: none.
        output_size: `(height, width)` of the result, or None for the input's size.

    `strength` (1.0 unless changed) scales the shifts; the random draws stay the same whatever it is.
    """

    def __init__(self, max_shift: tuple[float, float] | None, output_size: tuple[int, int] | None = None):
        self.max_shift = check_max_shift(max_shift) if max_shift is not None else (0.0, 0.0)
        self.output_size = tuple(output_size) if output_size is not None else None
        # The fraction of the shifts applied: `AugmentationWarmupCallback` ramps it up over the first epochs.
        self.strength = 1.0

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        horizontal, vertical = self.max_shift
        shifts = (torch.rand(4, 2) * 2 - 1) * torch.tensor([horizontal * width, vertical * height]) * self.strength
        corners = [(0, 0), (0, height), (width, height), (width, 0)]  # PIL's QUAD order: NW, SW, SE, NE
        quad = [coordinate for (x, y), (dx, dy) in zip(corners, shifts.tolist()) for coordinate in (x + dx, y + dy)]
        size = (self.output_size[1], self.output_size[0]) if self.output_size else (width, height)
        if image.mode not in ("RGB", "L"):
            edge = image.getpixel((0, 0))  # outside the crop: its corner colour, not black
            return image.transform(size, Image.Transform.QUAD, quad, resample=Image.Resampling.BILINEAR, fillcolor=edge)
        return Image.fromarray(quad_warp(np.asarray(image), quad, size))


def quad_warp(pixels: np.ndarray, quad: list[float], size: tuple[int, int]) -> np.ndarray:
    """PIL's `Image.transform(size, QUAD, quad, BILINEAR, fillcolor=<the corner pixel>)` of an 8-bit RGB or gray
    array, within one level of it, ~2x as fast: the source points are PIL's (the quadrilateral's corners
    interpolated bilinearly at each output pixel's centre) and OpenCV samples them. PIL computes the mapping pixel by
    pixel; it was ~0.6 ms a plate crop, 8% of a training step of the embedded model."""
    width, height = size
    # As Python floats, whatever they came as, so the maps stay float32 (what OpenCV takes).
    (x0, y0), (sw_x, sw_y), (se_x, se_y), (ne_x, ne_y) = zip(*[iter(map(float, quad))] * 2)
    x = (np.arange(width, dtype=np.float32) + 0.5) / width
    y = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]
    source_x = x0 + (ne_x - x0) * x + ((sw_x - x0) + (se_x - sw_x - ne_x + x0) * x) * y
    source_y = y0 + (ne_y - y0) * x + ((sw_y - y0) + (se_y - sw_y - ne_y + y0) * x) * y
    # OpenCV puts pixel centres at whole coordinates, PIL at halves; past the crop's edge pixels OpenCV repeats them,
    # as PIL does for points inside the crop. Points outside it take the corner colour, as PIL fills them.
    warped = cv2.remap(pixels, source_x - 0.5, source_y - 0.5, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    crop_height, crop_width = pixels.shape[:2]
    outside = (source_x < 0) | (source_x >= crop_width) | (source_y < 0) | (source_y >= crop_height)
    warped[outside] = pixels[0, 0]
    return warped


def plate_augmentation(quad_jitter, shadow, output_size) -> AugmentationChain:
    """The training crops' augmentation, as LP-LLM's recipe and the baselines apply it: the shadow (`(probability,
    max_darkening)`, or None) falls on the crop as it was captured, then the corner jitter (`(horizontal, vertical)`,
    or None) resamples it to `output_size`."""
    shade = [RandomShadow(*shadow)] if shadow else []
    return AugmentationChain([*shade, RandomQuadJitter(quad_jitter, output_size=output_size)])


def warmup_strength(epoch: int, warmup_epochs: int) -> float:
    """Augmentation strength at the start of `epoch` (from 0): 0 in the first epoch, full at `warmup_epochs`
    (0: full from the start)."""
    return min(1.0, epoch / warmup_epochs) if warmup_epochs else 1.0
