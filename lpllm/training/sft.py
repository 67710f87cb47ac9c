"""Supervised fine-tuning of LP-LLM (Qwen3-VL + CMRM) with TRL's `SFTTrainer` and PEFT LoRA: `main` behind
`lpllm train` and `python train_sft.py` (launch commands in train_sft.py's docstring and the README).
"""

import os
import sys
from pathlib import Path

from trl import ModelConfig, SFTConfig, TrlParser
from transformers import set_seed
from transformers.utils import logging

from .arguments import PlateScriptArguments, PlateTrainingArguments
from .augmentation import plate_augmentation
from .callbacks import AugmentationWarmupCallback, TimeBudgetCallback
from .clock import TrainingClock
from .collator import PlateCollator
from .data import DecodedPlateSplit, load_training_sources
from .export import export_final_model, write_model_card
from .final_evaluation import calibrate_saved_model, final_evaluations
from .mixture import TrainingMixture
from .model_setup import (
    describe_trainable,
    is_from_scratch,
    load_model_and_processor,
    lora_config,
    set_trainable_parameters,
)
from .optimizers import MUON_PARTNERS
from .precision import apply_bf16_if_native, has_native_bf16
from .preflight import check_local_source, check_lora_arguments, check_trainer_arguments
from .run_folder import check_output_dir, clear_earlier_run
from .trainer import PlateSFTTrainer
from .vocabulary import conversation_characters, embedding_modules, evaluation_charset, grow_vocabulary


logger = logging.get_logger(__name__)


def parse_arguments(argv=None):
    parser = TrlParser((PlateScriptArguments, SFTConfig, ModelConfig, PlateTrainingArguments))
    script_args, training_args, model_args, plate_args = parser.parse_args_and_config(argv)
    check_trainer_arguments(training_args)
    if plate_args.ablation_spec is not None and plate_args.ablation_spec.lora:
        check_lora_arguments(model_args)
    if not script_args.dataset_name:
        raise ValueError("--dataset_name is required: a directory written by `python -m dataset_scripts.build`.")
    for name in script_args.dataset_name:
        check_local_source(
            name, "dataset_name", "a dataset folder written by `python -m dataset_scripts.build`, a crops folder or "
            "a label file"
        )
    if not model_args.model_name_or_path:
        raise ValueError(
            "--model_name_or_path is required: a Qwen3-VL or LP-LLM checkpoint, or a model config .json to start "
            "from scratch."
        )
    check_local_source(
        model_args.model_name_or_path,
        "model_name_or_path",
        "a Qwen3-VL or LP-LLM checkpoint folder, or a model config .json to start from scratch",
    )
    check_output_dir(
        training_args.output_dir, resume_checkpoint(training_args.resume_from_checkpoint),
        plate_args.overwrite_output_dir,
    )
    if is_from_scratch(model_args.model_name_or_path) and not os.path.isfile(model_args.model_name_or_path):
        raise ValueError(f"--model_name_or_path {model_args.model_name_or_path}: no such model config file.")
    if not os.path.isfile(plate_args.model_card_template):
        raise ValueError(f"--model_card_template {plate_args.model_card_template}: no such file.")
    if plate_args.cosine_over_budget and scheduler_name(training_args) != "cosine":
        raise ValueError(
            f"`cosine_over_budget` needs `lr_scheduler_type: cosine`, got {scheduler_name(training_args)!r}."
        )
    if plate_args.muon and optimizer_name(training_args) not in MUON_PARTNERS:
        raise ValueError(
            f"`muon` runs AdamW beside Muon: it needs `optim` {' or '.join(MUON_PARTNERS)}, got "
            f"{optimizer_name(training_args)!r}."
        )
    if plate_args.bf16_if_native:
        apply_bf16_if_native(training_args, has_native_bf16(training_args.device))
    return script_args, training_args, model_args, plate_args


def scheduler_name(training_args) -> str:
    return getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)


def optimizer_name(training_args) -> str:
    return getattr(training_args.optim, "value", training_args.optim)


def data_seed(training_args) -> int:
    """The seed of the training data's order, as the Trainer's own sampler takes it."""
    return training_args.seed if training_args.data_seed is None else training_args.data_seed


def resume_checkpoint(value):
    """`--resume_from_checkpoint` as the Trainer wants it: a path, True for the last checkpoint, or None."""
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    return True if str(value).lower() in ("true", "last") else value


