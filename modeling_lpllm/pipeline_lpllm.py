"""`pipeline("image-to-text", model=<LP-LLM checkpoint>, trust_remote_code=True)`: reads plate images.

transformers 5 removed the "image-to-text" task; LP-LLM checkpoints register this implementation for it in their
config (`custom_pipelines`), so the task name users know keeps working.
"""

import os

import numpy as np
from PIL import Image
from transformers import Pipeline

from .plate_reading import decode_plate_readings, generate_plate_ids, plate_reading_inputs, resolve_num_views
from .plate_views import check_num_views
from .processing_lpllm import DEFAULT_PROMPT, to_rgb


DEFAULT_BATCH_SIZE = 8


def load_plate_image(image) -> Image.Image:
    """A path, a PIL image or an `(H, W)` / `(H, W, C)` uint8 array, as an RGB PIL image.

    Raises:
        ValueError: naming the input and what was expected, for anything else or an unreadable file.
    """
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                opened.load()
                return to_rgb(opened)
        except (OSError, ValueError) as error:
            raise ValueError(f"Cannot read the image file {os.fspath(image)!r}: {error}") from error
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
            raise ValueError(
                f"An image array must be (height, width) or (height, width, 3 or 4 channels); got shape {image.shape}."
            )
        if image.dtype != np.uint8:
            raise ValueError(f"An image array must be uint8 (0-255); got dtype {image.dtype}.")
        return to_rgb(Image.fromarray(image))
    raise ValueError(
        f"An image must be a file path, a PIL.Image.Image or a numpy array; got {type(image).__name__}."
    )


class PlateRecognitionPipeline(Pipeline):
    """Reads license plates: `reader(image)` -> `[{"generated_text": "皖A12345"}]`; `reader([image, ...])` -> one
    such list per image. Images may be paths, PIL images or numpy arrays. Decoding is greedy with the checkpoint's
    `max_new_tokens` (`DEFAULT_MAX_NEW_TOKENS` when it has none); reading is `plate_reading.py`'s, the evaluation's.

    Call arguments: `prompt` (the instruction, default `DEFAULT_PROMPT`), `max_new_tokens`, `batch_size`
    (images generated together, left-padded; default 8), `num_views` (views of each crop a plate is read from,
    default: the processor's `num_views`; see `plate_views.py`), `generate_kwargs` (passed to `model.generate`).
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, prompt=None, max_new_tokens=None, num_views=None, generate_kwargs=None, **kwargs):
        preprocess_params = {} if prompt is None else {"prompt": prompt}
        forward_params = dict(generate_kwargs or {})
        postprocess_params = {}
        if max_new_tokens is not None:
            forward_params["max_new_tokens"] = max_new_tokens
        if num_views is not None:
            num_views = check_num_views(num_views)
            preprocess_params["num_views"] = forward_params["num_views"] = postprocess_params["num_views"] = num_views
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, images, batch_size=None, **kwargs):
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if not items:
            raise ValueError("Got an empty list of images: give at least one image.")
        batch_size = batch_size or self._batch_size or DEFAULT_BATCH_SIZE
        preprocess_params, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
        preprocess_params = {**self._preprocess_params, **preprocess_params}
        forward_params = {**self._forward_params, **forward_params}
        postprocess_params = {**self._postprocess_params, **postprocess_params}
        results = []
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            results.extend(self.run_single(batch, preprocess_params, forward_params, postprocess_params))
        return results[0] if single else results

    def preprocess(self, images, prompt=DEFAULT_PROMPT, num_views=None):
        batch = [[load_plate_image(image)] for image in images]
        num_views = resolve_num_views(self.processor, num_views)
        return plate_reading_inputs(self.processor, batch, [prompt] * len(batch), num_views)

    def _forward(self, model_inputs, num_views=None, **generate_kwargs):
        num_views = resolve_num_views(self.processor, num_views)
        generated_ids = generate_plate_ids(self.model, self.processor, model_inputs, num_views, **generate_kwargs)
        return {"generated_ids": generated_ids}

    def postprocess(self, model_outputs, num_views=None):
        num_views = resolve_num_views(self.processor, num_views)
        texts = decode_plate_readings(self.processor, model_outputs["generated_ids"], num_views)
        return [[{"generated_text": text}] for text in texts]


__all__ = ["PlateRecognitionPipeline", "load_plate_image"]
