"""Training rows drawn more or less often by their degradation severity (beyond the paper).

A model that reads mild plates almost perfectly still spends most of its steps on them when they are most of the data;
weighting the draw by the dataset's `severity` column (1 = mild ... 5 = severe, 0 = clean, -1 = unknown) moves steps
to the plates it still gets wrong, as `interleave_datasets(probabilities=...)` would do for whole subsets.
"""

import torch


def parse_severity_weights(value) -> dict[int, float] | None:
    """`"4:1.5,5:2"` -> {4: 1.5, 5: 2.0} (levels not named keep weight 1); None, "", "none" -> None (off)."""
    if value is None or str(value).strip().lower() in ("", "none", "false"):
        return None
    expected = (
        "`train_severity_weights` must be `LEVEL:WEIGHT,...` with integer severity levels (-1 to 5) and positive "
        f"weights, each level once (e.g. 4:1.5,5:2); got {value!r}."
    )
    weights = {}
    for item in str(value).split(","):
        level, separator, weight = item.partition(":")
        try:
            level, weight = int(level), float(weight)
        except ValueError as error:
            raise ValueError(expected) from error
        if not separator or not -1 <= level <= 5 or not weight > 0 or weight == float("inf") or level in weights:
            raise ValueError(expected)
        weights[level] = weight
    return weights


def severity_sample_weights(severities, weights: dict[int, float]) -> torch.Tensor:
    """One draw weight per row: `weights[severity]`, 1 for the levels `weights` does not name."""
    return torch.tensor([weights.get(int(severity), 1.0) for severity in severities], dtype=torch.double)


class SeededWeightedSampler(torch.utils.data.Sampler):
    """`len(weights)` row indices per epoch, drawn with replacement in proportion to `weights`.

    Unlike `torch.utils.data.WeightedRandomSampler`, the draw depends only on `seed` and the epoch the Trainer sets
    (`set_epoch`), not on the global random state: a run resumed from a checkpoint replays the same rows.
    """

    def __init__(self, weights: torch.Tensor, seed: int):
        if weights.ndim != 1 or len(weights) == 0 or not bool((weights > 0).all()):
            raise ValueError("SeededWeightedSampler needs a non-empty 1-D tensor of positive weights.")
        self.weights = weights
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.multinomial(self.weights, len(self.weights), replacement=True, generator=generator).tolist()