def main(argv=None):
    script_args, training_args, model_args, plate_args = parse_arguments(argv)
    ablation = plate_args.ablation_spec

    with training_args.main_process_first(desc="loading the training sources"):  # crops are built once
        sources = load_training_sources(
            script_args.dataset_name, script_args.dataset_train_split, script_args.dataset_cache_dir,
            training_args.dataloader_num_workers,
        )
    mixture = TrainingMixture(sources, script_args.dataset_train_split, script_args.dataset_weights)
    logger.warning(f"Training on {mixture.describe()}")
    train_dataset = mixture.train_dataset
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = mixture.eval_dataset(plate_args.dataset_eval_split)
    final_sources = mixture.evaluated_sources(plate_args.final_eval_split)

    set_seed(training_args.seed)  # from-scratch and newly added CMRM weights are drawn from this seed
    model, processor = load_model_and_processor(
        model_args.model_name_or_path, plate_args, model_args.dtype, model_args.attn_implementation
    )
    # Characters the training rows write and the tokenizer lacks become tokens, with new embedding and head rows.
    new_token_ids = grow_vocabulary(model, processor, conversation_characters(train_dataset), ablation)
    set_trainable_parameters(model, ablation, plate_args.freeze_vision_encoder)
    peft_config = lora_config(
        model_args, ablation, embedding_modules(model, new_token_ids), model.config.tie_word_embeddings
    )
    collator = PlateCollator(processor=processor, max_length=training_args.max_length, completion_only_loss=True)
    generation_eval_dataset = None
    if eval_dataset is not None and plate_args.generation_eval_samples > 0:
        generation_eval_dataset = eval_dataset.select(range(min(plate_args.generation_eval_samples, len(eval_dataset))))
    # Evaluations along the way do not count toward the training budget (one clock for the budget, the wall-clock
    # schedule and the logged minutes).
    training_clock = TrainingClock()
    callbacks = None
    if plate_args.max_train_minutes:
        callbacks = [TimeBudgetCallback(plate_args.max_train_minutes, clock=training_clock)]
    decoded_train_dataset = None
    if plate_args.preload_images and (ablation is None or ablation.trains):
        augment = None
        if plate_args.augments:
            augment = plate_augmentation(
                plate_args.augment_quad_jitter, plate_args.augment_shadow, processor.image_size
            )
        decoded_train_dataset = DecodedPlateSplit(train_dataset, processor.prepare_images, augment=augment)
        if augment is not None and plate_args.augment_warmup_epochs:
            callbacks = [*(callbacks or []), AugmentationWarmupCallback(augment, plate_args.augment_warmup_epochs)]

    if plate_args.overwrite_output_dir and training_args.should_save:
        clear_earlier_run(training_args.output_dir)
    trainer = PlateSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        data_collator=collator,
        peft_config=peft_config,
        callbacks=callbacks,
        generation_eval_dataset=generation_eval_dataset,
        generation_batch_size=plate_args.generation_batch_size,
        max_new_tokens=plate_args.max_new_tokens,
        lr_budget_minutes=plate_args.max_train_minutes if plate_args.cosine_over_budget else None,
        muon=plate_args.muon,
        muon_newton_schulz_steps=plate_args.muon_newton_schulz_steps,
        decoded_train_dataset=decoded_train_dataset,
        train_sampler=mixture.sampler(data_seed(training_args)),
        training_clock=training_clock,
    )
    logger.warning(
        f"Training: {describe_trainable(trainer.model)}, on {training_args.world_size} process(es) "
        f"({training_args.device})"
    )

    if ablation is None or ablation.trains:
        trainer.train(resume_from_checkpoint=resume_checkpoint(training_args.resume_from_checkpoint))
        trainer.save_model()  # the adapter (with CMRM) for LoRA runs, the whole model otherwise
        trainer.save_state()  # trainer_state.json: the logged loss and evaluation curve, with wall-clock minutes
    # The rest runs on the main process alone. Every rank leaves the process group first: a rank that exits while
    # the group is alive can abort (gloo's threads) and take the launcher, and the main process's work, down with it.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    if not trainer.is_world_process_zero():
        return None

    mixture.save(training_args.output_dir, data_seed(training_args))
    fields = card_fields(script_args, training_args, model_args, plate_args, trainer, mixture)
    destination = export_final_model(
        trainer.model, processor, training_args.output_dir, card_fields=fields,
        card_template=plate_args.model_card_template, evaluations=[],
    )
    calibration = None
    if plate_args.calibrate_scores:
        calibration = calibrate_saved_model(
            destination, mixture.evaluated_sources(plate_args.dataset_eval_split), plate_args.dataset_eval_split,
            training_args.device, evaluation_charset(train_dataset), plate_args.calibration_samples,
        )
    # The saved model is evaluated as eval.py evaluates it, into reports eval.py --compare reuses as they are.
    evaluations = final_evaluations(
        destination, training_args.output_dir, final_sources, plate_args.final_eval_split, plate_args.realdata_dir,
        training_args.device, command=["train_sft.py", *(sys.argv[1:] if argv is None else argv)],
        name_by_source=len(sources) > 1,
        charset=evaluation_charset(train_dataset),
    )
    if evaluations or calibration:
        write_model_card(destination, {**fields, "calibration": calibration}, plate_args.model_card_template,
                         evaluations)
    for evaluation in evaluations:
        logger.warning(
            f"{evaluation['name']}: exact match {100 * evaluation['accuracy']:.2f}%, CER {evaluation['cer']:.4f} "
            f"({evaluation['num_samples']} plates)"
        )
    if training_args.push_to_hub:
        from huggingface_hub import HfApi

        repo_id = training_args.hub_model_id or Path(training_args.output_dir).name
        api = HfApi(token=training_args.hub_token)
        api.create_repo(repo_id, private=training_args.hub_private_repo, exist_ok=True)
        api.upload_folder(folder_path=str(destination), repo_id=repo_id, commit_message="LP-LLM final model")
    return destination


