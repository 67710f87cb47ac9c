"""Checks of the TRL and transformers arguments a training run needs, run first thing in `parse_arguments`.

`PlateTrainingArguments.__post_init__` cannot see `SFTConfig`'s fields, and transformers accepts values that only
fail once the model and the data have loaded, deep inside torch or TRL and in their words (a negative learning rate,
a `max_steps` of 2.5 from a recipe, a batch size of 0), or that do something else than asked (`max_steps: 0` trains
a step and writes a model). Each is refused here, before any work, with the field named and what was expected.
Names that cannot be Hub repo ids are local paths, so a missing one is reported as a missing path, not as a Hub
lookup that failed. Paths are taken as given, as every later reader takes them: a `~` in a recipe is not expanded
(the shell expands it on a command line).
"""

import math
import os
from numbers import Integral, Real

from lpllm.evaluation.model_sources import looks_like_hub_repo_id


def _is_integer(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _strategy(value) -> str:
    return getattr(value, "value", value)


def _require(ok: bool, name: str, expected: str, value) -> None:
    if not ok:
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.")


def check_trainer_arguments(training_args) -> None:
    """Refuses `SFTConfig` values that transformers would only reject (or misread) after the model and data load.

    Raises:
        ValueError: naming the first field out of range or of the wrong type and what was expected.
    """
    args = training_args
    _require(_is_number(args.learning_rate) and args.learning_rate >= 0, "learning_rate", "a finite number >= 0",
             args.learning_rate)
    _require(
        _is_integer(args.max_steps) and (args.max_steps >= 1 or args.max_steps == -1),
        "max_steps",
        "an integer >= 1, or -1 to train for `num_train_epochs` (0 would still train a step and write a model)",
        args.max_steps,
    )
    if args.max_steps == -1:
        _require(_is_number(args.num_train_epochs) and args.num_train_epochs > 0, "num_train_epochs",
                 "a positive number (with `max_steps` -1, the epochs are what the run trains for)",
                 args.num_train_epochs)
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(args, name)
        _require(_is_integer(value) and value >= 1, name, "an integer >= 1", value)
    for name in ("warmup_steps", "weight_decay", "max_grad_norm"):
        value = getattr(args, name)
        _require(_is_number(value) and value >= 0, name, "a finite number >= 0", value)
    _require(_is_integer(args.dataloader_num_workers) and args.dataloader_num_workers >= 0, "dataloader_num_workers",
             "an integer >= 0", args.dataloader_num_workers)
    _require(args.max_length is None or (_is_integer(args.max_length) and args.max_length >= 1), "max_length",
             "an integer >= 1, or null for no truncation", args.max_length)
    _require(_is_integer(args.seed) and 0 <= args.seed < 2**32, "seed", "an integer in [0, 2**32) (numpy's seeds are)",
             args.seed)
    for strategy, steps in (("save_strategy", "save_steps"), ("eval_strategy", "eval_steps")):
        if _strategy(getattr(args, strategy)) == "steps" and getattr(args, steps) is not None:
            value = getattr(args, steps)
            # A fraction below 1 is a share of the run's steps; 0 or less would save or evaluate never, in silence.
            _require(_is_number(value) and value > 0, steps, f"a positive number of steps with `{strategy}: steps`",
                     value)


def check_lora_arguments(model_args) -> None:
    """Refuses `ModelConfig` LoRA values PEFT would only reject once the model has loaded; for runs that add LoRA.

    Raises:
        ValueError: naming the field and what was expected.
    """
    _require(_is_integer(model_args.lora_r) and model_args.lora_r >= 1, "lora_r", "an integer >= 1", model_args.lora_r)
    _require(_is_number(model_args.lora_alpha) and model_args.lora_alpha > 0, "lora_alpha", "a positive number",
             model_args.lora_alpha)
    _require(_is_number(model_args.lora_dropout) and 0 <= model_args.lora_dropout < 1, "lora_dropout",
             "a probability in [0, 1)", model_args.lora_dropout)


def is_local_path(name: str) -> bool:
    """Whether `name` is a local path: it exists, or it cannot be a Hub repo id (`./data`, `/data/plates`,
    `~/x`, `a/b/c`). A name like `data/plates` that could be either and does not exist is left to the Hub."""
    return os.path.exists(name) or not looks_like_hub_repo_id(name)


def check_local_source(name: str, field: str, what: str) -> None:
    """Refuses a `field` value that is a local path but does not exist, before anything asks the Hub for it.

    Args:
        name: The value given.
        field: The argument, e.g. `"dataset_name"`, for the message.
        what: What the path should be, e.g. `"a dataset folder written by dataset_scripts.build"`.
    """
    if is_local_path(name) and not os.path.exists(name):
        raise ValueError(
            f"--{field} {name}: no such file or folder (it is a local path, not a Hub repo id); expected {what}."
        )
