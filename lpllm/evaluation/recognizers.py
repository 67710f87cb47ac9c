"""The reader adapter for Qwen3-VL-family models (LP-LLM or stock) behind the small interface that evaluation uses
for every plate reader (the baselines in `lpllm.baselines` implement the same one).

A reader has `read(batch) -> list[str]` (one raw string per sample, each sample a list of PIL images: several for
multi-frame samples), a torch `model` (for parameter counts), `name`, `paradigm`, `device` and `describe()`.
`lpllm.cli.recognizers.load_recognizer(path)` picks the right one from what a directory holds.
"""

import json
import logging
import os
import re
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from modeling_lpllm import DEFAULT_PLATE_CHARSET, LPLLMProcessor
from modeling_lpllm.plate_reading import (
    check_region,
    rank_by_region,
    read_plate_readings,
    region_pattern_table,
    resolve_fusion,
    resolve_max_new_tokens,
    resolve_num_beams,
    resolve_num_views,
)
from modeling_lpllm.plate_scores import check_top_k

from .model_sources import check_model_reference, remote_code_allowed


logger = logging.getLogger(__name__)


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, else the first CUDA device when there is one, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def extract_plate_text(text: str, charset: str = DEFAULT_PLATE_CHARSET) -> str:
    """The plate inside a free-form answer such as 'The plate reads "AB 123 CD".': the longest run of plate
    characters (upper-case letters, digits, the charset's other symbols) possibly split by spaces or dashes.

    A stock Qwen3-VL answers zero-shot in sentences; LP-LLM and the baselines answer with the plate alone and do not
    need this. Returns the text unchanged when it holds no plate character.
    """
    plate_chars = "".join(re.escape(char) for char in sorted(set(charset)) if not char.islower())
    runs = re.findall(rf"[{plate_chars}](?:[ \-·.]?[{plate_chars}])*", text)
    return max(runs, key=len) if runs else text


