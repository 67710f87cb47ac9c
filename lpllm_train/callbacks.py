"""Training callbacks for plate runs."""

import time

from transformers import TrainerCallback
from transformers.utils import logging


logger = logging.get_logger(__name__)


class TimeBudgetCallback(TrainerCallback):
    """Ends training once `max_minutes` of wall-clock training have passed, then evaluates and saves, so a run
    compares with others at equal training time."""

    def __init__(self, max_minutes: float):
        self.max_seconds = 60.0 * max_minutes
        self.start = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.start >= self.max_seconds:
            logger.warning(f"Time budget of {self.max_seconds / 60:.1f} min reached at step {state.global_step}.")
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_save = True
        return control
