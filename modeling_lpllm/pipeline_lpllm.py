"""`pipeline("image-to-text", model=<LP-LLM checkpoint>, trust_remote_code=True)`: reads plate images.

transformers 5 removed the "image-to-text" task; LP-LLM checkpoints register this implementation for it in their
config (`custom_pipelines`), so the task name users know keeps working.
"""

from PIL import Image
from transformers import Pipeline

from .image_checks import PLATE_IMAGE_LIMITS, load_image_input
from .plate_reading import (
    check_batch_size,
    check_fusion,
    check_generate_kwargs,
    check_max_new_tokens,
    check_prompt,
    check_region,
    decode_plate_outputs,
    end_token_ids,
    finish_readings,
    generate_plate_outputs,
    plate_reading_inputs,
    reading_group_sizes,
    resolve_fusion,
    resolve_num_beams,
    resolve_num_views,
    with_pattern_constraint,
)
from .plate_scores import check_min_score, check_top_k
from .plate_views import check_num_views
from .processing_lpllm import DEFAULT_PROMPT


DEFAULT_BATCH_SIZE = 8


def load_plate_image(image, name: str | None = None) -> Image.Image:
    """A path, a PIL image or a numpy array, passed through the image gate (`image_checks.py`), as an RGB PIL
    image. Arrays: `(H, W)` or `(H, W, 1, 3 or 4 channels)`, uint8 pixels or float fractions in [0, 1].

    Raises:
        ValueError: naming the input (the file, else `name`, else "image") and what was expected.
    """
    return load_image_input(image, name, PLATE_IMAGE_LIMITS)


def load_plate_sample(item, index: int) -> list[Image.Image]:
    """The frames of the pipeline's input `item`, number `index` of the call: a track (a list or tuple of images,
    each named "image #index frame #j") or one image ("image #index"), each through `load_plate_image`.

    Raises:
        ValueError: naming the input and, for a file, its path; for an empty track.
    """
    if not isinstance(item, (list, tuple)):
        return [load_plate_image(item, f"image #{index}")]
    if not item:
        raise ValueError(f"image #{index}: an empty track; a track is a list of one or more frames of one plate.")
    return [load_plate_image(frame, f"image #{index} frame #{position}") for position, frame in enumerate(item)]


