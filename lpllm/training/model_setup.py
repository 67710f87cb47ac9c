"""Builds the model and processor a training run starts from, and decides what trains.

Three starts:
- a from-scratch config (a `.json` file): random weights (a PP-OCR vision encoder may start from converted pretrained
  weights, `--vision_weights`, and keep their CTC head, `--ppocr_ctc_features`), the offline character-level
  processor, everything trains (`--freeze_vision_encoder` keeps that encoder as it was given);
- a stock Qwen3-VL checkpoint: CMRM newly initialised, LoRA and/or CMRM train as the ablation says;
- a saved LP-LLM checkpoint: the same, continuing from its CMRM.
"""

import json

import torch
from peft import LoraConfig
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers.utils import logging

from modeling_lpllm import (
    DEFAULT_PLATE_CHARSET,
    LPLLMConfig,
    LPLLMProcessor,
    Qwen3VLForPlateRecognition,
    build_offline_processor,
)
from modeling_lpllm.configuration_lpllm import PPOCR_CTC_NUM_CLASSES
from modeling_lpllm.processing_lpllm import PLATE_MAX_PIXELS, PLATE_MIN_PIXELS

from .arguments import LANGUAGE_MODEL_LORA_TARGETS, Ablation, PlateTrainingArguments
from .ppocr_conversion import load_dictionary


logger = logging.get_logger(__name__)


def is_from_scratch(model_name_or_path: str) -> bool:
    return model_name_or_path.endswith(".json")


def build_from_scratch(config_file: str, args: PlateTrainingArguments):
    """A randomly initialised LP-LLM of the architecture in `config_file`, with the offline processor."""
    try:
        with open(config_file, encoding="utf-8") as handle:
            config_dict = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read the model config {config_file!r}: {error}") from error
    if not isinstance(config_dict.get("text_config"), dict) or not isinstance(config_dict.get("vision_config"), dict):
        raise ValueError(f"{config_file}: a from-scratch config needs `text_config` and `vision_config` objects.")
    vision = config_dict["vision_config"]
    charset = args.charset or DEFAULT_PLATE_CHARSET
    processor = build_offline_processor(
        charset=charset,
        min_pixels=args.min_pixels or PLATE_MIN_PIXELS,
        max_pixels=args.max_pixels or PLATE_MAX_PIXELS,
        # The image processor cuts the patches the vision tower embeds: the two must agree.
        patch_size=vision.get("patch_size", 16),
        merge_size=vision.get("spatial_merge_size", 2),
        # A fixed size also sets the pixel budget to its area, so the image processor never resizes it again.
        image_size=args.image_size,
    )
    set_plate_options(processor, args)
    tokenizer = processor.tokenizer
    # The vocabulary and special token ids come from the processor, never from the file, so they always agree.
    config_dict["text_config"] = {
        **config_dict["text_config"],
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
    }
    config_dict.update(processor.special_token_ids())
    config_dict.update(args.model_overrides())
    config_dict.pop("model_type", None)
    if args.ppocr_ctc_features:
        if config_dict.get("ppocr_ctc_classes") is not None:
            raise ValueError(
                f"{config_file} sets `ppocr_ctc_classes`, which `ppocr_ctc_features` builds from the charset: drop "
                "one of the two."
            )
        characters = load_dictionary(args.vision_weights)
        if len(characters) + 2 != PPOCR_CTC_NUM_CLASSES:
            raise ValueError(
                f"`vision_weights` {args.vision_weights}: a dictionary of {len(characters)} characters, i.e. "
                f"{len(characters) + 2} CTC classes with the blank and the space; PP-OCRv6 small's head has "
                f"{PPOCR_CTC_NUM_CLASSES}."
            )
        config_dict["ppocr_ctc_classes"] = ppocr_ctc_classes(characters, charset)
    config = LPLLMConfig(**config_dict)
    model = Qwen3VLForPlateRecognition(config)
    if args.vision_weights is not None:
        load_vision_weights(model, args.vision_weights)
    return model, processor


def ppocr_ctc_classes(characters: list[str], charset: str) -> list[int]:
    """The classes of PP-OCR's CTC head that `ppocr_ctc_features` keeps: the blank (0), then the class of every
    character of `charset` the dictionary `characters` has, in `charset`'s order (class `i + 1` is `characters[i]`,
    as `ctc_greedy_decode` reads them).
    """
    classes = {}
    for index, character in enumerate(characters):
        classes.setdefault(character, index + 1)
    plate_characters = dict.fromkeys(charset)
    missing = [character for character in plate_characters if character not in classes]
    if missing:
        logger.warning(
            f"PP-OCR's dictionary lacks {len(missing)} charset character(s), which get no CTC features: {''.join(missing)}"
        )
    return [0] + [classes[character] for character in plate_characters if character in classes]


