"""Writes the run's final model: merged weights, processor, generation config and a filled-in model card, moved
into `OUT/final` only once complete."""

import json
import shutil
from pathlib import Path

import jinja2
from peft import PeftModel
from transformers.utils import logging


logger = logging.get_logger(__name__)


def merged_model(model):
    """The model with LoRA folded into its weights (and CMRM copied back from PEFT's `modules_to_save`)."""
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def render_model_card(template_path: str | Path, fields: dict) -> str:
    try:
        template_text = Path(template_path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"Cannot read the model card template {str(template_path)!r}: {error}") from error
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return environment.from_string(template_text).render(**fields)


def replace_directory(staging: Path, destination: Path) -> None:
    """Moves the complete `staging` folder to `destination`, replacing a previous run's output only at the end."""
    previous = destination.with_name(destination.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    if destination.exists():
        destination.rename(previous)
    staging.rename(destination)
    if previous.exists():
        shutil.rmtree(previous)


def write_model_card(directory: str | Path, card_fields: dict, card_template: str | Path,
                     evaluations: list[dict]) -> None:
    """Writes the model card (`README.md`) and `eval_results.json` into `directory`; `evaluations` are
    `{name, num_samples, accuracy, cer}`, the first one the card's headline."""
    directory = Path(directory)
    headline = evaluations[0] if evaluations else None
    card = render_model_card(card_template, {**card_fields, "evaluations": evaluations, "metrics": headline})
    (directory / "eval_results.json").write_text(
        json.dumps(evaluations, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    (directory / "README.md").write_text(card, encoding="utf-8")


def export_final_model(model, processor, output_dir: str | Path, card_fields: dict, card_template: str | Path,
                       evaluations: list[dict]) -> Path:
    """Saves `model` (merged) and `processor` to `output_dir/final` with a model card and `eval_results.json`."""
    destination = Path(output_dir) / "final"
    staging = Path(output_dir) / ".final.staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    final_model = merged_model(model)
    final_model.save_pretrained(staging)
    processor.save_pretrained(staging)
    write_model_card(staging, card_fields, card_template, evaluations)
    replace_directory(staging, destination)
    logger.info(f"Final model written to {destination}")
    return destination