class VisionLanguageRecognizer:
    """Reads plates with a Qwen3-VL-family model (LP-LLM or stock) through `modeling_lpllm.read_plates`, the
    pipeline's reader: greedy generation on left-padded batches.

    `num_views` > 1 reads each plate from that many views (`LPLLMProcessor.plate_views`, their next-token
    log-probabilities averaged; a track spreads them over its frames, `modeling_lpllm.plate_reading.late_fusion_rows`);
    None takes the processor's `num_views` (1 when it has none).
    `max_new_tokens` None takes the model's `generation_config.max_new_tokens` (`DEFAULT_MAX_NEW_TOKENS` when it
    has none), `num_beams` None its `num_beams` (readings searched per plate). `top_k` > 1 keeps the `top_k` best
    readings (each reading's `candidates`, searched with at least `top_k` beams), ranked by
    `region` (`"auto"`: those fitting some region's plate pattern first, above a share of the best one's probability:
    `modeling_lpllm.plate_reading.rank_by_region`); `constrain` writes only texts fitting
    `region`'s patterns (`modeling_lpllm.read_plate_readings`). A sample of several images (a track, the frames of
    one plate) is read by `fusion`: `"late"`, each frame a prompt of its own, their next-token log-probabilities
    averaged (None: the default), or `"joint"`, all frames in one prompt
    (`modeling_lpllm.plate_reading.resolve_fusion`)."""

    def __init__(
        self,
        model,
        processor,
        name: str,
        device: torch.device,
        max_new_tokens: int | None = None,
        prompt: str | None = None,
        extract_plate: bool = False,
        charset: str = DEFAULT_PLATE_CHARSET,
        path: str | None = None,
        num_views: int | None = None,
        top_k: int = 1,
        region: str | None = "auto",
        constrain: bool = False,
        fusion: str | None = None,
        num_beams: int | None = None,
    ):
        self.model = model.to(device).eval()
        self.processor = processor
        self.name = name
        self.path = path
        self.device = device
        self.max_new_tokens = resolve_max_new_tokens(model.generation_config, max_new_tokens)
        self.prompt = prompt
        self.extract_plate = extract_plate
        self.charset = charset
        self.num_views = resolve_num_views(processor, num_views)
        self.top_k = check_top_k(top_k)
        self.num_beams = resolve_num_beams(model, self.top_k, num_beams)
        self.region = check_region(region, processor, constrain)
        self.constrain = constrain
        self.fusion = resolve_fusion(fusion)
        self._constraints = {}  # the region's pattern constraint, built once (it reads the vocabulary)
        config = model.config
        self.model_type = config.model_type
        self.cmrm_enabled = bool(getattr(config, "cmrm_enabled", False)) and self.model_type == "lpllm"
        if self.model_type == "lpllm":
            self.paradigm = "VLM + CMRM" if self.cmrm_enabled else "VLM (CMRM off)"
        else:
            self.paradigm = "VLM"

    @property
    def abstain_threshold(self) -> float | None:
        """The processor's saved abstain threshold (`LPLLMProcessor.abstain_threshold`), None when uncalibrated."""
        return getattr(self.processor, "abstain_threshold", None)

    def read_scored(self, batch: list[list], prompts: list[str | None] | None = None) -> list[dict]:
        """One reading per sample, `{"text", "score", "char_scores", "regions"}` and with `top_k` > 1 its
        `candidates` (`modeling_lpllm.read_plate_readings`). With answer extraction, each `text` is the plate inside
        the answer, `char_scores` is dropped (it spells the answer), and `regions` and the candidates' ranking are
        those of the extracted plates."""
        prompts = [self.prompt or prompt for prompt in prompts or [None] * len(batch)]
        readings = read_plate_readings(
            self.model, self.processor, batch, prompts, num_views=self.num_views, max_new_tokens=self.max_new_tokens,
            top_k=self.top_k, region=self.region, constrain=self.constrain, constraint_cache=self._constraints,
            fusion=self.fusion, num_beams=self.num_beams,
        )
        if self.extract_plate:
            # A sentence fits no plate pattern: the answers' regions and ranking say nothing about the plates in them,
            # so the extracted plates are ranked afresh (by score, then by `region`).
            readings = [self._extract_plates(reading) for reading in readings]
            readings = rank_by_region(readings, self.region, region_pattern_table(self.processor))
        return readings

    def _extract_plates(self, reading: dict) -> dict:
        """`{"text", "score"}` of `reading` with the plate inside its answer; its candidates likewise, by score."""
        extracted = {"text": extract_plate_text(reading["text"], self.charset), "score": reading["score"]}
        if "candidates" in reading:
            candidates = [self._extract_plates(candidate) for candidate in reading["candidates"]]
            extracted["candidates"] = sorted(candidates, key=lambda candidate: -candidate["score"])
        return extracted

    def read(self, batch: list[list], prompts: list[str | None] | None = None) -> list[str]:
        return [reading["text"] for reading in self.read_scored(batch, prompts)]

    def describe(self) -> dict:
        config = self.model.config
        description = {"model_type": self.model_type, "cmrm_enabled": self.cmrm_enabled}
        if self.model_type == "lpllm":
            for key in (
                "cmrm_num_slots",
                "cmrm_num_layers",
                "cmrm_num_heads",
                "cmrm_alpha",
                "cmrm_apply_to_deepstack",
                "cmrm_fuse_frames",
            ):
                description[key] = getattr(config, key, None)
            cmrm = getattr(self.model, "cmrm", None)
            description["cmrm_parameters"] = sum(p.numel() for p in cmrm.parameters()) if cmrm is not None else 0
        description["peft"] = bool(getattr(self.model, "peft_config", None))
        description["num_views"] = self.num_views  # where the CTC baselines describe theirs: one place for reports
        description["generation"] = {
            "decoding": ("greedy" if self.num_beams == 1 else f"beam search, {self.num_beams} beams")
            + ("" if self.num_views == 1 else f" over {self.num_views} views"),
            "region": self.region,
            "constrain": self.constrain,
            "fusion": self.fusion,
            "max_new_tokens": self.max_new_tokens,
            "prompt": self.prompt or "dataset prompt, else DEFAULT_PROMPT",
            "answer_extraction": "longest plate-character run" if self.extract_plate else "none",
        }
        training = _trainer_state_summary(self.path)
        if training:
            description["training"] = training
        return description


