"""An exponential moving average (EMA) of the trainable weights, kept beside training and swapped in at its end."""

import os

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging


logger = logging.get_logger(__name__)

AVERAGE_FILE = "weight_average.safetensors"


class WeightAveragingCallback(TrainerCallback):
    """Keeps `average <- decay * average + (1 - decay) * weights` of every trainable parameter after each optimizer
    step, and puts the average into the model when training ends, so what is saved and evaluated afterwards is the
    average. Evaluations during training read the raw weights.

    The decay starts low and grows to `decay` (`min(decay, (1 + t) / (10 + t))` at update t, as timm and diffusers
    do), so the first updates do not drag the average towards the random initialisation. The average is saved in
    every checkpoint (`weight_average.safetensors`) and read back from `resume_from`, so a resumed run ends with the
    same weights as an uninterrupted one.

    Args:
        decay: the largest decay, in (0, 1): the average spans about `1 / (1 - decay)` steps.
        resume_from: the checkpoint directory training resumes from, if any.
    """

    def __init__(self, decay: float, resume_from: str | None = None):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"`ema_decay` must be in (0, 1) (0 turns it off), got {decay!r}.")
        self.decay = decay
        self.resume_from = resume_from
        self.parameters = {}
        self.average = {}

    def decay_at(self, update: int) -> float:
        return min(self.decay, (1.0 + update) / (10.0 + update))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.parameters = {name: parameter for name, parameter in model.named_parameters() if parameter.requires_grad}
        self.average = {name: parameter.detach().clone() for name, parameter in self.parameters.items()}
        if self.resume_from is None:
            return
        path = os.path.join(self.resume_from, AVERAGE_FILE)
        if not os.path.isfile(path):
            raise ValueError(
                f"`ema_decay` is set but {path} does not exist: {self.resume_from} was saved by a run without "
                "`ema_decay`. Resume with the settings it was trained with."
            )
        saved = load_file(path)
        if saved.keys() != self.average.keys():
            raise ValueError(
                f"{path} averages other parameters than this run trains (e.g. "
                f"{sorted(saved.keys() ^ self.average.keys())[:3]}): resume with the settings it was trained with."
            )
        for name, tensor in saved.items():
            self.average[name].copy_(tensor)

    @torch.no_grad()
    def on_step_end(self, args, state, control, **kwargs):
        # `global_step` has already counted this step: the first update is update 0.
        weight = 1.0 - self.decay_at(state.global_step - 1)
        torch._foreach_lerp_(list(self.average.values()), [p.detach() for p in self.parameters.values()], weight)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        directory = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if os.path.isdir(directory):
            average = {name: tensor.contiguous() for name, tensor in self.average.items()}
            save_file(average, os.path.join(directory, AVERAGE_FILE))

    @torch.no_grad()
    def on_train_end(self, args, state, control, **kwargs):
        for name, parameter in self.parameters.items():
            parameter.copy_(self.average[name])
        logger.warning(f"The moving average of the weights (decay {self.decay:g}) replaced the trained weights.")