def describe_augmentation(plate_args) -> str:
    parts = []
    if plate_args.augment_quad_jitter:
        parts.append("random corner jitter of each crop, up to {:g} of its width and {:g} of its height".format(
            *plate_args.augment_quad_jitter
        ))
    if plate_args.augment_shadow:
        parts.append("a random cast shadow darkening by up to {1:g} on a fraction {0:g} of the crops".format(
            *plate_args.augment_shadow
        ))
    if parts and plate_args.augment_warmup_epochs:
        parts.append(f"strength ramped from 0 (first epoch) to full at epoch {plate_args.augment_warmup_epochs}")
    return "; ".join(parts) or "none"


def describe_vision_encoder(config, plate_args, from_scratch: bool) -> str:
    if config.vision_encoder != "ppocr":
        return "Qwen3-VL's"
    if plate_args.vision_weights:
        start = f"started from {plate_args.vision_weights}"
    else:
        start = "started from random weights" if from_scratch else "the checkpoint's"
    frozen = ", frozen" if plate_args.freeze_vision_encoder else ""
    head = (
        f", with its CTC head's log-probabilities of {len(config.ppocr_ctc_classes)} classes as extra features"
        if config.ppocr_ctc_classes
        else ""
    )
    return f"PP-OCRv6 small's backbone and neck (beyond the paper), {start}{frozen}{head}"


def card_fields(script_args, training_args, model_args, plate_args, trainer, mixture) -> dict:
    model = trainer.model
    config = model.config
    from_scratch = is_from_scratch(model_args.model_name_or_path)
    ablation = plate_args.ablation_spec
    cmrm = (
        f"K={config.cmrm_num_slots} slots, L={config.cmrm_num_layers} layers, {config.cmrm_num_heads} heads, "
        f"alpha={config.cmrm_alpha}{' (learnable)' if config.cmrm_learnable_alpha else ''}"
        if config.cmrm_enabled else "off"
    )
    recipe = {
        "ablation": f"{ablation.name}: {ablation.description}" if ablation else "none (all parameters train)",
        "learning rate": training_args.learning_rate,
        "schedule": scheduler_name(training_args)
        + (f" over the {plate_args.max_train_minutes:g}-minute budget" if plate_args.cosine_over_budget else "")
        + f", warm-up {training_args.warmup_steps or training_args.warmup_ratio}",
        "optimizer": (
            f"Muon on the linear layers' weight matrices ({plate_args.muon_newton_schulz_steps} Newton-Schulz steps), "
            f"{optimizer_name(training_args)} on the rest (beyond the paper)"
            if plate_args.muon
            else optimizer_name(training_args)
        ),
        "precision": (
            "bfloat16 autocast" if training_args.bf16 else "float16 autocast" if training_args.fp16 else "float32"
        ),
        "epochs / max steps": f"{training_args.num_train_epochs} / {training_args.max_steps}",
        "batch size per device": training_args.per_device_train_batch_size,
        "steps trained": trainer.state.global_step,
        "images": plate_args.describe_image_size(),
        "vision encoder": describe_vision_encoder(config, plate_args, from_scratch),
        "augmentation": describe_augmentation(plate_args),
    }
    num_views = getattr(trainer.processing_class, "num_views", 1)
    if num_views > 1:
        recipe["reading (beyond the paper)"] = (
            f"each plate read from {num_views} views of its crop (the crop and {num_views - 1} fixed corner jitters, "
            "next-token log-probabilities averaged), at the evaluations and by default in the pipeline"
        )
    if ablation and ablation.lora:
        recipe["LoRA"] = f"r={model_args.lora_r}, alpha={model_args.lora_alpha}, language-model attention + MLP"
    return {
        "model_name": Path(training_args.hub_model_id or training_args.output_dir).name,
        "repo_or_path": training_args.hub_model_id or str(Path(training_args.output_dir) / "final"),
        "base_model": None if from_scratch else model_args.model_name_or_path,
        # The card's metadata names a Hub dataset only; local folders are described in the text.
        "dataset_name": next((name for name in script_args.dataset_name if not os.path.exists(name)), None),
        "eval_split": plate_args.final_eval_split,
        "start_description": (
            f"trained from scratch (architecture {model_args.model_name_or_path}, character-level tokenizer)"
            if from_scratch else f"fine-tuned from {model_args.model_name_or_path}"
        ),
        "trainable_description": describe_trainable(model),
        "cmrm_description": cmrm,
        "data_description": (
            f"`{script_args.dataset_name[0]}`, split `{script_args.dataset_train_split}` "
            f"({len(trainer.train_dataset)} samples)."
            if len(mixture.sources) == 1 else
            f"split `{script_args.dataset_train_split}` of {mixture.describe()}, {mixture.sampling}."
        ),
        "recipe": recipe,
        "calibration": None,  # the score calibration, filled in once it is fitted on the saved model
    }


if __name__ == "__main__":
    main()
