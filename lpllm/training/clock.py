"""Training time: wall-clock time since training started, less the time spent evaluating."""

import contextlib
import time


class TrainingClock:
    """Seconds of training since `start()`: monotonic wall-clock time less the time spent inside `paused()` blocks.

    A run with a wall-clock budget (`max_train_minutes`) evaluates on the validation split along the way (loss and
    generation: ~13 s each for the CPU recipe's model, ~3% of its 15 minutes). Counted as training, they would
    shorten the training by however often one evaluates, and a model compared with one that does not evaluate
    (the CRNN baseline) would train for less time. The budget, the wall-clock learning-rate schedule and the logged
    minutes all read this clock, so they agree.

    Args:
        clock: seconds, monotonic; `time.monotonic` unless a test passes a fake one.
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._started = None
        self._paused_at = None
        self._paused_seconds = 0.0

    def start(self):
        """Starts (or restarts) counting from zero."""
        self._started = self._clock()
        self._paused_at = None
        self._paused_seconds = 0.0

    @property
    def started(self) -> bool:
        return self._started is not None

    def seconds(self) -> float:
        """Training seconds so far; 0 before `start()`, and standing still while paused."""
        if self._started is None:
            return 0.0
        now = self._paused_at if self._paused_at is not None else self._clock()
        return now - self._started - self._paused_seconds

    @contextlib.contextmanager
    def paused(self):
        """Time inside the block is not training time. Nested blocks count once."""
        if self._started is None or self._paused_at is not None:
            yield
            return
        self._paused_at = self._clock()
        try:
            yield
        finally:
            self._paused_seconds += self._clock() - self._paused_at
            self._paused_at = None
