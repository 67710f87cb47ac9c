"""Random geometric jitter of plate crops, for training from scratch on a few thousand plates.

A small vision transformer trained from scratch on 18k synthetic plates overfits within minutes (training loss half
the validation loss after ~8 epochs) and reads perspective-warped plates worst. Re-drawing each crop through a
randomly moved quadrilateral every time it is seen gives it shifted, scaled, sheared and slightly rotated plates for
free, in one resampling straight to the model's input size.
"""

import torch
from PIL import Image


def check_max_shift(max_shift) -> tuple[float, float]:
    """`max_shift` as `(horizontal, vertical)` floats, each a fraction in [0, 0.5); ValueError otherwise."""
    try:
        horizontal, vertical = (float(shift) for shift in max_shift)
    except (TypeError, ValueError):
        horizontal = vertical = float("nan")
    if not (0 <= horizontal < 0.5 and 0 <= vertical < 0.5):
        raise ValueError(
            f"the corner jitter must be two fractions in [0, 0.5) of the crop's width and height; got {max_shift!r}."
        )
    return horizontal, vertical


class RandomQuadJitter:
    """Moves each corner of the crop independently, uniformly within `±max_shift` of the crop's width and height,
    and resamples that quadrilateral onto `output_size`.

    Randomness comes from torch's global generator, which the Trainer seeds and restores on resume, so a resumed run
    draws the same jitter as an uninterrupted one.

    Args:
        max_shift: `(horizontal, vertical)` largest corner shift as a fraction of the width and height.
        output_size: `(height, width)` of the result, or None for the input's size.
    """

    def __init__(self, max_shift: tuple[float, float], output_size: tuple[int, int] | None = None):
        self.max_shift = check_max_shift(max_shift)
        self.output_size = tuple(output_size) if output_size is not None else None

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        horizontal, vertical = self.max_shift
        shifts = (torch.rand(4, 2) * 2 - 1) * torch.tensor([horizontal * width, vertical * height])
        corners = [(0, 0), (0, height), (width, height), (width, 0)]  # PIL's QUAD order: NW, SW, SE, NE
        quad = [coordinate for (x, y), (dx, dy) in zip(corners, shifts.tolist()) for coordinate in (x + dx, y + dy)]
        size = (self.output_size[1], self.output_size[0]) if self.output_size else (width, height)
        edge = image.getpixel((0, 0))  # outside the crop: its corner colour, not black
        return image.transform(size, Image.Transform.QUAD, quad, resample=Image.Resampling.BILINEAR, fillcolor=edge)
