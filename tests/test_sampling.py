import pytest
import torch

from lpllm.training.arguments import PlateTrainingArguments
from lpllm.training.sampling import SeededWeightedSampler, parse_severity_weights, severity_sample_weights


def test_severity_weights_parse_and_bad_ones_are_refused_naming_the_field():
    assert parse_severity_weights("4:1.5, 5:2") == {4: 1.5, 5: 2.0}
    assert parse_severity_weights("-1:0.5") == {-1: 0.5}
    assert parse_severity_weights(None) is None and parse_severity_weights("none") is None
    for bad in ("4", "x:1", "4:0", "4:-1", "6:2", "4:1,4:2", "4:inf", "4:nan", "4:two"):
        with pytest.raises(ValueError, match="`train_severity_weights` must be `LEVEL:WEIGHT"):
            parse_severity_weights(bad)
    assert PlateTrainingArguments(train_severity_weights="5:3").severity_weights == {5: 3.0}
    with pytest.raises(ValueError, match="train_severity_weights"):
        PlateTrainingArguments(train_severity_weights="5")


def test_rows_get_their_levels_weight_and_unnamed_levels_one():
    weights = severity_sample_weights([0, 4, 5, -1, 3], {4: 2.0, 5: 3.0})
    assert weights.tolist() == [1.0, 2.0, 3.0, 1.0, 1.0]


def test_draws_follow_the_weights():
    weights = torch.tensor([1.0] * 3000 + [3.0] * 3000, dtype=torch.double)
    drawn = torch.tensor(list(SeededWeightedSampler(weights, seed=0)))
    assert len(drawn) == 6000 and int(drawn.min()) >= 0 and int(drawn.max()) < 6000
    heavy = (drawn >= 3000).float().mean().item()
    assert abs(heavy - 0.75) < 0.03  # 3 : 1; binomial sd ~0.006


def test_draws_depend_on_seed_and_epoch_only():
    weights = torch.rand(200, dtype=torch.double) + 0.1
    sampler = SeededWeightedSampler(weights, seed=3)
    torch.manual_seed(0)
    first = list(sampler)
    torch.manual_seed(1)  # the global random state does not matter: a resumed run replays the same rows
    assert list(sampler) == first
    sampler.set_epoch(1)
    second_epoch = list(sampler)
    assert second_epoch != first
    assert list(SeededWeightedSampler(weights, seed=3)) == first
    assert list(SeededWeightedSampler(weights, seed=4)) != first


def test_sampler_refuses_empty_or_non_positive_weights():
    for weights in (torch.tensor([]), torch.tensor([1.0, 0.0]), torch.ones(2, 2)):
        with pytest.raises(ValueError, match="positive weights"):
            SeededWeightedSampler(weights, seed=0)