class PlateRecognitionPipeline(Pipeline):
    """Reads license plates: `reader(image)` -> `[{"generated_text": "皖A12345", "score": 0.97, "char_scores":
    [...]}]`; `reader([image, ...])` -> one such list per image. Images may be paths, PIL images or numpy arrays. An
    item that is itself a list or tuple of images is a track, the frames of one plate, read as one plate:
    `reader([[f1, f2, f3], [g1, g2]])` -> one reading per track (`fusion`, `plate_reading.py`). Decoding follows
    the checkpoint's generation config: its `num_beams` (greedy when unset) and `max_new_tokens`
    (`DEFAULT_MAX_NEW_TOKENS` when it has none); reading is `plate_reading.py`'s, the evaluation's.

    Each reading has `score`, the probability that the whole plate is right (calibrated when the processor holds a
    fitted `score_temperature` and `score_map`), and `char_scores`, one probability per character of `generated_text`
    (`plate_scores.py`).

    Call arguments: `prompt` (the instruction, default `DEFAULT_PROMPT`; at most `MAX_PROMPT_CHARS` characters),
    `max_new_tokens` (1 to `MAX_NEW_TOKENS_LIMIT`), `batch_size` (plates, images or tracks, generated together,
    left-padded; default 8), `fusion` (how a track's frames are read together: `"late"`, each frame a prompt of its
    own, the default, or `"joint"`, all frames in one prompt), `num_views` (views a plate is read from, default: the
    processor's `num_views`; a track spreads them over its frames, `plate_reading.py`), `top_k` (above 1: a
    `candidates` list of the `top_k` best readings `{"text", "score", "char_scores"}`, best first; `generated_text` is
    the first), `num_beams` (readings searched per plate by
    beam search, at least `top_k`; default: the model's `generation_config.num_beams`, 1 when unset, i.e. greedy),
    `min_score` (a number in [0, 1], or `"saved"` for the processor's `abstain_threshold`: a reading scored below it
    comes back with `generated_text` "" and `unreadable` True, its text in `rejected_text`), `region` (`"auto"`, the
    default: candidates that fit some region's plate pattern first, if they have at least `AUTO_PROMOTION_FLOOR` of
    the best one's probability; a region code such as `"BR"`: candidates that fit it first; None: the model's order;
    every reading and candidate lists the `regions` it fits), `constrain` (True: generation writes only texts that fit
    `region`'s patterns), `generate_kwargs` (a dict passed to
    `model.generate`). All are checked before the first image is read; every image passes `image_checks.py`'s gate,
    and a refused one is named ("image #i", or "image #i frame #j" in a track, and its path).
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        self._constraints = {}  # region -> its pattern constraint, built once: building one reads the vocabulary
        super().__init__(*args, **kwargs)

    def _sanitize_parameters(
        self, prompt=None, max_new_tokens=None, num_views=None, top_k=None, num_beams=None, min_score=None,
        region="auto", constrain=False, fusion=None, generate_kwargs=None, **kwargs,
    ):
        preprocess_params = {} if prompt is None else {"prompt": check_prompt(prompt)}
        if fusion is not None:
            preprocess_params["fusion"] = check_fusion(fusion)
        if generate_kwargs is not None and not isinstance(generate_kwargs, dict):
            raise ValueError(f"`generate_kwargs` must be a dict of `model.generate` arguments; got {generate_kwargs!r}.")
        forward_params = dict(check_generate_kwargs(generate_kwargs or {}))
        postprocess_params = {}
        if max_new_tokens is not None:
            forward_params["max_new_tokens"] = check_max_new_tokens(max_new_tokens)
        if num_views is not None:
            preprocess_params["num_views"] = check_num_views(num_views)
        if top_k is not None or num_beams is not None:
            postprocess_params["top_k"] = check_top_k(1 if top_k is None else top_k)
            forward_params["num_beams"] = resolve_num_beams(self.model, postprocess_params["top_k"], num_beams)
        if min_score is not None:
            postprocess_params["min_score"] = self._resolve_min_score(min_score)
        if not isinstance(constrain, bool):
            raise ValueError(f"`constrain` must be True or False; got {constrain!r}.")
        postprocess_params["region"] = check_region(region, self.processor, constrain)
        if constrain:
            forward_params["constrain_region"] = postprocess_params["region"]
        return preprocess_params, forward_params, postprocess_params

    def _resolve_min_score(self, min_score) -> float:
        if min_score != "saved":
            return check_min_score(min_score)
        threshold = getattr(self.processor, "abstain_threshold", None)
        if threshold is None:
            raise ValueError(
                'min_score="saved" takes the processor\'s `abstain_threshold`, and this model has none (it was not '
                "calibrated: `lpllm calibrate`, or training's calibration at the end). Give a number in [0, 1]."
            )
        return threshold

    def __call__(self, images, batch_size=None, **kwargs):
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if not items:
            raise ValueError("Got an empty list of images: give at least one image.")
        if batch_size is None:
            batch_size = self._batch_size or DEFAULT_BATCH_SIZE
        batch_size = check_batch_size(batch_size)
        # Every argument is checked before the first image is read.
        preprocess_params, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
        preprocess_params = {**self._preprocess_params, **preprocess_params}
        forward_params = {**self._forward_params, **forward_params}
        postprocess_params = {**self._postprocess_params, **postprocess_params}
        results = []
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            batch_params = {**preprocess_params, "first_index": start}
            results.extend(self.run_single(batch, batch_params, forward_params, postprocess_params))
        return results[0] if single else results

    def preprocess(self, items, prompt=DEFAULT_PROMPT, num_views=None, fusion=None, first_index=0):
        # In-memory images are named by their place in the call, files by their path.
        batch = [load_plate_sample(item, first_index + offset) for offset, item in enumerate(items)]
        num_views = resolve_num_views(self.processor, num_views)
        fusion = resolve_fusion(fusion)
        return {
            "inputs": plate_reading_inputs(self.processor, batch, [prompt] * len(batch), num_views, fusion),
            "group_sizes": reading_group_sizes(batch, num_views, fusion),
        }

    def _forward(self, model_inputs, num_beams=None, constrain_region=None, **generate_kwargs):
        if num_beams is None:
            num_beams = resolve_num_beams(self.model)
        if constrain_region is not None:
            generate_kwargs = with_pattern_constraint(
                self.model, self.processor, constrain_region, generate_kwargs, self._constraints
            )
        group_sizes = model_inputs["group_sizes"]
        outputs = generate_plate_outputs(
            self.model, self.processor, model_inputs["inputs"], group_sizes, num_beams=num_beams, **generate_kwargs
        )
        return {**outputs, "group_sizes": group_sizes, "num_beams": num_beams}

    def postprocess(self, model_outputs, top_k=1, min_score=None, region="auto"):
        eos_token_ids = end_token_ids(self.model, self.processor)
        group_sizes, num_beams = model_outputs["group_sizes"], model_outputs["num_beams"]
        readings = decode_plate_outputs(self.processor, model_outputs, group_sizes, num_beams, eos_token_ids)
        results = []
        for reading in finish_readings(self.processor, readings, region, top_k):
            result = {"generated_text": reading.pop("text"), **reading}
            if min_score is not None:
                result["unreadable"] = result["score"] < min_score
                if result["unreadable"]:
                    result["rejected_text"], result["generated_text"] = result["generated_text"], ""
            results.append([result])
        return results


__all__ = ["PlateRecognitionPipeline", "load_plate_image", "load_plate_sample"]
