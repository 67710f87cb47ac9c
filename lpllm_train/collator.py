"""Batches plate conversations for SFT: TRL's vision-language collator, plus what plates need on top of it."""

from dataclasses import dataclass

import torch
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling


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
    - adds `slot_labels` (the k-th plate character's token id for CMRM slot k, the end token past the plate's end)
      when `num_slots` is set, for the auxiliary slot loss.
    """

    num_slots: int | None = None

    def torch_call(self, examples):
        plates = [completion_text(example["completion"]) for example in examples]
        frames = [len(example["images"]) for example in examples]
        batch = super().torch_call(examples)
        self._supervise_answer_only(batch)
        if self.num_slots is not None:
            batch["slot_labels"] = self._slot_labels(plates, frames)
        return batch

    def _supervise_answer_only(self, batch):
        end_id = self.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        labels = batch["labels"]
        is_end = labels == end_id
        has_end = is_end.any(dim=1)
        positions = torch.arange(labels.shape[1], device=labels.device).expand_as(labels)
        last_end = torch.where(is_end, positions, torch.full_like(positions, -1)).max(dim=1, keepdim=True).values
        after_answer = (positions > last_end) & has_end[:, None]
        labels[after_answer] = -100

    def _slot_labels(self, plates, frames) -> torch.Tensor:
        tokenizer = self.processor.tokenizer
        end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        rows = []
        for plate, num_frames in zip(plates, frames):
            # One id per character (a BPE tokenizer would merge characters): the first token of each.
            characters = list(plate)[: self.num_slots]
            ids = [tokenizer(char, add_special_tokens=False)["input_ids"][0] for char in characters]
            row = ids + [end_id] * (self.num_slots - len(ids))
            rows.extend([row] * num_frames)  # every frame of a multi-frame sample shows the same plate
        return torch.tensor(rows, dtype=torch.long)
