"""Baseline checkpoints: `baseline_config.json` (architecture, charset, training budget) + `model.safetensors`.

eval.py recognises such a directory by its `baseline_config.json`.
"""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from lpllm.evaluation.outputs import atomic_write_bytes, atomic_write_json

from modeling_lpllm.deskew import check_max_degrees, check_rectify

from .crnn import CRNN
from .lprnet import LPRNet
from .preprocessing import CropPreparation


CONFIG_FILE = "baseline_config.json"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURES = {"crnn": CRNN, "lprnet": LPRNet}
PARADIGMS = {"crnn": "CNN + BiLSTM + CTC", "lprnet": "CNN + CTC (LPRNet)"}


@dataclass
class BaselineConfig:
    """What is needed to rebuild a baseline and to report how it was trained.

    Args:
        arch: `"crnn"` or `"lprnet"`.
        charset: output characters (CTC blank excluded).
        training: the training run's budget and outcome (steps, epochs, minutes, device, data...).
        deskew_max_degrees: tilts up to this many degrees are levelled before resizing, in training and reading
            (`modeling_lpllm.deskew`); 0: off, as in every baseline trained before the option existed.
        rectify_plate: crops are trimmed to the plate and its keystone undone before resizing, after any levelling,
            in training and reading (`modeling_lpllm.deskew`, LP-LLM's processor option of the same name).
    """

    arch: str
    charset: str
    training: dict = field(default_factory=dict)
    deskew_max_degrees: float = 0.0
    rectify_plate: bool = False

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"Unknown baseline architecture {self.arch!r}; expected one of {sorted(ARCHITECTURES)}.")
        self.deskew_max_degrees = check_max_degrees(self.deskew_max_degrees)
        self.rectify_plate = check_rectify(self.rectify_plate)

    @property
    def input_size(self) -> tuple[int, int]:
        return ARCHITECTURES[self.arch].input_size

    @property
    def crop_preparation(self) -> CropPreparation:
        """How this baseline's crops become its input, in training and reading alike."""
        return CropPreparation(self.input_size, self.deskew_max_degrees, self.rectify_plate)

    @property
    def paradigm(self) -> str:
        return PARADIGMS[self.arch]


def build_model(config: BaselineConfig) -> torch.nn.Module:
    """A freshly initialised model for `config` (num_classes = charset + CTC blank)."""
    return ARCHITECTURES[config.arch](num_classes=len(config.charset) + 1)


def save_baseline(directory: str | os.PathLike, model: torch.nn.Module, config: BaselineConfig) -> None:
    """Writes the weights then the config (each atomically): a directory with a config always has its weights."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_FILE, save(state, metadata={"format": "pt"}))
    atomic_write_json(directory / CONFIG_FILE, asdict(config))


def load_baseline(
    directory: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, BaselineConfig]:
    """The model (in eval mode, on `device`) and config saved by `save_baseline`.

    Raises:
        FileNotFoundError / ValueError: naming the missing or malformed file.
    """
    directory = Path(directory)
    config_file, weights_file = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for required in (config_file, weights_file):
        if not required.is_file():
            raise FileNotFoundError(f"{directory} is not a complete baseline checkpoint: {required.name} is missing.")
    try:
        config = BaselineConfig(**json.loads(config_file.read_text(encoding="utf-8")))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{config_file} is not a valid baseline config: {error}") from error
    model = build_model(config)
    model.load_state_dict(load_file(str(weights_file)))
    return model.to(device).eval(), config


__all__ = ["ARCHITECTURES", "BaselineConfig", "build_model", "load_baseline", "save_baseline"]