def load_vision_weights(model, path: str) -> None:
    """Sets the PP-OCR vision encoder's weights (backbone and neck) from a recognizer file of `lpllm convert-ppocr`,
    and its CTC head's where the model keeps the head (`ppocr_ctc_classes`); elsewhere the head is left out.

    Raises:
        ValueError: naming `path`, when the model's encoder is not PP-OCR's or the file does not hold its weights.
    """
    if model.config.vision_encoder != "ppocr":
        raise ValueError(
            f"`vision_weights` {path}: the model's vision encoder is {model.config.vision_encoder!r}; PP-OCR weights "
            "need `vision_encoder: ppocr` in the model config (recipes/models/lpllm_ppocr.json)."
        )
    try:
        state = load_file(path)
    except (OSError, SafetensorError) as error:
        raise ValueError(f"`vision_weights` {path}: not a readable .safetensors file ({error}).") from error
    visual = model.model.visual
    # Named as in the file, the recognizer's state dict.
    modules = {"encoder": visual.encoder} if visual.head is None else {"encoder": visual.encoder, "head": visual.head}
    expected = {
        f"{prefix}.{name}": tensor for prefix, module in modules.items() for name, tensor in module.state_dict().items()
    }
    missing = sorted(set(expected) - set(state))
    wrong_shape = sorted(name for name in expected.keys() & state.keys() if expected[name].shape != state[name].shape)
    if missing or wrong_shape:
        raise ValueError(
            f"`vision_weights` {path} does not hold the PP-OCRv6 small {' and '.join(modules)} written by `lpllm "
            f"convert-ppocr`: {len(missing)} weights missing (e.g. {missing[:3]}), {len(wrong_shape)} of another "
            f"shape (e.g. {wrong_shape[:3]})."
        )
    for prefix, module in modules.items():
        module.load_state_dict({name: state[f"{prefix}.{name}"] for name in module.state_dict()})
    logger.warning(f"Vision encoder: PP-OCR weights from {path} ({' and '.join(modules)})")


def load_model_and_processor(
    model_name_or_path: str,
    args: PlateTrainingArguments,
    dtype: str | None = None,
    attn_implementation: str | None = None,
):
    """Returns `(model, processor)` for the run, with generation settings for plates. `attn_implementation`
    (`"eager"`, `"sdpa"`, ...; None keeps transformers' choice) applies to the language model and the vision tower."""
    if args.ppocr_ctc_features and not is_from_scratch(model_name_or_path):
        raise ValueError(
            f"`ppocr_ctc_features` sets the CTC classes of a from-scratch config (.json); {model_name_or_path} is a "
            "checkpoint, whose config keeps its own `ppocr_ctc_classes`. Drop `ppocr_ctc_features`."
        )
    if args.vision_weights is not None and not is_from_scratch(model_name_or_path):
        raise ValueError(
            f"`vision_weights` starts the PP-OCR encoder of a from-scratch config (.json); {model_name_or_path} is a "
            "checkpoint, which brings its own encoder weights. Drop `vision_weights`."
        )
    if is_from_scratch(model_name_or_path):
        if args.ablation is not None:
            raise ValueError(
                "`--ablation` selects what trains in a pretrained model; a from-scratch config trains everything. "
                "Drop `--ablation` or start from a checkpoint."
            )
        model, processor = build_from_scratch(model_name_or_path, args)
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
    else:
        overrides = args.model_overrides()
        if args.ablation_spec is not None:
            overrides["cmrm_enabled"] = args.ablation_spec.cmrm
        torch_dtype = getattr(torch, dtype) if dtype not in (None, "auto") else "auto"
        model = Qwen3VLForPlateRecognition.from_pretrained(
            model_name_or_path, dtype=torch_dtype, attn_implementation=attn_implementation, **overrides
        )
        # Reads an LP-LLM checkpoint's processor and a stock Qwen3-VL one alike (tokenizer, chat template, image
        # processor), without the video processor that would need torchvision.
        processor = LPLLMProcessor.from_pretrained(model_name_or_path)
        if args.min_pixels or args.max_pixels:
            size = dict(processor.image_processor.size)
            size["shortest_edge"] = args.min_pixels or size["shortest_edge"]
            size["longest_edge"] = args.max_pixels or size["longest_edge"]
            processor.image_processor.size = size
        set_plate_options(processor, args)
    check_processor_matches_model(processor, model.config, model_name_or_path)
    configure_generation(model, processor, args.max_new_tokens, args.generation_num_beams)
    return model, processor


