"""Batches plate conversations for SFT: TRL's vision-language collator, plus what plates need on top of it."""

import copy
import json
from dataclasses import dataclass, field

import torch
from transformers import BatchFeature
from trl.data_utils import apply_chat_template, is_conversational, prepare_multimodal_messages
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling
from trl.trainer.utils import flush_left


def completion_text(completion) -> str:
    """The plate text of a TRL conversational completion (`[{"role": "assistant", "content": ...}]`)."""
    content = completion[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content if part.get("type") == "text")


@dataclass
class PlateCollator(DataCollatorForVisionLanguageModeling):
    """TRL's prompt-completion collator for images (left-padded prompts, loss on the completion only), which also:

    - leaves the template's newline after the final `<|im_end|>` out of the loss, so only the plate and its end
      token are supervised;
    - remembers the token ids of every prompt and answer it has rendered. TRL renders the chat template and
      tokenizes every row at every step, about half of a batch's collation time for the small embedded model; a
      plate dataset repeats one prompt and the same answers every epoch. The batches are the parent's, tensor for
      tensor (tested); batches with a row it cannot key (no images, or objects inside the messages) take the
      parent's path.

    Args beyond TRL's:
        max_cached_rows: how many distinct prompts and answers to remember (the memory is emptied when full); 0:
            none, every batch takes TRL's path.
    """

    max_cached_rows: int = 1 << 17
    _prompt_ids: dict = field(default_factory=dict, init=False, repr=False)
    _completion_ids: dict = field(default_factory=dict, init=False, repr=False)

    def torch_call(self, examples):
        batch = super().torch_call(examples)
        self._supervise_answer_only(batch)
        return batch

    def _collate_prompt_completion(self, examples):
        keys = self._row_keys(examples) if self.max_cached_rows > 0 else None
        if keys is None or self.pad_to_multiple_of is not None:
            return super()._collate_prompt_completion(examples)
        images = [image for example in examples for image in example["images"]]
        image_inputs = self._image_inputs(images)
        merge_area = self.processor.image_processor.merge_size**2
        tokens_per_image = (image_inputs["image_grid_thw"].prod(dim=-1) // merge_area).tolist()
        prompts, prompt_types, completions = [], [], []
        first_image = 0
        for example, (prompt_key, completion_key) in zip(examples, keys):
            row_tokens = tuple(tokens_per_image[first_image : first_image + len(example["images"])])
            first_image += len(example["images"])
            cached = self._cached_prompt(example, (prompt_key, row_tokens))
            if cached is None:
                return super()._collate_prompt_completion(examples)
            ids, types = cached
            prompts.append(ids)
            prompt_types.append(types)
            completions.append(self._cached_completion(example, (prompt_key, completion_key)))

        pad_id = self.processor.tokenizer.pad_token_id
        prompt_ids, prompt_mask = _pad(prompts, pad_id, left=True)
        completion_ids, completion_mask = _pad(completions, pad_id, left=False)
        # From here on, TRL's own steps (`DataCollatorForVisionLanguageModeling._collate_prompt_completion`).
        input_ids = torch.cat((prompt_ids, completion_ids), dim=1)
        attention_mask = torch.cat((prompt_mask, completion_mask), dim=1)
        completion_mask = torch.cat((torch.zeros_like(prompt_mask), completion_mask), dim=1)
        extra = {}  # Qwen-VL processors' image-token markers, when the processor makes them
        if prompt_types[0] is not None:
            prompt_types, _ = _pad(prompt_types, 0, left=True)
            extra["mm_token_type_ids"] = torch.cat((prompt_types, torch.zeros_like(completion_ids)), dim=1)
        attention_mask, input_ids, completion_mask, *flushed = flush_left(
            attention_mask, input_ids, completion_mask, *extra.values()
        )
        extra = dict(zip(extra, flushed))
        if self.max_length is not None:
            input_ids, attention_mask, completion_mask = (
                tensor[:, : self.max_length] for tensor in (input_ids, attention_mask, completion_mask)
            )
            extra = {name: tensor[:, : self.max_length] for name, tensor in extra.items()}
        labels = input_ids.clone()
        labels[attention_mask == 0] = -100
        if self.completion_only_loss:
            labels[completion_mask == 0] = -100
        return BatchFeature(
            {"input_ids": input_ids, "attention_mask": attention_mask, **image_inputs, **extra, "labels": labels}
        )

    def _image_inputs(self, images) -> BatchFeature:
        """The image processor's `pixel_values` and `image_grid_thw`, by the processor's batched path for fixed-size
        8-bit crops where it has one (`LPLLMProcessor.fixed_size_image_inputs`, the same values)."""
        batched = getattr(self.processor, "fixed_size_image_inputs", None)
        if batched is not None and self.return_tensors == "pt":
            image_inputs = batched(images)
            if image_inputs is not None:
                return image_inputs
        return self.processor.image_processor(
            images=self.processor.prepare_images(images), return_tensors=self.return_tensors
        )

    @staticmethod
    def _row_keys(examples):
        """`(prompt key, completion key)` per row, or None when a row cannot be keyed and so cannot be cached."""
        keys = []
        for example in examples:
            if not (is_conversational(example) and example.get("images") and "prompt" in example):
                return None
            try:
                keys.append(tuple(json.dumps(example[part], sort_keys=True) for part in ("prompt", "completion")))
            except TypeError:  # an image object inside the messages
                return None
        return keys

    def _rendered(self, example) -> dict:
        """The row's prompt and completion text, rendered as TRL renders them (from copies of the messages: TRL's
        helpers fill in their image placeholders in place)."""
        messages = {
            "prompt": prepare_multimodal_messages(copy.deepcopy(example["prompt"]), images=example["images"]),
            "completion": prepare_multimodal_messages(copy.deepcopy(example["completion"])),
        }
        return apply_chat_template(messages, self.processor)

    def _cached_prompt(self, example, key):
        """`(input_ids, mm_token_type_ids or None)` of the row's prompt; None for processors that also make
        `token_type_ids` (Gemma's), which the parent handles."""
        if key not in self._prompt_ids:
            self._make_room(self._prompt_ids)
            prompt = self.processor(
                images=example["images"], text=[self._rendered(example)["prompt"]], add_special_tokens=False,
                return_tensors="pt",
            )
            types = _token_ids(prompt["mm_token_type_ids"][0]) if "mm_token_type_ids" in prompt else None
            # Remembered as None too, so later batches of such a processor go to the parent without tokenizing first.
            self._prompt_ids[key] = None if "token_type_ids" in prompt else (_token_ids(prompt["input_ids"][0]), types)
        return self._prompt_ids[key]

    def _cached_completion(self, example, key):
        if key not in self._completion_ids:
            self._make_room(self._completion_ids)
            # The tokenizer alone: a text-only processor call tokenizes the same way, at ~8x the cost (~0.45 ms).
            completion = self.processor.tokenizer(
                [self._rendered(example)["completion"]], add_special_tokens=False, return_tensors="pt"
            )
            self._completion_ids[key] = _token_ids(completion["input_ids"][0])
        return self._completion_ids[key]

    def _make_room(self, cache: dict):
        if len(cache) >= self.max_cached_rows:
            cache.clear()

    def _supervise_answer_only(self, batch):
        end_id = self.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        labels = batch["labels"]
        is_end = labels == end_id
        has_end = is_end.any(dim=1)
        positions = torch.arange(labels.shape[1], device=labels.device).expand_as(labels)
        last_end = torch.where(is_end, positions, torch.full_like(positions, -1)).max(dim=1, keepdim=True).values
        after_answer = (positions > last_end) & has_end[:, None]
        labels[after_answer] = -100


def _token_ids(ids: torch.Tensor) -> tuple[int, ...]:
    """A 1-D tensor of ids as the collator remembers it: a tuple of Python ints, not a tensor.

    The memory grows by a row at every new answer, all through the first epoch. Tensors are allocated by the C
    allocator (glibc's malloc on Linux), and tensors kept that long land in the holes that each batch's large buffers
    (27 MiB of `pixel_values` for 48 plates of 32x768) leave in its heap, which then no longer fit the next batch's:
    kept as tensors, they grow the training process by 11-17 MiB a step through the first epoch
    (results/real_plates.md, row 5). Python's small objects live in Python's own arenas, away from those buffers.
    """
    return tuple(ids.tolist())


def _pad(rows: list[tuple[int, ...]], value: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`(padded, mask)`: rows of ids stacked into one `(len(rows), longest)` tensor, padded on the left or right."""
    width = max(len(row) for row in rows)
    padded = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        columns = slice(width - len(row), width) if left else slice(0, len(row))
        padded[index, columns] = torch.tensor(row, dtype=torch.long)
        mask[index, columns] = 1
    return padded, mask
