"""Where CMRM's character slots look: the last CMRM layer's attention weights of each slot (averaged over its heads,
`Qwen3VLForPlateRecognition.get_slot_attention`) laid back onto the image and drawn over the crop, one heat map per
slot and their mean.

The `N` visual tokens of an image map onto it as a grid (`visual_token_grid`): Qwen3-VL's tower merges
`merge x merge` patches into one token, row by row, so an image of `h x w` patches has `h/merge` rows of `w/merge`
tokens; PP-OCR's tower (`vision_encoder="ppocr"`) pools its reading positions into one row of tokens, left to right.
The maps are those of the crop as the processor prepares it for reading (levelled and rectified when the processor
does so), drawn over that crop before its resize to `image_size`, which stretches it evenly. With `num_views` > 1 a
plate is read from several views; the maps are the crop's own (the first view).
"""

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from modeling_lpllm import to_rgb


if TYPE_CHECKING:  # matplotlib is imported where a sheet is drawn: reading plates does not need it
    from matplotlib.figure import Figure


ATTENTION_MAPS_FILE = "attention_maps.png"
# Panel width in inches; a panel's height follows its crop's aspect ratio within these bounds.
PANEL_WIDTH = 2.4
PANEL_HEIGHT_RANGE = (0.35, 2.4)
TITLE_HEIGHT = 0.32


@dataclass
class SlotAttention:
    """One image's slot attention.

    Args:
        image: the crop as the model saw it before its resize to the processor's `image_size` (RGB).
        maps: `(K, rows, columns)`: slot k's attention over the visual token grid; each map sums to one.
    """

    image: Image.Image
    maps: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """The mean of the K maps, `(rows, columns)`."""
        return self.maps.mean(axis=0)


def check_slot_attention(model) -> None:
    """Whether `model` can show its slot attention: an LP-LLM model with CMRM, whose code has `get_slot_attention`.

    Raises:
        ValueError: saying what the model is and what is needed.
    """
    config = model.config
    model_type = getattr(config, "model_type", None)
    if model_type != "lpllm":
        raise ValueError(
            f"Slot attention maps need an LP-LLM model with CMRM; this is a {model_type or type(model).__name__} "
            "model, which has no character slots."
        )
    if not getattr(config, "cmrm_enabled", False):
        raise ValueError(
            "Slot attention maps need an LP-LLM model with CMRM; this one has CMRM off (`cmrm_enabled=False`)."
        )
    if not hasattr(model, "get_slot_attention"):
        raise ValueError(
            "This checkpoint's saved code predates slot attention maps (its model has no `get_slot_attention`). Load "
            "it with this package (`modeling_lpllm.Qwen3VLForPlateRecognition.from_pretrained`) and save it again "
            "(`save_pretrained`), which saves the current code beside the weights."
        )


def visual_token_grid(config, grid_thw) -> tuple[int, int]:
    """`(rows, columns)` of one image's visual tokens for its `image_grid_thw` row `(t, h, w)` (in patches), in the
    order the model reads them (see the module docstring); `t` frames of one image stack their rows."""
    frames, height, width = (int(value) for value in grid_thw)
    merge = config.vision_config.spatial_merge_size
    if getattr(config, "vision_encoder", "qwen3_vl") == "ppocr":
        return frames, height * width // merge**2
    return frames * height // merge, width // merge


@torch.inference_mode()
def slot_attention(model, processor, images: list) -> list[SlotAttention]:
    """The slot attention of each image in `images` (PIL images, one crop each), prepared as the processor prepares
    them for reading; on the model's device, one vision pass and CMRM's slot refinement.

    Raises:
        ValueError: from `check_slot_attention`, or naming an image the processor refuses.
    """
    check_slot_attention(model)
    prepare = getattr(processor, "prepare_images", None)
    if prepare is None:  # a stock Qwen3-VL processor prepares nothing
        shown = prepared = [to_rgb(image) for image in images]
    else:
        shown, prepared = prepare(list(images), resize=False), prepare(list(images))
    inputs = processor.image_processor(images=prepared, return_tensors="pt")
    grid_thw = inputs["image_grid_thw"]
    weights = model.get_slot_attention(inputs["pixel_values"].to(model.device), grid_thw.to(model.device))
    return [
        SlotAttention(image, maps.float().cpu().numpy().reshape(maps.shape[0], *visual_token_grid(model.config, thw)))
        for image, maps, thw in zip(shown, weights, grid_thw.tolist())
    ]


