"""Reading plates with a Qwen3-VL-family model (LP-LLM or stock): the one implementation behind
`pipeline("image-to-text")` and the evaluation's reader.

A batch holds samples, each a list of PIL images: one crop, or a track (several frames of one plate). A track is
read by one of two `fusion`s:

- `"late"` (the default): every frame is a prompt of its own with one image, and the track's frames take
  consecutive rows, averaged as views are. Frames degraded differently (motion, focus, noise) each contribute
  their next-token distribution, and a track of any length reads the same way.
- `"joint"`: the track is one chat prompt with an image placeholder per frame, as Qwen3-VL reads several images;
  with `config.cmrm_fuse_frames` CMRM pools the frames' visual tokens into one character context. Asked for
  explicitly: a model trained on tracks with it read fewer plates jointly than late (results/tracks.md).

`num_views` V is the views a *plate* is read from (`LPLLMProcessor.plate_views`: the crop, then fixed corner
jitters), each a row of its own. Under late fusion a track of F frames spends them across its frames instead of
multiplying them (`late_fusion_rows`): every frame is read from its crop first, and the views left over go to the
frames' corner jitters in turn. A track takes max(V, F) rows: with 5 views a 3-frame track takes the rows of one
crop, and frames, degraded independently, are better looks at a plate than jitters of one frame. A track of
identical frames read with one view reads exactly as the single frame. Under joint fusion every row holds
one view of all frames: V rows. A sample's rows are consecutive and left-padded, so batched greedy decoding equals
one-by-one decoding, and `ViewAveragingLogitsProcessor` gives all rows of a sample the mean of their
log-probabilities, renormalised, so they take the same tokens and one row per sample is decoded, with one score.

`max_new_tokens` is the caller's, else the model's `generation_config.max_new_tokens` (saved with the model by
training), else `DEFAULT_MAX_NEW_TOKENS`. Likewise `num_beams`, the readings searched per plate (`resolve_num_beams`):
above 1, beam search, and the reading is the best beam that fits a plate pattern (`rank_by_region`), so a model saved
with `generation_config.num_beams` 5 reads an O in a letter's place where a greedy reading writes 0.
"""

import math
from collections.abc import Mapping
from itertools import accumulate

import numpy as np
import torch
from transformers import BatchFeature, LogitsProcessorList

from .plate_constraints import PlatePatternLogitsProcessor
from .plate_patterns import all_region_patterns, matching_regions, resolve_patterns
from .plate_scores import (
    CalibratedLogProbabilities,
    check_score_map,
    check_top_k,
    generated_token_log_probs,
    map_plate_score,
    spell_with_scores,
)
from .plate_views import ViewAveragingLogitsProcessor, check_num_views
from .processing_lpllm import DEFAULT_PROMPT, plate_messages


# Generation length cap for a model whose generation config sets none: a plate's characters and the end token, with
# room for a stock model's tokenizer, which may spend several tokens on one character.
DEFAULT_MAX_NEW_TOKENS = 16
# `region="auto"` promotes a beam fitting some region's plate pattern over likelier beams fitting none only when it
# has at least this share of the best beam's probability. Chosen on realtrain's TW/VN/CN splits and synthetic
# validation plates (results/trust.md: 0.01 to 0.3 read the same there; 0 promoted wrong beams of regions without
# patterns).
AUTO_PROMOTION_FLOOR = 0.01
# Upper bounds that keep one read from running for minutes: a plate instruction is a sentence (a 100k-character
# prompt takes ~30 s a plate on a CPU), and a plate is a few dozen tokens even for a stock model answering in words.
MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS_LIMIT = 1024


def check_prompt(prompt, name: str = "prompt") -> str | None:
    """`prompt` when it is None or a non-blank string of at most `MAX_PROMPT_CHARS` characters; ValueError naming
    `name` otherwise."""
    if prompt is None:
        return None
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"`{name}` must be a non-blank string (the instruction) or None; got {prompt!r:.80}.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(
            f"`{name}` has {len(prompt)} characters; at most {MAX_PROMPT_CHARS} accepted (a plate instruction is a "
            "sentence)."
        )
    return prompt


