"""Reading a plate from several views of its crop (beyond the paper): test-time augmentation.

A model trained on crops whose corners were jittered (the embedded default's `augment_quad_jitter`) reads a plate
more reliably from a few such views than from the crop alone: where one view leaves a character ambiguous, the
others often do not. The views are the crop itself plus `num_views - 1` corner jitters that are the same for every
plate (drawn once from a fixed seed), so a reading does not depend on the batch or on any random state.

The views are read together, one plate's views in consecutive rows of the batch; at every generated token
`ViewAveragingLogitsProcessor` replaces each view's next-token scores with the mean log-probability over the plate's
views (renormalised), so greedy decoding takes the same token in all of them and the plate gets one reading. Averaging the
distributions, not voting on finished strings, lets views that agree on most characters outvote one view's slip on
one character. Reading costs `num_views` times the compute of one view.

The same averaging reads a track (several frames of one plate, late fusion in `plate_reading.py`): the plate's
`num_views` views are spread over its frames, each frame's crop first, then their jitters in turn, and a track of
more frames than views reads every frame once from its crop; all its rows are averaged together. Tracks of
different lengths share a batch (`group_sizes`, one row count per plate).
"""

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import LogitsProcessor


# The embedded default's training jitter: corners moved by up to 5% of the width and 20% of the height.
DEFAULT_VIEW_SHIFT = (0.05, 0.2)
# The views' corner shifts are drawn once from this seed: the same views for every plate and every run.
_VIEW_SEED = 0


def check_num_views(num_views) -> int:
    """`num_views` as a positive int (1: the crop alone); ValueError naming the field otherwise."""
    if isinstance(num_views, bool) or not isinstance(num_views, (int, np.integer)) or num_views < 1:
        raise ValueError(f"`num_views` must be a whole number >= 1 (1: read the crop alone); got {num_views!r}.")
    return int(num_views)


def check_group_size(size, index: int) -> int:
    """`size`, the rows of plate `index` read together, as a positive int; ValueError naming the plate otherwise."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"`group_sizes[{index}]` must be a whole number >= 1 (rows of plate {index}); got {size!r}.")
    return int(size)


def check_corner_shift(shift, name: str) -> tuple[float, float]:
    """`shift` as `(horizontal, vertical)` floats, each a fraction in [0, 0.5) of the crop's width and height (a
    corner moved further would cross the crop's middle); ValueError naming `name` otherwise."""
    try:
        horizontal, vertical = (float(value) for value in shift)
    except (TypeError, ValueError):
        horizontal = vertical = float("nan")
    if not (0 <= horizontal < 0.5 and 0 <= vertical < 0.5):
        raise ValueError(
            f"{name} must be two fractions in [0, 0.5) of the crop's width and height; got {shift!r}."
        )
    return horizontal, vertical


def check_view_shift(view_shift) -> tuple[float, float]:
    """`view_shift`, the largest corner shift of a view, as `(horizontal, vertical)` fractions in [0, 0.5)."""
    return check_corner_shift(view_shift, "`view_shift` (the largest corner shift of a view)")


def view_corner_shifts(num_views: int, view_shift=DEFAULT_VIEW_SHIFT) -> np.ndarray:
    """`(num_views, 4, 2)` corner shifts as fractions of the crop's width and height, in PIL's QUAD corner order
    (NW, SW, SE, NE); view 0 is the crop itself (no shift). Each view's shifts are the same whatever `num_views`."""
    num_views = check_num_views(num_views)
    horizontal, vertical = check_view_shift(view_shift)
    draws = np.random.default_rng(_VIEW_SEED).uniform(-1.0, 1.0, size=(num_views - 1, 4, 2)) if num_views > 1 else []
    shifts = np.zeros((num_views, 4, 2))
    shifts[1:] = np.asarray(draws).reshape(num_views - 1, 4, 2) * (horizontal, vertical)
    return shifts


