"""Grows the vocabulary of the model a run starts from to the characters its training data writes: a new region's
alphabet (Arabic letters, Eastern Arabic digits, Cyrillic, Hangul, ...) fine-tuned into a saved model.

The character-level tokenizer of the from-scratch models knows its charset and printable ASCII, and would read and
write any other character as `<unk>`. Each missing character becomes a new token at the end of the vocabulary
(`modeling_lpllm.add_plate_characters`), and the input embeddings and the output head, tied or not, get one new row
for it, drawn from the old rows' mean and covariance (transformers' `resize_token_embeddings(mean_resizing=True)`):
a new token starts as a typical one, so its logit is neither far above nor far below the others', and old ids and
rows are unchanged. The processor saved with the model carries the new tokens. Qwen3-VL's byte-level tokenizer
spells any character: nothing grows there.

With LoRA (ablations B and D) the embeddings and the head train in full beside the adapter (PEFT's
`modules_to_save`), so the new rows train; the adapter saves them and the merged model holds them.
"""

from transformers.utils import logging

from modeling_lpllm import DEFAULT_PLATE_CHARSET, add_plate_characters
from modeling_lpllm.tokenization_lpllm import missing_characters

from .arguments import Ablation


logger = logging.get_logger(__name__)


def conversation_characters(split, columns: tuple[str, ...] = ("prompt", "completion")) -> str:
    """Every character of the messages in `columns` of `split` (TRL conversational rows: `prompt` and `completion`
    message lists), in order of first appearance. Reads those columns only, never the images."""
    seen = {}
    for column in columns:
        for messages in split[column]:
            for message in messages:
                content = message["content"]
                parts = [content] if isinstance(content, str) else [
                    part.get("text") or "" for part in content if part.get("type") == "text"
                ]
                for text in parts:
                    seen.update(dict.fromkeys(text))
    return "".join(seen)


def evaluation_charset(split) -> str:
    """The charset of a run's final evaluation: eval.py's default (`DEFAULT_PLATE_CHARSET`) and, after it, every
    character the answers of `split` write beyond it (a new region's alphabet), so that the evaluation counts the
    plates of the region the run trained on and equals eval.py's with its default charset otherwise."""
    taught = conversation_characters(split, columns=("completion",))
    return DEFAULT_PLATE_CHARSET + "".join(char for char in taught if char not in DEFAULT_PLATE_CHARSET)


def grow_vocabulary(model, processor, characters: str, ablation: Ablation | None = None) -> list[int]:
    """Adds the characters of `characters` that `processor.tokenizer` cannot spell as new tokens and gives `model`
    an input-embedding and an output-head row for each (see the module docstring).

    Args:
        model: the model the run trains (before any PEFT wrapping).
        processor: its processor; its tokenizer is changed in place.
        characters: what the training data writes (`conversation_characters`).
        ablation: what trains. When nothing trains (`A`), nothing is added: the model could not learn the new rows.

    Returns:
        The new tokens' ids (empty when nothing was added).

    Raises:
        ValueError: for ablation `C` (CMRM alone trains) when characters are missing: their rows could never train.
    """
    tokenizer = processor.tokenizer
    missing = missing_characters(tokenizer, characters)
    if not missing:
        return []
    if ablation is not None and not ablation.trains:
        logger.warning(
            f"The training data writes {len(missing)} character(s) the tokenizer lacks ({''.join(missing)!r}); "
            f"ablation {ablation.name} trains nothing, so they are not added and stay unreadable."
        )
        return []
    if ablation is not None and not ablation.lora:
        raise ValueError(
            f"The training data writes {len(missing)} character(s) the model's tokenizer lacks ({''.join(missing)!r}), "
            f"and ablation {ablation.name} trains CMRM alone, so their new embedding rows would never train. Use "
            "ablation D (LoRA + CMRM: the new rows train too) or no ablation (full fine-tuning)."
        )
    num_old_tokens = len(tokenizer)
    added = add_plate_characters(tokenizer, characters)
    new_ids = tokenizer.convert_tokens_to_ids(added)
    # Never shrink: a checkpoint may keep more embedding rows than its tokenizer has tokens.
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    logger.warning(
        f"Added {len(added)} character(s) the tokenizer lacked, as token ids {num_old_tokens}-{len(tokenizer) - 1}, "
        f"with new embedding and output-head rows: {''.join(added)!r}"
    )
    return new_ids


def embedding_modules(model, token_ids: list[int]) -> list[str]:
    """The modules LoRA must train in full so that the new tokens' rows train: the input embeddings, and the output
    head when it is not tied to them. Empty when no token was added.

    PEFT's `trainable_token_indices` would train the new rows alone, but TRL's fused LM head reads the head's `weight`
    and `bias` directly, and PEFT's trainable-tokens wrapper of a head has no `bias` (TRL 1.16, PEFT 0.21)."""
    if not token_ids:
        return []
    names = {id(module): name for name, module in model.named_modules()}
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    modules = [names[id(embeddings)]]
    if head is not None and head.weight is not embeddings.weight:
        modules.append(names[id(head)])
    return modules


__all__ = ["conversation_characters", "evaluation_charset", "embedding_modules", "grow_vocabulary"]