def _trainer_state_summary(path: str | None) -> dict | None:
    """What a transformers/TRL Trainer left beside the checkpoint about its budget, when it left anything."""
    state_file = Path(path) / "trainer_state.json" if path else None
    if not state_file or not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {key: state.get(key) for key in ("global_step", "epoch", "max_steps", "train_batch_size") if key in state}


def _load_processor(path: str, trust_remote_code: bool = False):
    """AutoProcessor, else LPLLMProcessor (a stock Qwen3-VL processor needs torchvision for its video half)."""
    errors = []
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        if (
            getattr(processor, "image_processor", None) is not None
            and getattr(processor, "tokenizer", None) is not None
        ):
            return processor
        errors.append(f"AutoProcessor gave a {type(processor).__name__} without an image processor and a tokenizer")
    except Exception as error:  # any failure here has a fallback; the messages are reported if that fails too
        errors.append(f"AutoProcessor: {error}")
    try:
        return LPLLMProcessor.from_pretrained(path)
    except Exception as error:
        errors.append(f"LPLLMProcessor: {error}")
    raise ValueError(
        f"{path} has no usable processor (tokenizer + image processor). Save one beside the model with"
        f" `processor.save_pretrained({path!r})`. Details: " + " | ".join(errors)
    )


def load_vision_language_recognizer(
    path: str,
    device: torch.device,
    dtype: str = "auto",
    max_new_tokens: int | None = None,
    prompt: str | None = None,
    answer_extraction: str = "auto",
    charset: str = DEFAULT_PLATE_CHARSET,
    num_views: int | None = None,
    trust_remote_code: bool = False,
    top_k: int = 1,
    region: str | None = "auto",
    constrain: bool = False,
    fusion: str | None = None,
    num_beams: int | None = None,
) -> VisionLanguageRecognizer:
    """Loads an LP-LLM checkpoint (or Hub id) or a stock Qwen3-VL with its processor; `max_new_tokens` None reads
    (and `num_beams` None searches) with the checkpoint's generation config; `fusion` reads multi-frame samples
    (`VisionLanguageRecognizer`).

    `trust_remote_code`: run code the model ships (`model_sources.py`); an LP-LLM folder this project wrote loads
    without it.

    Raises:
        FileNotFoundError: naming `model_name_or_path`, for a local path that does not exist.
        ValueError: when the model ships code and `trust_remote_code` is off, saying why the flag is needed.
    """
    check_model_reference(path, "model_name_or_path")
    trust_remote_code = remote_code_allowed(path, trust_remote_code)
    if dtype == "auto":
        # Half precision is slow or unsupported on many CPUs; on GPUs the checkpoint's own dtype is right.
        torch_dtype = torch.float32 if device.type == "cpu" else "auto"
    else:
        torch_dtype = getattr(torch, dtype)
    try:
        processor = _load_processor(path, trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            path, trust_remote_code=trust_remote_code, dtype=torch_dtype
        )
    except (OSError, ValueError) as error:
        if os.path.exists(os.path.expanduser(path)):
            raise
        # `runs/model` is both a relative path and a Hub id: say that neither was found, not only the Hub's failure.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FileNotFoundError(
            f"`model_name_or_path` {path!r}: no local folder of that name ({os.path.abspath(path)}), and as a Hub "
            f"repo id it could not be loaded ({first_line})."
        ) from error
    if answer_extraction == "auto":
        # Only a stock model answers in sentences; LP-LLM is trained to answer with the plate alone.
        extract = model.config.model_type != "lpllm"
    else:
        extract = answer_extraction == "plate"
    name = Path(path).name if os.path.isdir(path) else path
    logger.info(
        "Loaded %s (%s, %s parameters); answer extraction %s",
        name,
        model.config.model_type,
        f"{model.num_parameters():,}",
        "on" if extract else "off",
    )
    return VisionLanguageRecognizer(
        model,
        processor,
        name=name,
        device=device,
        max_new_tokens=max_new_tokens,
        prompt=prompt,
        extract_plate=extract,
        charset=charset,
        path=path,
        num_views=num_views,
        top_k=top_k,
        region=region,
        constrain=constrain,
        fusion=fusion,
        num_beams=num_beams,
    )


__all__ = [
    "VisionLanguageRecognizer",
    "extract_plate_text",
    "load_vision_language_recognizer",
    "pick_device",
]
