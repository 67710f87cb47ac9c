"""Training on several plate sources at once: the rows each source gives an epoch, and the splits read beside.

With training splits of n_1 ... n_k rows, one epoch has N = n_1 + ... + n_k rows, as their concatenation would.
Weights w_1 ... w_k give source i the share c_i = w_i / sum(w) * N of them, rounded by largest remainders so that
the c_i add up to N. A source with c_i <= n_i gives c_i of its rows, drawn without replacement; a smaller one gives
every row floor(c_i / n_i) times and the remaining c_i mod n_i rows drawn without replacement, so that no row of a
source comes more than once more often than another. The draws and the order of the epoch are new each epoch and
depend only on the seed and the epoch: a resumed run trains on what the uninterrupted run would have. Without
weights the sources are concatenated, each row once per epoch in the trainer's own shuffled order.

Why this and not the mixtures TRL users meet elsewhere: an epoch of N rows keeps `num_train_epochs`, `max_steps`,
`eval_steps` and `save_steps` meaning what they mean for one dataset, and the weights change what an epoch holds,
not how long it is. `datasets.interleave_datasets(probabilities=...)` draws each row's source at random and either
stops when the first source runs out (`first_exhausted`: most rows of the larger sources are never seen) or when
every source has (`all_exhausted`: a large source with a small weight stretches the "epoch" to many times the data,
and a small source repeats in the same order on every pass). TRL's `DatasetMixtureConfig(fraction=...)` and
open-r1's mixture weights never repeat a row: they shrink the larger sources to fit, so 500 real crops given half of
the mixture beside 20,000 synthetic plates would train on 1,000 plates. Here small real sets are repeated and large
synthetic ones subsampled, the usual way of weighting scarce data up, with shares exact in every epoch rather than
in expectation.
"""

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers.utils import logging

from .arguments import check_weights
from .data import PlateSource, training_split


logger = logging.get_logger(__name__)

# What a run trained on (sources, weights, rows), beside its trainer state.
MIXTURE_FILE = "mixture.json"


def rows_per_source(sizes: Sequence[int], weights: Sequence[float] | None) -> list[int]:
    """How many rows each source gives one epoch of `sum(sizes)` rows: `sizes` itself without weights, else the
    weights' shares of it, rounded by largest remainders (ties to the earlier source)."""
    if weights is None:
        return list(sizes)
    total, weight_sum = sum(sizes), sum(weights)
    exact = [weight / weight_sum * total for weight in weights]
    counts = [math.floor(share) for share in exact]
    by_remainder = sorted(range(len(exact)), key=lambda index: (counts[index] - exact[index], index))
    for index in by_remainder[: total - sum(counts)]:
        counts[index] += 1
    return counts


class MixtureSampler(torch.utils.data.Sampler):
    """Indices into the concatenation of the sources' training splits, one epoch at a time (see the module docstring).

    Args:
        sizes: Rows of each source's training split, in concatenation order.
        counts: Rows each source gives an epoch (`rows_per_source`).
        seed: Seeds every epoch's draw together with the epoch (`set_epoch`, which the Trainer calls).
    """

    def __init__(self, sizes: Sequence[int], counts: Sequence[int], seed: int):
        self.sizes, self.counts, self.seed = list(sizes), list(counts), seed
        self.offsets = np.cumsum([0, *self.sizes[:-1]]).tolist()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.counts)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        parts = []
        for offset, size, count in zip(self.offsets, self.sizes, self.counts):
            repeats, rest = divmod(count, size)
            draws = [rng.permutation(size) for _ in range(repeats)] + [rng.permutation(size)[:rest]]
            parts.append(offset + np.concatenate(draws))
        indices = np.concatenate(parts)
        rng.shuffle(indices)
        return indices

    def __iter__(self):
        return iter(self.epoch_indices(self.epoch).tolist())


def _concatenate(splits: Sequence[datasets.Dataset], names: Sequence[str]) -> datasets.Dataset:
    """One dataset of `splits` (cast to the first one's features where their types differ only in form)."""
    if len(splits) == 1:
        return splits[0]
    features = splits[0].features
    aligned = [splits[0]]
    for split, name in zip(splits[1:], names[1:]):
        if split.features != features:
            try:
                split = split.cast(features)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"--dataset_name {name}: its rows cannot be mixed with those of {names[0]} (columns "
                    f"{split.features} against {features}): {error}"
                ) from error
        aligned.append(split)
    return datasets.concatenate_datasets(aligned)


def round_robin(splits: Sequence[datasets.Dataset], names: Sequence[str]) -> datasets.Dataset:
    """The rows of `splits` (of the sources `names`) in turns: the first row of each, then the second of each, ...,
    so that any prefix, such as the plates read by generation at each evaluation, draws on every source alike."""
    if len(splits) == 1:
        return splits[0]
    offsets = np.cumsum([0, *(len(split) for split in splits[:-1])])
    order = [
        offset + row
        for row in range(max(len(split) for split in splits))
        for offset, split in zip(offsets, splits)
        if row < len(split)
    ]
    return _concatenate(splits, names).select(order)