def check_max_new_tokens(max_new_tokens, name: str = "max_new_tokens") -> int:
    """`max_new_tokens` as an int in [1, `MAX_NEW_TOKENS_LIMIT`]; ValueError naming `name` otherwise."""
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, (int, np.integer))
        or not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT
    ):
        raise ValueError(
            f"`{name}` must be a whole number in [1, {MAX_NEW_TOKENS_LIMIT}] (tokens generated per plate); got "
            f"{max_new_tokens!r}."
        )
    return int(max_new_tokens)


def check_batch_size(batch_size, name: str = "batch_size") -> int:
    """`batch_size` as a positive int; ValueError naming `name` otherwise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`{name}` must be a whole number >= 1 (images read together); got {batch_size!r}.")
    return int(batch_size)


FUSIONS = ("late", "joint")


def check_fusion(fusion, name: str = "fusion") -> str:
    """`fusion`, how a track's frames are read together: `"late"` or `"joint"` (see the module docstring);
    ValueError naming `name` otherwise."""
    if fusion not in FUSIONS:
        raise ValueError(
            f"`{name}` must be 'late' (each frame a prompt of its own, next-token log-probabilities averaged) or "
            f"'joint' (all frames in one prompt); got {fusion!r}."
        )
    return fusion


def resolve_fusion(fusion: str | None = None) -> str:
    """`fusion` (`check_fusion`), else `"late"`, for every model: a model trained on tracks read in one prompt
    (`config.cmrm_fuse_frames`) read 3-frame tracks as well late as jointly and 5-frame tracks better, in less time
    (results/tracks.md)."""
    return "late" if fusion is None else check_fusion(fusion)


def check_batch(batch: list[list]) -> list[list]:
    """`batch` when every sample is a non-empty list or tuple of images; ValueError naming the sample otherwise."""
    for index, sample in enumerate(batch):
        if not isinstance(sample, (list, tuple)) or not sample:
            raise ValueError(
                f"Sample #{index} of the batch is {sample!r:.60}; each sample must be a non-empty list of images (one "
                "crop, or the frames of one plate)."
            )
    return batch


def late_fusion_rows(num_frames: int, num_views: int = 1) -> list[tuple[int, int]]:
    """`(frame, view)` of each row a track of `num_frames` frames is read from by late fusion with `num_views` views
    of the plate: max(`num_views`, `num_frames`) rows, row j from view j // `num_frames` of frame j mod `num_frames`.
    Every frame is read from its crop (view 0) first, and the views left over go to the frames' corner jitters in
    turn: a frame's own pixels are better evidence than another jitter of a frame already read (synthetic tracks of
    severity 5, 3 frames at 5 views: 85.0% read right this way, 81.7% with the views spread as a single crop's are,
    results/tracks.md). A single crop is read from its `num_views` views."""
    num_views = check_num_views(num_views)
    return [(row % num_frames, row // num_frames) for row in range(max(num_views, num_frames))]


def reading_group_sizes(batch: list[list], num_views: int = 1, fusion: str = "late") -> list[int]:
    """The rows each sample of `batch` is read from (`plate_reading_inputs`): `num_views` under joint fusion, and
    under late fusion max(`num_views`, its frames) (`late_fusion_rows`)."""
    fusion = check_fusion(fusion)
    num_views = check_num_views(num_views)
    if fusion == "joint":
        return [num_views for _ in check_batch(batch)]
    return [len(late_fusion_rows(len(sample), num_views)) for sample in check_batch(batch)]


def first_rows(group_sizes: int | list[int], num_rows: int) -> list[int]:
    """The first of each sample's rows in a batch of `num_rows` input rows, each sample taking `group_sizes` rows (an
    int for every sample alike, or one count per sample, `reading_group_sizes`)."""
    if isinstance(group_sizes, (int, np.integer)):
        return list(range(0, num_rows, int(group_sizes)))
    if sum(group_sizes) != num_rows:
        raise ValueError(f"`group_sizes` add up to {sum(group_sizes)} rows; the batch holds {num_rows}.")
    return list(accumulate(group_sizes[:-1], initial=0))


def resolve_num_views(processor, num_views: int | None = None) -> int:
    """`num_views`, else the processor's (1 for a processor without views).

    Raises:
        ValueError: for a bad `num_views`, or `num_views` > 1 with a processor that cannot make views.
    """
    num_views = check_num_views(getattr(processor, "num_views", 1) if num_views is None else num_views)
    if num_views > 1 and not hasattr(processor, "plate_views"):
        raise ValueError(
            f"num_views={num_views} needs an LP-LLM processor with `plate_views`; this {type(processor).__name__} "
            "(a stock one, or LP-LLM code saved before views existed) has none. Read with num_views=1, or re-save "
            "the checkpoint with this package."
        )
    return num_views


def resolve_max_new_tokens(generation_config, max_new_tokens: int | None = None) -> int:
    """`max_new_tokens`, else the generation config's, else `DEFAULT_MAX_NEW_TOKENS`.

    Raises:
        ValueError: naming `max_new_tokens` when it is not a whole number in [1, `MAX_NEW_TOKENS_LIMIT`].
    """
    if max_new_tokens is not None:
        return check_max_new_tokens(max_new_tokens)
    saved = getattr(generation_config, "max_new_tokens", None)
    return check_max_new_tokens(saved, "generation_config.max_new_tokens") if saved else DEFAULT_MAX_NEW_TOKENS


def track_views(processor, frames: list, rows: list[tuple[int, int]]) -> list:
    """The image of each of `rows`, `(frame, view)` of `frames` (`late_fusion_rows`), in their order. Each frame's
    views are made by one `LPLLMProcessor.plate_views` call up to the highest it needs (view v is the same whatever
    the number made), which every saved LP-LLM processor can do."""
    made = [
        processor.plate_views([image], 1 + max(view for row_frame, view in rows if row_frame == frame))
        for frame, image in enumerate(frames)
    ]
    return [made[frame][view] for frame, view in rows]


def plate_reading_inputs(
    processor, batch: list[list], prompts: list[str | None] | None = None, num_views: int = 1, fusion: str = "late"
):
    """The model inputs for reading `batch`: one left-padded row per prompt and view, each sample's rows
    consecutive (`reading_group_sizes` counts them).

    Args:
        processor: an `LPLLMProcessor`, or a stock Qwen3-VL processor when `num_views` is 1.
        batch: samples, each a non-empty list of PIL images (one crop, or the frames of one plate).
        prompts: one instruction per sample; None (or a None entry) for `DEFAULT_PROMPT`.
        num_views: views of each plate (`LPLLMProcessor.plate_views`); under late fusion a track spreads them over
            its frames (`late_fusion_rows`), under joint fusion each view is a row holding that view of every frame.
        fusion: `"late"`, a prompt per frame, or `"joint"`, a prompt per sample with an image placeholder per frame.
    """
    fusion = check_fusion(fusion)
    num_views = check_num_views(num_views)
    check_batch(batch)
    prompts = prompts or [None] * len(batch)
    if len(prompts) != len(batch):
        raise ValueError(f"`prompts` has {len(prompts)} entries for {len(batch)} samples: give one per sample.")
    prompts = [check_prompt(prompt, f"prompts[{index}]") for index, prompt in enumerate(prompts)]
    if fusion == "late":
        rows = [late_fusion_rows(len(sample), num_views) for sample in batch]
        prompts = [prompt for sample_rows, prompt in zip(rows, prompts) for _ in sample_rows]
        if num_views == 1:  # the frames themselves, one a row: a stock processor, which makes no views, reads them too
            batch = [[image] for sample in batch for image in sample]
        else:
            views = [track_views(processor, sample, sample_rows) for sample, sample_rows in zip(batch, rows)]
            batch = [[view] for sample_views in views for view in sample_views]
    elif num_views > 1:
        # `plate_views` puts each frame's views in consecutive places: view v of frame f is at f * num_views + v.
        frame_views = [processor.plate_views(list(images), num_views) for images in batch]
        batch = [views[view::num_views] for views in frame_views for view in range(num_views)]
        prompts = [prompt for prompt in prompts for _ in range(num_views)]
    texts = [
        processor.apply_chat_template(
            plate_messages(prompt or DEFAULT_PROMPT, num_images=len(images)), add_generation_prompt=True, tokenize=False
        )
        for images, prompt in zip(batch, prompts)
    ]
    images = [image for sample in batch for image in sample]
    return processor(images=images, text=texts, padding=True, padding_side="left", return_tensors="pt")


def generation_settings(model, processor, group_sizes: int | list[int] = 1, max_new_tokens: int | None = None,
                        num_beams: int = 1, score_temperature: float | None = None, **generate_kwargs) -> dict:
    """`model.generate` arguments for reading: greedy (`num_beams` 1) or beam search with `num_beams` beams and as
    many readings returned, no length penalty; scores returned. `group_sizes` is the rows of each sample (an int, its
    `num_views`, for every sample alike, or one count per sample, `reading_group_sizes`). The logits processors, in
    order: the average of each sample's rows (`ViewAveragingLogitsProcessor`, when a sample has several), the
    processor's `score_temperature` (`CalibratedLogProbabilities`), then any `logits_processor` of the caller (a
    plate pattern's constraint masks tokens without renormalising, so a constrained reading keeps the score the model
    gives it). `score_temperature` None takes the processor's."""
    generation_config = model.generation_config
    num_beams = check_top_k(num_beams, "num_beams")
    check_generate_kwargs(generate_kwargs)
    generate_kwargs.setdefault("do_sample", False)
    generate_kwargs["max_new_tokens"] = resolve_max_new_tokens(generation_config, max_new_tokens)
    if generation_config.pad_token_id is None:
        generate_kwargs.setdefault("pad_token_id", processor.tokenizer.pad_token_id)
    if num_beams > 1:
        generate_kwargs.update(
            num_beams=num_beams, num_return_sequences=num_beams, length_penalty=0.0, early_stopping=False
        )
    else:
        generate_kwargs["num_beams"] = 1  # not the generation config's: `resolve_num_beams` has read it already
    if score_temperature is None:
        score_temperature = getattr(processor, "score_temperature", 1.0)
    processors = [CalibratedLogProbabilities(score_temperature)]
    if (group_sizes if isinstance(group_sizes, (int, np.integer)) else max(group_sizes)) > 1:
        processors.insert(0, ViewAveragingLogitsProcessor(group_sizes, num_beams=num_beams))
    caller_processors = generate_kwargs.pop("logits_processor", None) or []
    generate_kwargs["logits_processor"] = LogitsProcessorList([*processors, *caller_processors])
    generate_kwargs.update(return_dict_in_generate=True, output_scores=True)
    return generate_kwargs


