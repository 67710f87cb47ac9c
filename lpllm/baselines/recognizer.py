"""The eval.py reader for CTC baselines saved by `python -m lpllm.baselines.train`."""

from collections import Counter
from pathlib import Path

import torch
from PIL import Image

from modeling_lpllm.plate_views import DEFAULT_VIEW_SHIFT, check_num_views, plate_views

from .checkpoint import load_baseline
from .ctc import CTCCodec
from .preprocessing import stack_uint8, to_model_input


def vote(readings: list[str]) -> str:
    """The reading most views gave; among equally frequent ones, the earliest (view 0 is the crop itself)."""
    counts = Counter(readings)
    return max(readings, key=lambda reading: (counts[reading], -readings.index(reading)))


class BaselineRecognizer:
    """Reads plates with a CRNN or LPRNet checkpoint. A multi-frame sample is read by averaging the per-step
    log-probabilities of its frames (the frames of one plate align column by column). With `num_views` > 1, each
    view (`modeling_lpllm.plate_views`: the crop and fixed corner jitters of it, the views LP-LLM reads) is read so
    and the views vote on the reading."""

    def __init__(
        self, model, config, device: torch.device, name: str, path: str | None = None, num_views: int = 1
    ):
        self.model = model
        self.config = config
        self.codec = CTCCodec(config.charset)
        self.device = device
        self.name = name
        self.path = path
        self.paradigm = config.paradigm
        self.num_views = check_num_views(num_views)

    @classmethod
    def from_pretrained(
        cls, directory, device: torch.device | str = "cpu", num_views: int = 1
    ) -> "BaselineRecognizer":
        directory, device = Path(directory), torch.device(device)
        model, config = load_baseline(directory, device)
        return cls(model, config, device, name=directory.name, path=str(directory), num_views=num_views)

    @torch.inference_mode()
    def read(self, batch: list[list], prompts=None) -> list[str]:
        frames = [image for images in batch for image in images]
        preparation = self.config.crop_preparation
        if self.num_views == 1:
            pixels = preparation.to_tensor(frames)
        else:
            view_images = [
                view
                for frame in frames
                for view in plate_views(
                    preparation.level(frame),
                    self.num_views,
                    preparation.size,
                    DEFAULT_VIEW_SHIFT,
                    resample=Image.Resampling.BILINEAR,
                )
            ]
            pixels = to_model_input(stack_uint8(view_images))
        log_probs = self.model(pixels.to(self.device)).log_softmax(-1)
        # Rows: sample, frame, view. A sample's frames align column by column and are averaged; its views do not (a
        # shifted corner moves the characters across CTC frames, and averaging them read 21% of plates against 91%
        # for one view), so each view is decoded and the views vote, ties going to the crop itself.
        views = self.num_views
        fused, start = [], 0
        for images in batch:
            rows = log_probs[start : start + len(images) * views].view(len(images), views, *log_probs.shape[1:])
            fused.append(rows.mean(dim=0))
            start += len(images) * views
        readings = self.codec.decode(torch.cat(fused))
        return [vote(readings[index : index + views]) for index in range(0, len(readings), views)]

    def describe(self) -> dict:
        return {
            "model_type": f"baseline-{self.config.arch}",
            "arch": self.config.arch,
            "deskew_max_degrees": self.config.deskew_max_degrees,
            "rectify_plate": self.config.rectify_plate,
            "num_views": self.num_views,
            "training": self.config.training,
        }


__all__ = ["BaselineRecognizer"]