def sources_with_rows(sources: Sequence[PlateSource], split: str, field: str, purpose: str) -> list[PlateSource]:
    """The sources whose `split` has rows, with a warning naming each source left out.

    Args:
        field: The argument naming `split`, for messages.
        purpose: What the split is read for (`"evaluate during training"`), for messages.

    Raises:
        ValueError: naming `field`, when no source has a row in `split`.
    """
    kept = [source for source in sources if split in source.dataset and len(source.dataset[split]) > 0]
    where = ", ".join(source.name for source in sources)
    if not any(split in source.dataset for source in sources):
        raise ValueError(
            f"`{field}`: there is no {split!r} split to {purpose} in {where} (it has {sorted(sources[0].dataset)})."
        )
    if not kept:
        raise ValueError(
            f"`{field}`: split {split!r} of {where} has no rows, so there is nothing to {purpose}; name another "
            "split, or rebuild the data with other split fractions."
        )
    kept_ids = {id(source) for source in kept}
    for source in sources:
        if id(source) not in kept_ids:
            logger.warning(f"{source.name} has no rows in a {split!r} split (`{field}`): it is left out there.")
    return kept


class TrainingMixture:
    """The training sources of a run, their training splits together, and how an epoch draws on them.

    Args:
        sources: The loaded `--dataset_name` entries.
        train_split: The split trained on (`dataset_train_split`).
        weights: Relative shares of an epoch (`dataset_weights`, checked by `check_weights`); None: concatenation.
    """

    def __init__(self, sources: Sequence[PlateSource], train_split: str, weights: Sequence[float] | None = None):
        self.sources = list(sources)
        self.weights = check_weights(weights, len(self.sources))
        splits = [
            training_split(source.dataset, train_split, source.name, "dataset_train_split") for source in self.sources
        ]
        self.train_split = train_split
        self.sizes = [len(split) for split in splits]
        self.counts = rows_per_source(self.sizes, self.weights)
        self.train_dataset = _concatenate(splits, [source.name for source in self.sources])
        self.sampling = "concatenated, each row once per epoch" if self.weights is None else (
            "weighted, each source's share of an epoch drawn anew every epoch (repeated where the source is smaller, "
            "subsampled where it is larger)"
        )

    def sampler(self, seed: int) -> MixtureSampler | None:
        """The sampler of a weighted mixture; None for a concatenation (the trainer's own shuffling)."""
        return None if self.weights is None else MixtureSampler(self.sizes, self.counts, seed)

    def eval_dataset(self, split: str) -> datasets.Dataset:
        """The union of the sources' `split`s that have rows, in turns (`round_robin`).

        Raises:
            ValueError: when none has a row in it.
        """
        kept = sources_with_rows(self.sources, split, "dataset_eval_split", "evaluate during training")
        return round_robin(
            [training_split(source.dataset, split, source.name, "dataset_eval_split") for source in kept],
            [source.name for source in kept],
        )

    def evaluated_sources(self, split: str | None) -> list[PlateSource]:
        """The sources whose `split` is read after training (`final_eval_split`): those with rows in it; none when
        no source has such a split.

        Raises:
            ValueError: when the sources that have `split` have no row in it.
        """
        present = [source for source in self.sources if split and split in source.dataset]
        if not present:
            return []
        return sources_with_rows(present, split, "final_eval_split", "evaluate after training")

    def save(self, output_dir: str | os.PathLike, seed: int) -> Path:
        """Writes `record(seed)` to `output_dir/mixture.json` (atomically) and returns its path."""
        path = Path(output_dir) / MIXTURE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(self.record(seed), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(partial, path)
        return path

    def record(self, seed: int) -> dict:
        """What the run trained on, for `mixture.json` beside its trainer state."""
        return {
            "train_split": self.train_split,
            "rows_per_epoch": sum(self.counts),
            "sampling": self.sampling,
            "seed": seed,
            "sources": [
                {
                    "name": source.name,
                    "label": source.label,
                    "dataset_dir": source.local_dir,
                    "weight": None if self.weights is None else weight,
                    "share": count / sum(self.counts),
                    "rows_per_epoch": count,
                    "split_rows": {split: len(rows) for split, rows in source.dataset.items()},
                }
                for source, weight, count in zip(self.sources, self.weights or [None] * len(self.sources), self.counts)
            ],
        }

    def describe(self) -> str:
        """One line per source for logs and the model card."""
        return "; ".join(
            f"`{source.name}` ({size} rows, {count} per epoch, {100 * count / sum(self.counts):.1f}%)"
            for source, size, count in zip(self.sources, self.sizes, self.counts)
        )
