"""The LP-LLM processor: Qwen3-VL's prompt format for still images, with no video processor (so no torchvision),
left padding (batched generation equals one-by-one generation) and a pixel budget sized for plate crops."""

import os

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, Qwen2VLImageProcessorPil
from transformers.image_transforms import normalize, rescale
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.processing_utils import ProcessorMixin

from .deskew import check_max_degrees, check_rectify, deskew
from .image_checks import PLATE_IMAGE_LIMITS, check_image_size, load_image_input, pixel_array, to_rgb
from .plate_patterns import all_region_patterns
from .plate_scores import check_min_score, check_score_map, check_score_temperature
from .plate_views import DEFAULT_VIEW_SHIFT, check_num_views, check_view_shift, plate_views
from .tokenization_lpllm import (
    DEFAULT_PLATE_CHARSET,
    IMAGE_TOKEN,
    VIDEO_TOKEN,
    VISION_END_TOKEN,
    VISION_START_TOKEN,
    build_char_tokenizer,
)


DEFAULT_PROMPT = "Read the license plate."
# The roles of the chat template. With the default prompt they are whole tokens of the offline tokenizer: spelled
# character by character they would be 45 of the 74 tokens the language model runs over per plate (as whole tokens,
# steps are 1.29x as fast in benchmarks/bench_training_step.py and 1.11x in training, results/embedded_default.md).
CHAT_ROLES = ("system", "user", "assistant")

# Qwen3-VL's stock budget (65k-16M pixels) would blow a 94x24 crop up to 256x256 and 64 visual tokens of mostly
# interpolation. These bounds keep a plate's aspect ratio and give it ~24-48 visual tokens of 32x32 pixels.
PLATE_MIN_PIXELS = 24 * 32 * 32
PLATE_MAX_PIXELS = 48 * 32 * 32

# The Qwen3-VL conversation format (<|im_start|>role\n...<|im_end|>\n), for images and text only.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] in ('image', 'image_url') -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


