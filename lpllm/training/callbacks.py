"""Training callbacks for plate runs."""

import math

from transformers import TrainerCallback
from transformers.utils import logging

from .augmentation import warmup_strength
from .clock import TrainingClock


logger = logging.get_logger(__name__)


class TimeBudgetCallback(TrainerCallback):
    """Ends training once `max_minutes` of training have passed, then evaluates and saves, so a run compares with
    others at equal training time.

    Args:
        clock: the `TrainingClock` to read, e.g. the trainer's (`PlateSFTTrainer.training_clock`), which stands still
            while the trainer evaluates; None: a clock of its own, wall-clock time from the start of training.
    """

    def __init__(self, max_minutes: float, clock: TrainingClock | None = None):
        self.max_seconds = 60.0 * max_minutes
        self.clock = clock if clock is not None else TrainingClock()

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.clock.started:  # a clock shared with the trainer is already running
            self.clock.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.clock.seconds() >= self.max_seconds:
            logger.warning(f"Time budget of {self.max_seconds / 60:.1f} min reached at step {state.global_step}.")
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_save = True
        return control


class AugmentationWarmupCallback(TrainerCallback):
    """Sets the strength of a training augmentation (`RandomQuadJitter.strength`) from the epoch: 0 in the first
    epoch, growing linearly to 1 at epoch `warmup_epochs`.

    A model trained from scratch first sits on a loss plateau until it learns where to look; every augmentation
    lengthens that plateau (~1.2 min unaugmented, ~2.1 min with corner jitter for the embedded model), while it is
    afterwards that augmentation pays. The strength changes only at epoch starts, before any batch of the
    epoch is drawn, so a run resumed from a checkpoint draws the same crops as an uninterrupted one.
    """

    def __init__(self, augment, warmup_epochs: int):
        if warmup_epochs < 1:
            raise ValueError(f"`warmup_epochs` must be a positive integer, got {warmup_epochs!r}.")
        self.augment = augment
        self.warmup_epochs = warmup_epochs

    def on_epoch_begin(self, args, state, control, **kwargs):
        # `state.epoch` is whole at an epoch's start and keeps its fraction when resuming mid-epoch.
        epoch = math.floor(state.epoch or 0.0)
        self.augment.strength = warmup_strength(epoch, self.warmup_epochs)