def set_plate_options(processor, args: PlateTrainingArguments) -> None:
    """The run's plate options on the processor, which saves them with the model, so inference prepares crops as
    training did; an option left unset keeps the processor's value."""
    processor.set_plate_options(
        image_size=args.image_size,
        deskew_max_degrees=args.deskew_max_degrees,
        rectify_plate=args.rectify_plate,
        num_views=args.num_views,
    )


def check_processor_matches_model(processor, config, where: str) -> None:
    """Raises a `ValueError` when the processor's patches, special tokens or (for a PP-OCR encoder) normalisation are
    not the model's."""
    image_processor, vision = processor.image_processor, config.vision_config
    if config.vision_encoder == "ppocr" and not (
        image_processor.do_rescale
        and image_processor.do_normalize
        and abs(image_processor.rescale_factor - 1 / 255) < 1e-9
        and list(image_processor.image_mean) == list(image_processor.image_std) == [0.5, 0.5, 0.5]
    ):
        raise ValueError(
            f"{where}: the PP-OCR vision encoder reads pixels as (value / 255 - 0.5) / 0.5; the processor normalises "
            f"with mean {image_processor.image_mean} and std {image_processor.image_std}."
        )
    for name, model_value in (("patch_size", vision.patch_size), ("merge_size", vision.spatial_merge_size)):
        if getattr(image_processor, name) != model_value:
            raise ValueError(
                f"{where}: the processor's {name} is {getattr(image_processor, name)} but the vision tower's is "
                f"{model_value}; save the matching processor beside the model."
            )
    for name, token_id in processor.special_token_ids().items():
        if getattr(config, name) != token_id:
            raise ValueError(f"{where}: the processor's {name} is {token_id} but the model's is {getattr(config, name)}.")


def configure_generation(model, processor, max_new_tokens: int, num_beams: int | None = None) -> None:
    """Greedy decoding (or beam search with `num_beams`; None keeps the model's) that stops at the end of the answer,
    saved with the model for the pipeline."""
    tokenizer = processor.tokenizer
    end_ids = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in end_ids:
        end_ids.append(tokenizer.pad_token_id)
    generation_config = model.generation_config
    generation_config.eos_token_id = end_ids
    generation_config.pad_token_id = tokenizer.pad_token_id
    generation_config.max_new_tokens = max_new_tokens
    if num_beams is not None:
        generation_config.num_beams = num_beams
    generation_config.do_sample = False
    for sampling_only in ("temperature", "top_p", "top_k"):
        setattr(generation_config, sampling_only, None)


def lora_config(
    model_args, ablation: Ablation | None, train_in_full: list[str] | None = None, tied_embeddings: bool = False
) -> LoraConfig | None:
    """LoRA on the language model's attention and MLP projections; CMRM trains in full and is saved with the
    adapter when the ablation trains it, and so do the modules of `train_in_full` (the embeddings and head of a
    grown vocabulary, `vocabulary.embedding_modules`), a head tied to the embeddings (`tied_embeddings`) staying
    tied to their trained copy."""
    if ablation is None or not ablation.lora:
        return None
    modules_to_save = (["cmrm"] if ablation.cmrm else []) + list(train_in_full or [])
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=model_args.lora_target_modules or LANGUAGE_MODEL_LORA_TARGETS,
        modules_to_save=modules_to_save or None,
        ensure_weight_tying=bool(train_in_full) and tied_embeddings,
        task_type="CAUSAL_LM",
        bias="none",
    )


def set_trainable_parameters(model, ablation: Ablation | None, freeze_vision_encoder: bool = False) -> None:
    """Everything trains from scratch; with an ablation only CMRM (C, D) trains here, and LoRA adds its adapters
    (B, D) when the trainer wraps the model. `freeze_vision_encoder` keeps a PP-OCR encoder's backbone and neck, and
    its CTC head where the model keeps one (`ppocr_ctc_classes`)."""
    if freeze_vision_encoder and model.config.vision_encoder != "ppocr":
        raise ValueError(
            "`freeze_vision_encoder` keeps a pretrained PP-OCR encoder as it is; this model's vision encoder is "
            f"{model.config.vision_encoder!r}."
        )
    if ablation is None:
        model.requires_grad_(True)
        if freeze_vision_encoder:
            visual = model.model.visual
            visual.encoder.requires_grad_(False)
            if visual.head is not None:
                visual.head.requires_grad_(False)
        return
    model.requires_grad_(False)
    if ablation.cmrm and model.cmrm is not None:
        model.cmrm.requires_grad_(True)


def describe_trainable(model) -> str:
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    total = sum(parameter.numel() for parameter in model.parameters())
    return f"{trainable:,} of {total:,} parameters train ({100 * trainable / max(total, 1):.2f}%)"