class LPLLMProcessor(Qwen3VLProcessor):
    r"""Builds Qwen3-VL inputs (`input_ids`, `attention_mask`, `pixel_values`, `image_grid_thw`,
    `mm_token_type_ids`) from plate images and chat-formatted text. Pads on the left by default.

    Args:
        image_processor ([`Qwen2VLImageProcessorPil`]):
            Resizes within a pixel budget (keeping the aspect ratio) and cuts images into patches.
        tokenizer ([`PreTrainedTokenizerFast`]):
            Any tokenizer with Qwen3-VL's special tokens: a stock Qwen3-VL tokenizer or [`build_char_tokenizer`]'s.
        chat_template (`str`, *optional*):
            A Jinja chat template; Qwen3-VL's own or [`CHAT_TEMPLATE`].
        image_size (`list[int]`, *optional*):
            `[height, width]`: every image is resized to exactly this size (aspect ratio not kept) before the image
            processor cuts it into patches, in training and at inference alike, since it is saved with the
            processor. Both sides must be multiples of `patch_size * merge_size` and `height * width` must lie in
            the image processor's pixel budget. Default: keep each image's aspect ratio within the budget.
        deskew_max_degrees (`float`, *optional*, defaults to 0.0):
            Beyond the paper: level crops tilted by up to this many degrees before resizing (`deskew.deskew`), in
            training and at inference alike, since it is saved with the processor. 0: off.
        rectify_plate (`bool`, *optional*, defaults to `False`):
            Beyond the paper: trim every crop to the plate and undo its keystone (the plate's fitted top and bottom
            edges stretched onto the crop's; `deskew.deskew(rectify=True)`) before resizing, after levelling when
            `deskew_max_degrees` is set. Saved with the processor.
        num_views (`int`, *optional*, defaults to 1):
            Beyond the paper: how many views of each crop the pipeline and `eval.py` read a plate from (the crop and
            `num_views - 1` fixed corner jitters, their next-token log-probabilities averaged; `plate_views.py`).
            1: the crop alone. A track of frames read by late fusion spreads these views over its frames
            (`plate_reading.late_fusion_rows`). Saved with the processor; the pipeline's `num_views` argument
            overrides it.
        view_shift (`tuple[float, float]`, *optional*, defaults to `(0.05, 0.2)`):
            The views' largest corner shift as a share of the crop's width and height.
        score_temperature (`float`, *optional*, defaults to 1.0):
            Beyond the paper: the temperature a reading's log-probabilities are divided by before it is scored
            (`plate_scores.py`), fitted on a validation split after training so that scores are calibrated
            probabilities of a right plate. It changes no reading. 1.0: the model's own probabilities.
        score_map (`list[float]`, *optional*):
            Beyond the paper: `(a, b, c)`, mapping every plate score `s` to `sigmoid(a * log(s) - b * log(1 - s) +
            c)` after the temperature (`plate_scores.py`), fitted on the validation split's readings as the model
            reads them. It changes no reading or ranking. None: scores are the tempered probabilities.
        abstain_threshold (`float`, *optional*):
            Beyond the paper: the lowest score at which the validation split's accepted plates were read right
            99.5% of the time, saved with the calibration; `pipeline(..., min_score="saved")` abstains below it.
            None: not calibrated.
        plate_patterns (`dict[str, list[str]]`, *optional*):
            Beyond the paper: plate patterns of regions the built-in table (`plate_patterns.REGION_PATTERNS`) lacks
            or that replace its own, region code -> patterns such as `{"UZ": ["##@###@@"]}` (`@` a letter, `#` a
            digit, `*` either, `[...]` a class). Readings are matched against them and `region=` may name them.
    """

    _auto_class = "AutoProcessor"
    text_kwargs = {"return_token_type_ids": False, "padding_side": "left"}

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        image_size=None,
        deskew_max_degrees=0.0,
        rectify_plate=False,
        num_views=1,
        view_shift=DEFAULT_VIEW_SHIFT,
        score_temperature=1.0,
        score_map=None,
        abstain_threshold=None,
        plate_patterns=None,
        **kwargs,
    ):
        def token_and_id(name, default):
            token = getattr(tokenizer, name, None) or default
            token_id = getattr(tokenizer, f"{name}_id", None) or tokenizer.convert_tokens_to_ids(token)
            return token, token_id

        self.image_token, self.image_token_id = token_and_id("image_token", IMAGE_TOKEN)
        self.video_token, self.video_token_id = token_and_id("video_token", VIDEO_TOKEN)
        self.vision_start_token, self.vision_start_token_id = token_and_id("vision_start_token", VISION_START_TOKEN)
        self.vision_end_token, self.vision_end_token_id = token_and_id("vision_end_token", VISION_END_TOKEN)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
        self.image_size = None
        if image_size is not None:
            self.set_image_size(image_size)
        self.deskew_max_degrees = check_max_degrees(deskew_max_degrees)
        self.rectify_plate = check_rectify(rectify_plate)
        self.num_views = check_num_views(num_views)
        self.view_shift = list(check_view_shift(view_shift))
        self.set_score_calibration(score_temperature, abstain_threshold, score_map)
        all_region_patterns(plate_patterns)  # checked now, not at the first reading
        self.plate_patterns = {code: list(patterns) for code, patterns in (plate_patterns or {}).items()} or None

    def set_plate_options(self, image_size=None, deskew_max_degrees=None, rectify_plate=None, num_views=None):
        """Sets the plate options that are given (None keeps an option as it is), each checked as in `__init__`;
        they are saved with the processor, so reading prepares crops as training did.

        Raises:
            ValueError: naming the option, for a value `__init__` would refuse.
        """
        if image_size is not None:
            self.set_image_size(image_size)
        if deskew_max_degrees is not None:
            self.deskew_max_degrees = check_max_degrees(deskew_max_degrees)
        if rectify_plate is not None:
            self.rectify_plate = check_rectify(rectify_plate)
        if num_views is not None:
            self.num_views = check_num_views(num_views)

    def set_score_calibration(
        self, score_temperature: float, abstain_threshold: float | None = None, score_map=None
    ):
        """Sets the calibration fitted on a validation split (see the `score_temperature`, `score_map` and
        `abstain_threshold` arguments); saved with the processor.

        Raises:
            ValueError: naming the argument, for a temperature that is not a positive number, a map that is not
                three finite numbers with a, b >= 0, or a threshold outside [0, 1].
        """
        self.score_temperature = check_score_temperature(score_temperature)
        score_map = check_score_map(score_map)
        self.score_map = list(score_map) if score_map is not None else None  # a list, as JSON gives it back
        self.abstain_threshold = check_min_score(abstain_threshold, "abstain_threshold")

    def set_image_size(self, image_size):
        """Resizes every image to `image_size = [height, width]` from now on (None: keep aspect ratios).

        Raises:
            ValueError: when a side is not a positive multiple of `patch_size * merge_size`, or the area falls outside
                the image processor's pixel budget (it would resize the image again).
        """
        if image_size is None:
            self.image_size = None
            return
        processor = self.image_processor
        factor = processor.patch_size * processor.merge_size
        budget = (processor.size["shortest_edge"], processor.size["longest_edge"])
        if (
            not isinstance(image_size, (list, tuple))
            or len(image_size) != 2
            or not all(isinstance(side, int) and side > 0 and side % factor == 0 for side in image_size)
        ):
            raise ValueError(
                f"`image_size` must be [height, width], two positive multiples of patch_size * merge_size = {factor}; "
                f"got {image_size!r}."
            )
        height, width = image_size
        if not budget[0] <= height * width <= budget[1]:
            raise ValueError(
                f"`image_size` {height}x{width} = {height * width} pixels is outside the image processor's pixel "
                f"budget [{budget[0]}, {budget[1]}] (min_pixels, max_pixels): widen the budget or pick another size."
            )
        self.image_size = [height, width]

    def __call__(self, images=None, text=None, **kwargs):
        if images is not None:
            images = self.prepare_images(images)
        return super().__call__(images=images, text=text, **kwargs)

    def prepare_images(self, images, resize: bool = True):
        """What the processor does to images before the image processor, each first checked by the image gate
        (`image_checks.py`: sides within `PLATE_IMAGE_LIMITS`; arrays uint8 pixels or float fractions in [0, 1]).
        PIL images become 8-bit RGB, levelled when `deskew_max_degrees` is set, rectified when `rectify_plate` is,
        then resized to the fixed `image_size` when set (and `resize`). Arrays and tensors are taken as already
        prepared: they come back as uint8 pixels in their own layout.

        Raises:
            ValueError: naming the image ("image #i" in a list) and what was expected.
        """
        if isinstance(images, (list, tuple)):
            if len(images) == 0:
                raise ValueError("`images` is an empty list: give at least one image, or `images=None` for text only.")
            return [self._prepare_image(image, f"image #{index}", resize) for index, image in enumerate(images)]
        return self._prepare_image(images, "image #0", resize)

    def _prepare_image(self, image, name: str, resize: bool):
        if isinstance(image, (list, tuple)):  # one sample's images in a nested batch
            return [self._prepare_image(item, f"{name}.{index}", resize) for index, item in enumerate(image)]
        if isinstance(image, (str, os.PathLike)):
            image = load_image_input(image, limits=PLATE_IMAGE_LIMITS)
        if isinstance(image, Image.Image):
            check_image_size(image.width, image.height, name, PLATE_IMAGE_LIMITS)
            # Unchanged when both are off.
            image = deskew(to_rgb(image), self.deskew_max_degrees, rectify=self.rectify_plate)
            if resize and self.image_size is not None and image.size != (self.image_size[1], self.image_size[0]):
                image = image.resize((self.image_size[1], self.image_size[0]), Image.BICUBIC)
            return image
        if isinstance(image, torch.Tensor):
            # The image processor would divide a float tensor by 255 whatever its range: the gate scales it once.
            return torch.from_numpy(pixel_array(image.detach().cpu().numpy(), name, PLATE_IMAGE_LIMITS, channels_first=True))
        if isinstance(image, np.ndarray):
            return pixel_array(image, name, PLATE_IMAGE_LIMITS, channels_first=True)
        raise ValueError(
            f"{name}: got a {type(image).__name__}; expected a PIL.Image.Image, a file path, a numpy array or a torch "
            "tensor."
        )

    def plate_views(self, images: list[Image.Image], num_views: int | None = None) -> list[np.ndarray]:
        """`num_views` (default: the processor's) views of each PIL image as prepared 8-bit RGB arrays, each image's
        views in consecutive places: the image as `prepare_images` makes it, then its corner jitters
        (`plate_views.plate_views`) taken from the levelled crop, as the training jitter is. The processor takes
        the arrays as prepared."""
        num_views = check_num_views(self.num_views if num_views is None else num_views)
        size = tuple(self.image_size) if self.image_size is not None else None
        views = []
        for position, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise ValueError(f"plate_views takes PIL images; image {position} is a {type(image).__name__}.")
            levelled = self.prepare_images(image, resize=False)
            views.extend(np.asarray(view) for view in plate_views(levelled, num_views, size, self.view_shift))
        return views

    def fixed_size_image_inputs(self, images) -> BatchFeature | None:
        """`pixel_values` and `image_grid_thw` of prepared images (8-bit RGB arrays of shape `image_size + [3]`),
        equal to the image processor's, in one batched pass; None when that does not apply (no fixed `image_size`,
        an image of another size or kind, or the image processor does not rescale and normalise), so the caller
        runs the image processor.

        The image processor rescales, normalises and cuts each image into patches one at a time, in float64 and then
        float32 numpy: ~0.9 ms a plate strip on a 2-core CPU, ~12% of a training step of the embedded model. Here
        each 8-bit value is looked up in a table the image processor's own arithmetic filled, so the result is
        the same float for float (tested), ~2.5x faster (27 against 10-11 ms for 32 strips, measured side by side).
        """
        processor = self.image_processor
        if self.image_size is None or not (processor.do_rescale and processor.do_normalize):
            return None
        height, width = self.image_size
        if not images or not all(_is_rgb_uint8_array(image, height, width) for image in images):
            return None
        patch, merge, temporal = processor.patch_size, processor.merge_size, processor.temporal_patch_size
        channels, grid_height, grid_width = 3, height // patch, width // patch
        batch = torch.stack([torch.as_tensor(image) for image in images])
        # (image, merged row, merged column, row in merge, column in merge, channel, patch row, patch column): the
        # image processor's patch order.
        batch = batch.reshape(len(images), grid_height // merge, merge, patch, grid_width // merge, merge, patch, 3)
        batch = batch.permute(0, 1, 4, 2, 5, 7, 3, 6)
        channel_offsets = (torch.arange(channels) * 256).view(channels, 1, 1)
        values = self._value_table().view(-1)[batch.to(torch.int64) + channel_offsets]
        # Still images repeat along the temporal patch, as the image processor repeats them.
        values = values.unsqueeze(6).expand(*values.shape[:6], temporal, patch, patch)
        pixel_values = values.reshape(len(images) * grid_height * grid_width, channels * temporal * patch * patch)
        image_grid_thw = torch.tensor([[1, grid_height, grid_width]] * len(images), dtype=torch.int64)
        return BatchFeature({"pixel_values": pixel_values, "image_grid_thw": image_grid_thw})

    def _value_table(self) -> torch.Tensor:
        """(3, 256): what the image processor turns each 8-bit value of each channel into, by its own functions."""
        processor = self.image_processor
        levels = torch.arange(256, dtype=torch.uint8).repeat(3, 1, 1).numpy()  # (channel, 1, 256), channels first
        layout = {"data_format": "channels_first", "input_data_format": "channels_first"}
        scaled = rescale(levels, processor.rescale_factor, **layout)
        normalised = normalize(scaled, processor.image_mean, processor.image_std, **layout)
        return torch.from_numpy(normalised.reshape(3, 256).copy())

    def special_token_ids(self) -> dict:
        """The token ids a model config must agree on with this processor (`LPLLMConfig(**processor.special_token_ids())`)."""
        return {
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
        }


def _is_rgb_uint8_array(image, height: int, width: int) -> bool:
    """Whether `image` is an 8-bit numpy array or torch tensor of shape (height, width, 3)."""
    return str(getattr(image, "dtype", "")).removeprefix("torch.") == "uint8" and tuple(
        getattr(image, "shape", ())
    ) == (height, width, 3)


def build_plate_image_processor(
    min_pixels: int = PLATE_MIN_PIXELS, max_pixels: int = PLATE_MAX_PIXELS, patch_size: int = 16, merge_size: int = 2
) -> Qwen2VLImageProcessorPil:
    """A Qwen3-VL image processor (PIL backend, no torchvision) with a plate-sized pixel budget."""
    if not 0 < min_pixels <= max_pixels:
        raise ValueError(f"Need 0 < min_pixels <= max_pixels, got min_pixels={min_pixels}, max_pixels={max_pixels}.")
    return Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=patch_size,
        temporal_patch_size=2,
        merge_size=merge_size,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def build_offline_processor(
    charset: str = DEFAULT_PLATE_CHARSET,
    min_pixels: int = PLATE_MIN_PIXELS,
    max_pixels: int = PLATE_MAX_PIXELS,
    patch_size: int = 16,
    merge_size: int = 2,
    image_size: list[int] | None = None,
    deskew_max_degrees: float = 0.0,
    rectify_plate: bool = False,
    num_views: int = 1,
    whole_tokens: tuple[str, ...] = (*CHAT_ROLES, DEFAULT_PROMPT),
) -> LPLLMProcessor:
    """A processor that needs nothing from the Hub: a character-level tokenizer over `charset` (plus printable
    ASCII for the prompt, and `whole_tokens` as one token each) and a plate-sized image processor. For models
    trained from scratch and for tests.

    With `image_size = [height, width]`, every image is resized to exactly that size and the pixel budget is set to
    its area (`min_pixels` and `max_pixels` are then ignored). `deskew_max_degrees` > 0 levels tilted crops first and
    `rectify_plate` undoes plates' keystone, and plates are read from `num_views` views (see `LPLLMProcessor`)."""
    if image_size is not None and isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        min_pixels = max_pixels = image_size[0] * image_size[1]
    return LPLLMProcessor(
        image_processor=build_plate_image_processor(min_pixels, max_pixels, patch_size, merge_size),
        tokenizer=build_char_tokenizer(charset, whole_tokens),
        chat_template=CHAT_TEMPLATE,
        image_size=image_size,
        deskew_max_degrees=deskew_max_degrees,
        rectify_plate=rectify_plate,
        num_views=num_views,
    )


def plate_messages(prompt: str = DEFAULT_PROMPT, num_images: int = 1, answer: str | None = None) -> list[dict]:
    """The conversation LP-LLM is trained and queried with: image placeholder(s) then the instruction; with
    `answer`, the assistant turn holding the plate text."""
    content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": prompt}]
    messages = [{"role": "user", "content": content}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


__all__ = [
    "LPLLMProcessor",
    "build_offline_processor",
    "build_plate_image_processor",
    "plate_messages",
    "to_rgb",
    "DEFAULT_PROMPT",
    "CHAT_TEMPLATE",
]
