"""A learning-rate schedule that spans a wall-clock budget instead of a step count."""

import math
import time

from torch.optim.lr_scheduler import LambdaLR


class WallClockCosineSchedule(LambdaLR):
    """Linear warm-up over `num_warmup_steps` steps, then a cosine decay from the peak learning rate to zero over
    `budget_minutes` of wall-clock time counted from the schedule's creation (the start of training).

    With a time budget, a step-count cosine ends where the steps run out, which depends on the machine: too early
    on a fast one, not at all on a slow one (training stops at a high learning rate). This one always ends at the
    budget. A resumed run starts a new budget, as `TimeBudgetCallback` does.

    Args:
        clock: seconds, monotonic; `time.monotonic` unless given another (`PlateSFTTrainer` passes its
            `TrainingClock.seconds`, which stands still while it evaluates; tests pass a fake one).
    """

    def __init__(self, optimizer, num_warmup_steps: int, budget_minutes: float, clock=time.monotonic, last_epoch=-1):
        if budget_minutes <= 0:
            raise ValueError(f"`budget_minutes` must be positive, got {budget_minutes}.")
        self.num_warmup_steps = num_warmup_steps
        self.budget_seconds = 60.0 * budget_minutes
        self.clock = clock
        self.start = clock()
        super().__init__(optimizer, self.lr_factor, last_epoch)

    def lr_factor(self, step: int) -> float:
        warmup = min(1.0, (step + 1) / self.num_warmup_steps) if self.num_warmup_steps > 0 else 1.0
        progress = min(1.0, (self.clock() - self.start) / self.budget_seconds)
        return warmup * 0.5 * (1.0 + math.cos(math.pi * progress))

