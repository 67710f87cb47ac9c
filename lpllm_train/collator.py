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
      when `num_slots` is set, for the auxiliary slot loss;
    - adds `plate_labels` (each image's plate characters as token ids, padded with -100) when `plate_labels` is
      set, for the auxiliary visual CTC loss.
    """

    num_slots: int | None = None
    plate_labels: bool = False

    def torch_call(self, examples):
        plates = [completion_text(example["completion"]) for example in examples]
        frames = [len(example["images"]) for example in examples]
        batch = super().torch_call(examples)
        self._supervise_answer_only(batch)
        if self.num_slots is not None:
            batch["slot_labels"] = self._slot_labels(plates, frames)
        if self.plate_labels:
            batch["plate_labels"] = self._plate_labels(plates, frames)
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

    def _character_ids(self, plate: str) -> list[int]:
        # One id per character (a BPE tokenizer would merge characters): the first token of each.
        tokenizer = self.processor.tokenizer
        return [tokenizer(char, add_special_tokens=False)["input_ids"][0] for char in plate]

    def _slot_labels(self, plates, frames) -> torch.Tensor:
        end_id = self.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        rows = []
        for plate, num_frames in zip(plates, frames):
            ids = self._character_ids(plate[: self.num_slots])
            row = ids + [end_id] * (self.num_slots - len(ids))
            rows.extend([row] * num_frames)  # every frame of a multi-frame sample shows the same plate
        return torch.tensor(rows, dtype=torch.long)

    def _plate_labels(self, plates, frames) -> torch.Tensor:
        width = max(len(plate) for plate in plates)
        rows = []
        for plate, num_frames in zip(plates, frames):
            ids = self._character_ids(plate)
            rows.extend([ids + [-100] * (width - len(ids))] * num_frames)
        return torch.tensor(rows, dtype=torch.long)