def plate_views(
    image: Image.Image,
    num_views: int,
    size: tuple[int, int] | None = None,
    view_shift=DEFAULT_VIEW_SHIFT,
    resample=Image.Resampling.BICUBIC,
) -> list[Image.Image]:
    """`num_views` views of an RGB or gray crop at `size = (height, width)` (default: the crop's own): the crop
    resized with `resample`, then its corner jitters (`view_corner_shifts`), each resampled bilinearly from the crop
    as the training jitter is. Points beyond the crop take its corner colour, as in training."""
    width, height = image.size
    output = (size[1], size[0]) if size is not None else (width, height)
    views = [image if image.size == output else image.resize(output, resample)]
    corners = np.array([(0, 0), (0, height), (width, height), (width, 0)], dtype=np.float64)
    for shifts in view_corner_shifts(num_views, view_shift)[1:]:
        quad = (corners + shifts * (width, height)).reshape(-1).tolist()
        fill = image.getpixel((0, 0))
        views.append(image.transform(output, Image.Transform.QUAD, quad, Image.Resampling.BILINEAR, fillcolor=fill))
    return views


class ViewAveragingLogitsProcessor(LogitsProcessor):
    """For `generate` on a batch holding each plate's rows in consecutive places (its views, or the views and
    frames of a track): every row's scores become its plate's rows' mean next-token log-probability, renormalised (a
    product of the rows' distributions), so greedy decoding (or any decoding that takes the same token for equal
    scores) gives every row of a plate the same text, and the scores are a distribution a plate's reading can be
    scored with.

    With beam search each input row holds `num_beams` consecutive rows; row `r`'s beam `b` is averaged with the
    plate's other rows' beam `b`. The rows' beams stay in step because every row of a plate sees the same scores.

    Args:
        group_sizes: rows per plate: an int for every plate alike (its `num_views`; the batch size must be a multiple
            of `group_sizes * num_beams`), or one count per plate in batch order (plates of different sizes, such as
            tracks of different lengths; the batch must hold `sum(group_sizes) * num_beams` rows).
        num_beams: beams per input row (1 for greedy decoding).
    """

    def __init__(self, group_sizes: int | Sequence[int], num_beams: int = 1):
        if isinstance(group_sizes, (int, np.integer)):
            self.group_sizes = check_num_views(group_sizes)
        else:
            self.group_sizes = [check_group_size(size, index) for index, size in enumerate(group_sizes)]
            if not self.group_sizes:
                raise ValueError("`group_sizes` is empty: give one row count per plate of the batch.")
        self.num_beams = check_num_views(num_beams)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        log_probs = torch.log_softmax(scores.float(), dim=-1)
        sizes = self.group_sizes
        if isinstance(sizes, int):
            if scores.shape[0] % (sizes * self.num_beams):
                raise ValueError(
                    f"The batch holds {scores.shape[0]} rows, not a multiple of num_views={sizes} x "
                    f"num_beams={self.num_beams}: each plate needs all its views (and their beams) in consecutive "
                    "rows."
                )
        elif sum(sizes) * self.num_beams != scores.shape[0]:
            raise ValueError(
                f"The batch holds {scores.shape[0]} rows, not sum(group_sizes)={sum(sizes)} x "
                f"num_beams={self.num_beams}: each plate needs all its rows (and their beams) in consecutive rows."
            )
        rows = log_probs.view(-1, self.num_beams, log_probs.shape[-1])  # (input rows, beams, vocab)
        if isinstance(sizes, int) or len(set(sizes)) == 1:
            grouped = rows.view(-1, sizes if isinstance(sizes, int) else sizes[0], *rows.shape[1:])
            averaged = torch.log_softmax(grouped.mean(dim=1, keepdim=True), dim=-1).expand_as(grouped)
        else:
            # Plates of different sizes: one mean per plate (a batch holds a few dozen plates).
            averaged = torch.cat([
                torch.log_softmax(group.mean(dim=0, keepdim=True), dim=-1).expand_as(group)
                for group in rows.split(sizes)
            ])  # fmt: skip
        return averaged.reshape(log_probs.shape)


__all__ = [
    "DEFAULT_VIEW_SHIFT",
    "ViewAveragingLogitsProcessor",
    "check_corner_shift",
    "check_group_size",
    "check_num_views",
    "check_view_shift",
    "plate_views",
    "view_corner_shifts",
]