def check_generate_kwargs(generate_kwargs: Mapping) -> Mapping:
    """`generate_kwargs` for reading, refusing the beam settings the reader owns.

    Raises:
        ValueError: for `num_beams` or `num_return_sequences`: the readings' decoding and the views' averaging are
            laid out for the reader's own `num_beams` and `top_k`.
    """
    for owned in ("num_beams", "num_return_sequences"):
        if owned in generate_kwargs:
            raise ValueError(
                f"`{owned}` cannot go to `model.generate` directly: give the reader's `num_beams` (readings searched "
                "per plate) and `top_k` (readings returned) instead."
            )
    return generate_kwargs


def resolve_num_beams(model, top_k: int = 1, num_beams: int | None = None) -> int:
    """The readings searched per plate: `num_beams`, else the model's `generation_config.num_beams` (1 when unset),
    and at least `top_k`.

    Raises:
        ValueError: naming `num_beams` when it is not a whole number >= 1.
    """
    if num_beams is None:
        num_beams = getattr(model.generation_config, "num_beams", None) or 1
    return max(check_top_k(top_k), check_top_k(num_beams, "num_beams"))


def end_token_ids(model, processor) -> list[int]:
    """The tokens that end a reading: the generation config's `eos_token_id` (an id or a list), else the
    tokenizer's end token."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = processor.tokenizer.eos_token_id
    return [int(token) for token in (eos if isinstance(eos, (list, tuple)) else [eos]) if token is not None]


def generate_plate_outputs(
    model, processor, inputs: BatchFeature, group_sizes: int | list[int] = 1, max_new_tokens: int | None = None,
    num_beams: int = 1, score_temperature: float | None = None, return_step_scores: bool = False, **generate_kwargs,
) -> dict:
    """Generates the readings of `inputs` (`plate_reading_inputs`), each sample's `group_sizes` rows (an int for
    every sample alike, or `reading_group_sizes`) read as one plate: `sequences`, the tokens after each row's prompt,
    `(input rows * num_beams, steps)` (input row by input row, each row's `num_beams` readings best first), and
    `token_log_probs`, their calibrated log-probabilities (0 past each reading's end token). With
    `return_step_scores`, `step_scores` too: `generate`'s processed scores, one `(rows, vocab)` tensor per step (what
    a temperature is fitted on)."""
    settings = generation_settings(
        model, processor, group_sizes, max_new_tokens, num_beams, score_temperature, **generate_kwargs
    )
    generated = model.generate(**inputs, **settings)
    sequences = generated.sequences[:, inputs["input_ids"].shape[1] :]
    log_probs = generated_token_log_probs(
        sequences, generated.scores, end_token_ids(model, processor), getattr(generated, "beam_indices", None)
    )
    outputs = {"sequences": sequences, "token_log_probs": log_probs}
    if return_step_scores:
        outputs["step_scores"] = generated.scores
    return outputs


def decode_plate_outputs(
    processor, outputs: dict, group_sizes: int | list[int] = 1, num_beams: int = 1,
    eos_token_ids: list[int] | None = None,
) -> list[dict]:
    """One reading per sample of `generate_plate_outputs`' output (read with the same `group_sizes`): `{"text",
    "score", "char_scores"}`, plus, when `num_beams` > 1, `"candidates"`: the `num_beams` readings `{"text", "score",
    "char_scores"}` best first, the first being the reading itself; scores are the model's (tempered) probabilities
    (`finish_readings` ranks them and maps them). A sample's rows all generated the same tokens, so its first row's
    readings are decoded."""
    eos_token_ids = set(eos_token_ids or [processor.tokenizer.eos_token_id])
    sequences, log_probs = outputs["sequences"].tolist(), outputs["token_log_probs"]
    readings = []
    for first_input_row in first_rows(group_sizes, len(sequences) // num_beams):
        first = first_input_row * num_beams
        candidates = []
        for row in range(first, first + num_beams):
            tokens = sequences[row]
            end = next((index + 1 for index, token in enumerate(tokens) if token in eos_token_ids), len(tokens))
            text, char_scores = spell_with_scores(processor.tokenizer, tokens[:end], log_probs[row, :end].tolist())
            score = math.exp(float(log_probs[row].sum()))
            candidates.append({"text": text, "score": score, "char_scores": char_scores})
        candidates.sort(key=lambda candidate: -candidate["score"])  # stable: generate's order among equals
        reading = dict(candidates[0])
        if num_beams > 1:
            reading["candidates"] = candidates
        readings.append(reading)
    return readings


def region_pattern_table(processor) -> Mapping:
    """Region code -> plate patterns: the built-in table with the processor's own `plate_patterns`."""
    return all_region_patterns(getattr(processor, "plate_patterns", None))


def check_region(region, processor, constrain: bool = False) -> str | None:
    """`region` as the pipeline takes it: `"auto"` (candidates that fit any region's pattern first), a region code of
    `region_pattern_table` (candidates that fit it first; upper-cased), or None (the model's order).

    Raises:
        ValueError: naming `region` for an unknown code, and for `constrain` without a region code.
    """
    if region is not None and not isinstance(region, str):
        raise ValueError(f"`region` must be 'auto', a region code such as 'BR', or None; got {region!r}.")
    if region is not None and region.strip().lower() != "auto":
        resolve_patterns(region, getattr(processor, "plate_patterns", None))
        region = region.strip().upper()
    elif region is not None:
        region = "auto"
    if constrain and region in (None, "auto"):
        raise ValueError(
            "`constrain=True` writes only texts that fit one region's patterns: give `region` a region code, e.g. "
            f"region='BR' (known: {', '.join(region_pattern_table(processor))})."
        )
    return region


def pattern_constraint(model, processor, region: str, cache: dict | None = None) -> PlatePatternLogitsProcessor:
    """The logits processor that lets generation write only texts fitting `region`'s patterns; taken from `cache`
    (keyed by region, ready for a new `generate` call) when it holds one, since building one reads the vocabulary."""
    if cache is not None and region in cache:
        cache[region].reset()
        return cache[region]
    patterns = resolve_patterns(region, getattr(processor, "plate_patterns", None))
    constraint = PlatePatternLogitsProcessor(processor.tokenizer, patterns, end_token_ids(model, processor))
    if cache is not None:
        cache[region] = constraint
    return constraint


def with_pattern_constraint(model, processor, region: str, generate_kwargs: dict, cache: dict | None = None) -> dict:
    """`generate_kwargs` with `region`'s `pattern_constraint` after the caller's logits processors."""
    constraint = pattern_constraint(model, processor, region, cache)
    return {**generate_kwargs, "logits_processor": [*(generate_kwargs.get("logits_processor") or []), constraint]}


def rank_by_region(readings: list[dict], region: str | None, table: Mapping, top_k: int | None = None) -> list[dict]:
    """Adds `regions`, the codes whose patterns a text fits, to every reading and candidate, and with `region`
    re-ranks each reading's candidates: those fitting `region` first, by score otherwise; the reading takes the first
    candidate's text and scores. With `"auto"`, a candidate fitting any region's pattern goes first only if its score
    is at least `AUTO_PROMOTION_FLOOR` of the best candidate's: among many regions' patterns, an improbable beam often
    fits one by chance (a plate of a region the table lacks). Nothing is forced: a plate no candidate fits keeps the
    model's order. `top_k` keeps that many candidates after ranking (1: none listed); None keeps them all."""
    ranked = []
    for reading in readings:
        candidates = [
            {**candidate, "regions": matching_regions(candidate["text"], table)}
            for candidate in reading.get("candidates", [reading])
        ]
        if region == "auto":
            floor = AUTO_PROMOTION_FLOOR * max(candidate["score"] for candidate in candidates)
            candidates.sort(key=lambda candidate: not (candidate["regions"] and candidate["score"] >= floor))
        elif region is not None:
            candidates.sort(key=lambda candidate: region not in candidate["regions"])
        result = dict(candidates[0])
        if "candidates" in reading and top_k != 1:
            result["candidates"] = candidates[:top_k]
        ranked.append(result)
    return ranked


def finish_readings(processor, readings: list[dict], region: str | None, top_k: int | None = None) -> list[dict]:
    """`decode_plate_outputs`' readings ranked by `region` (`rank_by_region`, on the model's probabilities), then
    every score, the readings' and their candidates', through the processor's `score_map`."""
    ranked = rank_by_region(readings, region, region_pattern_table(processor), top_k)
    score_map = check_score_map(getattr(processor, "score_map", None))
    if score_map is None:
        return ranked
    for reading in ranked:
        reading["score"] = map_plate_score(reading["score"], score_map)
        for candidate in reading.get("candidates", []):
            candidate["score"] = map_plate_score(candidate["score"], score_map)
    return ranked


@torch.inference_mode()
def read_plate_readings(
    model,
    processor,
    batch: list[list],
    prompts: list[str | None] | None = None,
    num_views: int | None = None,
    max_new_tokens: int | None = None,
    top_k: int = 1,
    region: str | None = "auto",
    constrain: bool = False,
    constraint_cache: dict | None = None,
    fusion: str | None = None,
    num_beams: int | None = None,
    **generate_kwargs,
) -> list[dict]:
    """One reading per sample of `batch` (see `plate_reading_inputs`), on the model's device: `{"text", "score",
    "char_scores", "regions"}`, and with `top_k` > 1 its `candidates` (`decode_plate_outputs`, `finish_readings`).
    A sample of several frames is a track, read as one plate.

    Args:
        num_views: views of each crop a plate is read from; None for the processor's `num_views` (1 without one).
        max_new_tokens: None for the model's `generation_config.max_new_tokens`, else `DEFAULT_MAX_NEW_TOKENS`.
        top_k: readings per plate; above 1, beam search with that many beams.
        region: `"auto"`, a region code or None (`check_region`): how candidates are ranked.
        constrain: write only texts that fit `region`'s patterns (`PlatePatternLogitsProcessor`).
        constraint_cache: a dict kept by the caller across calls, so the constraint is built once per region.
        fusion: how a track's frames are read together, `"late"` or `"joint"` (the module docstring); None for the
            model's (`resolve_fusion`).
        num_beams: readings searched per plate, ranked by `region` (`resolve_num_beams`); None for the model's.
        generate_kwargs: passed to `model.generate`.
    """
    fusion = resolve_fusion(fusion)
    num_views = resolve_num_views(processor, num_views)
    group_sizes = reading_group_sizes(batch, num_views, fusion)
    top_k = check_top_k(top_k)
    num_beams = resolve_num_beams(model, top_k, num_beams)
    region = check_region(region, processor, constrain)
    if constrain:
        generate_kwargs = with_pattern_constraint(model, processor, region, generate_kwargs, constraint_cache)
    inputs = plate_reading_inputs(processor, batch, prompts, num_views, fusion).to(model.device)
    outputs = generate_plate_outputs(
        model, processor, inputs, group_sizes, max_new_tokens, num_beams, **generate_kwargs
    )
    readings = decode_plate_outputs(processor, outputs, group_sizes, num_beams, end_token_ids(model, processor))
    return finish_readings(processor, readings, region, top_k)


def read_plates(
    model,
    processor,
    batch: list[list],
    prompts: list[str | None] | None = None,
    num_views: int | None = None,
    max_new_tokens: int | None = None,
    **generate_kwargs,
) -> list[str]:
    """The text of each sample's reading (`read_plate_readings`)."""
    readings = read_plate_readings(model, processor, batch, prompts, num_views, max_new_tokens, **generate_kwargs)
    return [reading["text"] for reading in readings]


__all__ = [
    "AUTO_PROMOTION_FLOOR",
    "DEFAULT_MAX_NEW_TOKENS",
    "FUSIONS",
    "MAX_NEW_TOKENS_LIMIT",
    "MAX_PROMPT_CHARS",
    "check_batch",
    "check_batch_size",
    "check_fusion",
    "check_generate_kwargs",
    "check_max_new_tokens",
    "check_prompt",
    "check_region",
    "decode_plate_outputs",
    "end_token_ids",
    "finish_readings",
    "first_rows",
    "generate_plate_outputs",
    "generation_settings",
    "late_fusion_rows",
    "pattern_constraint",
    "plate_reading_inputs",
    "rank_by_region",
    "region_pattern_table",
    "read_plate_readings",
    "read_plates",
    "reading_group_sizes",
    "resolve_fusion",
    "resolve_max_new_tokens",
    "resolve_num_beams",
    "resolve_num_views",
    "track_views",
    "with_pattern_constraint",
]
