"""The eval.py reader for CTC baselines saved by `python -m baselines.train`."""

from pathlib import Path

import torch

from .checkpoint import load_baseline
from .ctc import CTCCodec


class BaselineRecognizer:
    """Reads plates with a CRNN or LPRNet checkpoint. A multi-frame sample is read by averaging the per-step
    log-probabilities of its frames (the frames of one plate align column by column)."""

    def __init__(self, model, config, device: torch.device, name: str, path: str | None = None):
        self.model = model
        self.config = config
        self.codec = CTCCodec(config.charset)
        self.device = device
        self.name = name
        self.path = path
        self.paradigm = config.paradigm

    @classmethod
    def from_pretrained(cls, directory, device: torch.device | str = "cpu") -> "BaselineRecognizer":
        directory, device = Path(directory), torch.device(device)
        model, config = load_baseline(directory, device)
        return cls(model, config, device, name=directory.name, path=str(directory))

    @torch.inference_mode()
    def read(self, batch: list[list], prompts=None) -> list[str]:
        frames = [image for images in batch for image in images]
        pixels = self.config.crop_preparation.to_tensor(frames)
        log_probs = self.model(pixels.to(self.device)).log_softmax(-1)
        fused, start = [], 0
        for images in batch:
            fused.append(log_probs[start : start + len(images)].mean(dim=0))
            start += len(images)
        return self.codec.decode(torch.stack(fused))

    def describe(self) -> dict:
        return {
            "model_type": f"baseline-{self.config.arch}",
            "arch": self.config.arch,
            "deskew_max_degrees": self.config.deskew_max_degrees,
            "rectify_plate": self.config.rectify_plate,
            "training": self.config.training,
        }


__all__ = ["BaselineRecognizer"]