def _panel_height(image: Image.Image) -> float:
    low, high = PANEL_HEIGHT_RANGE
    return float(np.clip(PANEL_WIDTH * image.height / image.width, low, high))


def _draw(axes, image: Image.Image, heat: np.ndarray | None, title: str) -> None:
    axes.imshow(image, aspect="auto")
    if heat is not None:
        # Each map scaled to its own maximum: where a slot looks, not how peaked it is; one cell per visual token.
        axes.imshow(
            heat, cmap="inferno", alpha=0.6, interpolation="nearest", aspect="auto", vmin=0.0,
            vmax=float(heat.max()) or 1.0, extent=(0, image.width, image.height, 0),
        )  # fmt: skip
    axes.set_title(title, fontsize=8)
    axes.set_xticks([])
    axes.set_yticks([])


def attention_figure(
    items: list[SlotAttention], titles: list[str] | None = None, columns: int | None = None
) -> "Figure":
    """One block of panels per image, in order: the crop (titled with `titles`), the mean of its slots' maps, then
    slot 1 to K's, each drawn over the crop; `columns` panels a row (None: a block's panels on one row)."""
    if not items:
        raise ValueError("No slot attention to draw: give at least one image's.")
    titles = titles or [""] * len(items)
    panels_per_item = 2 + max(item.maps.shape[0] for item in items)
    columns = columns or panels_per_item
    rows_per_item = -(-panels_per_item // columns)
    heights = [_panel_height(item.image) + TITLE_HEIGHT for item in items for _ in range(rows_per_item)]
    # Imported when a figure is drawn: matplotlib takes ~0.5 s to import, and the commands that import this module
    # mostly draw nothing.
    from matplotlib.figure import Figure

    from .plots import _font_context

    with _font_context():
        figure = Figure(figsize=(columns * PANEL_WIDTH, sum(heights)), layout="constrained")
        grid = figure.subplots(len(heights), columns, squeeze=False, gridspec_kw={"height_ratios": heights})
        for index, (item, title) in enumerate(zip(items, titles)):
            panels = [(None, title), (item.mean, f"mean of {item.maps.shape[0]} slots")]
            panels += [(heat, f"slot {slot + 1}") for slot, heat in enumerate(item.maps)]
            cells = grid[index * rows_per_item : (index + 1) * rows_per_item].reshape(-1)
            for axes, (heat, panel_title) in zip(cells, panels):
                _draw(axes, item.image, heat, panel_title)
            for axes in cells[len(panels) :]:
                axes.axis("off")
    return figure


def figure_png(figure: "Figure", dpi: int = 110) -> bytes:
    """`figure` as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def attention_sheet(recognizer, samples, batch_size: int = 8) -> "Figure":
    """The slot attention sheet of `samples` (`data.EvalSample`; a multi-frame sample shows its first frame), each
    titled with its id, what `recognizer` (a `VisionLanguageRecognizer` of an LP-LLM model with CMRM) reads and its
    label.

    Raises:
        ValueError: from `check_slot_attention`.
    """
    check_slot_attention(recognizer.model)
    items, titles = [], []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        texts = recognizer.read([sample.images for sample in batch], [sample.prompt for sample in batch])
        items += slot_attention(recognizer.model, recognizer.processor, [sample.images[0] for sample in batch])
        titles += [
            f"{sample.id}\nread {text or '(nothing)'} | label {sample.raw_label}" for sample, text in zip(batch, texts)
        ]
    return attention_figure(items, titles)


__all__ = [
    "ATTENTION_MAPS_FILE",
    "SlotAttention",
    "attention_figure",
    "attention_sheet",
    "check_slot_attention",
    "figure_png",
    "slot_attention",
    "visual_token_grid",
]
