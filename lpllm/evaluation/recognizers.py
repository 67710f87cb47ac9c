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

from transformers import LogitsProcessorList

from modeling_lpllm import DEFAULT_PLATE_CHARSET, DEFAULT_PROMPT, LPLLMProcessor, plate_messages
from modeling_lpllm.plate_views import ViewAveragingLogitsProcessor, check_num_views


logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 16


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
    """Reads plates with a Qwen3-VL-family model (LP-LLM or stock): greedy generation on left-padded batches.

    `num_views` > 1 reads each plate from that many views of its crops (`LPLLMProcessor.plate_views`, their
    next-token log-probabilities averaged); None takes the processor's `num_views` (1 when it has none)."""

    def __init__(
        self,
        model,
        processor,
        name: str,
        device: torch.device,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        prompt: str | None = None,
        extract_plate: bool = False,
        charset: str = DEFAULT_PLATE_CHARSET,
        path: str | None = None,
        num_views: int | None = None,
    ):
        self.model = model.to(device).eval()
        self.processor = processor
        self.name = name
        self.path = path
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        self.extract_plate = extract_plate
        self.charset = charset
        self.num_views = check_num_views(getattr(processor, "num_views", 1) if num_views is None else num_views)
        if self.num_views > 1 and not hasattr(processor, "plate_views"):
            raise ValueError(
                f"num_views={self.num_views} needs an LP-LLM processor with `plate_views`; the processor of {name} "
                "(a stock one, or LP-LLM code saved before views existed) has none. Read it with num_views=1, or "
                "re-save the checkpoint with this package."
            )
        config = model.config
        self.model_type = config.model_type
        self.cmrm_enabled = bool(getattr(config, "cmrm_enabled", False)) and self.model_type == "lpllm"
        if self.model_type == "lpllm":
            self.paradigm = "VLM + CMRM" if self.cmrm_enabled else "VLM (CMRM off)"
        else:
            self.paradigm = "VLM"

    @torch.inference_mode()
    def read(self, batch: list[list], prompts: list[str | None] | None = None) -> list[str]:
        prompts = prompts or [None] * len(batch)
        texts = [
            self.processor.apply_chat_template(
                plate_messages(self.prompt or prompt or DEFAULT_PROMPT, num_images=len(images)),
                add_generation_prompt=True,
                tokenize=False,
            )
            for images, prompt in zip(batch, prompts)
        ]
        views = self.num_views
        if views > 1:  # each sample `views` times in consecutive rows, each time with its frames' next view
            frame_views = [[self.processor.plate_views([frame], views) for frame in images] for images in batch]
            batch = [[frame[view] for frame in frames] for frames in frame_views for view in range(views)]
            texts = [text for text in texts for _ in range(views)]
        flat_images = [image for images in batch for image in images]
        # Left padding keeps every prompt's last token at the end, so batched greedy decoding equals one-by-one.
        inputs = self.processor(
            images=flat_images, text=texts, padding=True, padding_side="left", return_tensors="pt"
        ).to(self.device)
        generation_config = self.model.generation_config
        pad_token_id = generation_config.pad_token_id
        if pad_token_id is None:
            pad_token_id = self.processor.tokenizer.pad_token_id
        logits_processor = LogitsProcessorList([ViewAveragingLogitsProcessor(views)] if views > 1 else [])
        generated = self.model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=self.max_new_tokens,
            pad_token_id=pad_token_id,
            logits_processor=logits_processor,
        )
        # A sample's views all generated the same text: one reading per sample.
        generated = generated[::views, inputs["input_ids"].shape[1] :]
        outputs = self.processor.batch_decode(generated, skip_special_tokens=True)
        outputs = [text.strip() for text in outputs]
        if self.extract_plate:
            outputs = [extract_plate_text(text, self.charset) for text in outputs]
        return outputs

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
            ):
                description[key] = getattr(config, key, None)
            cmrm = getattr(self.model, "cmrm", None)
            description["cmrm_parameters"] = sum(p.numel() for p in cmrm.parameters()) if cmrm is not None else 0
        description["peft"] = bool(getattr(self.model, "peft_config", None))
        description["num_views"] = self.num_views  # where the CTC baselines describe theirs: one place for reports
        description["generation"] = {
            "decoding": "greedy" if self.num_views == 1 else f"greedy over {self.num_views} views",
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


def _load_processor(path: str):
    """AutoProcessor, else LPLLMProcessor (a stock Qwen3-VL processor needs torchvision for its video half)."""
    from transformers import AutoProcessor

    errors = []
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
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
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    prompt: str | None = None,
    answer_extraction: str = "auto",
    charset: str = DEFAULT_PLATE_CHARSET,
    num_views: int | None = None,
) -> VisionLanguageRecognizer:
    """Loads an LP-LLM checkpoint (or Hub id) or a stock Qwen3-VL with its processor."""
    from transformers import AutoModelForImageTextToText

    processor = _load_processor(path)
    if dtype == "auto":
        # Half precision is slow or unsupported on many CPUs; on GPUs the checkpoint's own dtype is right.
        torch_dtype = torch.float32 if device.type == "cpu" else "auto"
    else:
        torch_dtype = getattr(torch, dtype)
    model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True, dtype=torch_dtype)
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
    )


__all__ = [
    "VisionLanguageRecognizer",
    "extract_plate_text",
    "load_vision_language_recognizer",
    "pick_device",
]
