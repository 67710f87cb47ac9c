"""The wall-clock cosine schedule (warm-up by steps, decay by elapsed time, zero at the budget) and the training clock
it reads."""

import pytest
import torch

from lpllm.training.clock import TrainingClock
from lpllm.training.schedules import WallClockCosineSchedule


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def learning_rate_after(schedule, optimizer, steps=1):
    for _ in range(steps):
        optimizer.step()
        schedule.step()
    return optimizer.param_groups[0]["lr"]


def test_warms_up_by_steps_then_decays_over_the_wall_clock_budget():
    clock = FakeClock()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = WallClockCosineSchedule(optimizer, num_warmup_steps=4, budget_minutes=10, clock=clock)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 4)
    assert learning_rate_after(schedule, optimizer, 3) == pytest.approx(0.1)  # warm-up done, no time passed
    clock.now += 5 * 60
    assert learning_rate_after(schedule, optimizer) == pytest.approx(0.05)  # half the budget: half the peak
    clock.now += 4 * 60
    assert 0 < learning_rate_after(schedule, optimizer) < 0.01
    clock.now += 2 * 60
    assert learning_rate_after(schedule, optimizer) == pytest.approx(0.0)  # past the budget: stays at zero
    assert schedule.get_last_lr() == [pytest.approx(0.0)]


def test_a_budget_must_be_positive():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="budget_minutes"):
        WallClockCosineSchedule(optimizer, num_warmup_steps=0, budget_minutes=0)


def test_training_clock_stands_still_while_paused_and_counts_nested_pauses_once():
    fake = FakeClock()
    clock = TrainingClock(clock=fake)
    assert not clock.started and clock.seconds() == 0.0
    with clock.paused():  # before the start: nothing to pause
        fake.now += 5
    clock.start()
    fake.now += 10
    with clock.paused():
        fake.now += 7
        assert clock.seconds() == 10
        with clock.paused():
            fake.now += 3
        assert clock.seconds() == 10
    fake.now += 2
    assert clock.seconds() == 12  # the 10 paused seconds not counted
    clock.start()  # a new run: from zero again
    fake.now += 1
    assert clock.seconds() == 1


def test_the_schedule_and_the_budget_read_the_training_clock():
    from transformers import TrainerControl, TrainerState

    from lpllm.training.callbacks import TimeBudgetCallback

    fake = FakeClock()
    clock = TrainingClock(clock=fake)
    clock.start()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = WallClockCosineSchedule(optimizer, num_warmup_steps=0, budget_minutes=10, clock=clock.seconds)
    budget = TimeBudgetCallback(10, clock=clock)
    budget.on_train_begin(None, TrainerState(), TrainerControl())
    fake.now += 5 * 60
    with clock.paused():  # an evaluation of 20 minutes
        fake.now += 20 * 60
    assert learning_rate_after(schedule, optimizer) == pytest.approx(0.05)  # half the budget, not past it
    assert not budget.on_step_end(None, TrainerState(), TrainerControl()).should_training_stop
    fake.now += 5 * 60
    assert budget.on_step_end(None, TrainerState(), TrainerControl()).should_training_stop
