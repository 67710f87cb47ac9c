"""Training on several sources at once: each source's share of an epoch, crops folders and label files as sources
(built once into a cache), per-source reports, the recorded mixture, and bad mixtures refused before the model
loads."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file
from test_eval_helpers import write_crop_folder
from test_train_sft import REPO, SMOKE, plate_split, run, trainer_callback
from transformers import TrainerCallback

from dataset_scripts.splits import assign_split
from lpllm.training import data as training_data
from lpllm.training import sft as train_sft
from lpllm.training.data import PlateSource, load_training_sources
from lpllm.training.mixture import MixtureSampler, TrainingMixture, rows_per_source


def texts_by_split(train: int, validation: int, test: int) -> list[str]:
    """Plate texts that `lpllm data` (seed 0) puts into each split in these numbers, train ones first."""
    wanted = {"train": train, "validation": validation, "test": test}
    chosen = {split: [] for split in wanted}
    for number in range(10_000):
        text = f"AB{number:04d}"
        split = assign_split(text, 0)
        if len(chosen[split]) < wanted[split]:
            chosen[split].append(text)
        if all(len(chosen[split]) == wanted[split] for split in wanted):
            return [text for split in wanted for text in chosen[split]]
    raise AssertionError("not enough plate texts")


@pytest.fixture(scope="module")
def sources_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    DatasetDict({"train": plate_split(16, 1), "validation": plate_split(4, 2), "test": plate_split(4, 3)}).save_to_disk(
        root / "synthetic"
    )
    texts = texts_by_split(6, 1, 2)
    write_crop_folder(root / "real", [(f"images/{index}.png", text, "ok") for index, text in enumerate(texts)])
    return root


def source(name, rows, splits=("train",)):
    splits = {split: plate_split(rows, ord(name) * 10 + index) for index, split in enumerate(splits)}
    return PlateSource(name, name, DatasetDict(splits), None)


def rows_by_source(mixture, indices):
    """How many of `indices` (into the mixture's training rows) fall in each source."""
    bounds = np.cumsum(mixture.sizes)
    return Counter(mixture.sources[int(np.searchsorted(bounds, index, side="right"))].name for index in indices)


def test_weights_give_each_source_its_share_of_every_epoch():
    mixture = TrainingMixture([source("a", 20), source("b", 5), source("c", 3)], "train", [0.6, 0.3, 0.1])
    assert len(mixture.train_dataset) == 28 and mixture.counts == rows_per_source([20, 5, 3], [0.6, 0.3, 0.1])
    assert mixture.counts == [17, 8, 3]  # 16.8, 8.4, 2.8 of 28 rows, by largest remainders
    assert rows_per_source([4, 4], [0, 1]) == [0, 8]  # a weight of 0: evaluated, not trained on
    sampler = mixture.sampler(seed=0)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert len(indices) == len(sampler) == 28
        assert rows_by_source(mixture, indices) == {"a": 17, "b": 8, "c": 3}
        # the small source repeated evenly: its 5 rows once each, then 3 of them a second time
        assert sorted(Counter(index for index in indices if 20 <= index < 25).values()) == [1, 1, 2, 2, 2]
        assert len(set(index for index in indices if index < 20)) == 17  # the large one subsampled, no repeat
        epochs.append(indices)
    assert epochs[0] != epochs[1] != epochs[2]  # drawn anew every epoch
    again = mixture.sampler(seed=0)
    again.set_epoch(1)
    assert list(again) == epochs[1]  # and only from the seed and the epoch
    assert list(MixtureSampler(mixture.sizes, mixture.counts, seed=1)) != epochs[0]


def test_without_weights_the_sources_are_concatenated():
    mixture = TrainingMixture([source("a", 6), source("b", 2)], "train")
    assert mixture.sampler(seed=0) is None and mixture.counts == [6, 2] and len(mixture.train_dataset) == 8
    record = mixture.record(seed=0)
    assert [entry["rows_per_epoch"] for entry in record["sources"]] == [6, 2] and record["rows_per_epoch"] == 8


def test_validation_is_the_union_of_the_sources_in_turns():
    mixture = TrainingMixture(
        [source("a", 5, ("train", "validation")), source("b", 2, ("train", "validation")), source("c", 2)], "train"
    )
    union = mixture.eval_dataset("validation")
    completions = [row["completion"][0]["content"][0]["text"] for row in union]
    a, b = (source.dataset["validation"]["completion"] for source in mixture.sources[:2])
    texts = lambda rows: [row[0]["content"][0]["text"] for row in rows]  # noqa: E731
    assert completions == [texts(a)[0], texts(b)[0], texts(a)[1], texts(b)[1], *texts(a)[2:]]


def test_a_crops_folder_trains_beside_a_saved_dataset_with_per_source_reports(sources_root, tmp_path, monkeypatch):
    synthetic, real = str(sources_root / "synthetic"), str(sources_root / "real")
    cache = tmp_path / "cache"
    output = tmp_path / "run"
    arguments = [
        "--dataset_name", synthetic, real, "--dataset_weights", "1", "1", "--dataset_cache_dir", str(cache),
        "--max_steps", "2", "--final_eval_split", "test",
    ]  # fmt: skip
    run(synthetic, output, *arguments)
    (build,) = cache.iterdir()
    assert build.name.startswith("real-")
    assert json.loads((build / "summary.json").read_text())["splits"] == {"train": 6, "validation": 1, "test": 2}

    mixture = json.loads((output / "mixture.json").read_text(encoding="utf-8"))
    assert mixture["rows_per_epoch"] == 22 and mixture["seed"] == 0
    assert [(entry["name"], entry["weight"], entry["rows_per_epoch"], entry["dataset_dir"])
            for entry in mixture["sources"]] == [(synthetic, 1.0, 11, synthetic), (real, 1.0, 11, str(build))]
    assert sorted(path.name for path in (output / "final_eval").iterdir()) == ["real_test", "synthetic_test"]
    real_report = json.loads((output / "final_eval" / "real_test" / "results.json").read_text(encoding="utf-8"))
    assert real_report["num_samples"] == 2
    assert "`" + real + "` (6 rows, 11 per epoch, 50.0%)" in (output / "final" / "README.md").read_text()

    # A second run finds the build in the cache instead of building again.
    monkeypatch.setattr(training_data, "build_crops", lambda *args, **kwargs: pytest.fail("built again"))
    sources = load_training_sources([real], "train", cache)
    assert sources[0].local_dir == str(build) and len(sources[0].dataset["train"]) == 6


def test_a_label_file_is_a_source(sources_root, tmp_path):
    output = tmp_path / "run"
    labels = str(sources_root / "real" / "labels.csv")
    run(labels, output, "--dataset_cache_dir", str(tmp_path / "cache"), "--max_steps", "1")
    (entry,) = json.loads((output / "mixture.json").read_text(encoding="utf-8"))["sources"]
    assert entry["name"] == labels and entry["label"] == "real" and entry["split_rows"]["train"] == 6


def test_a_weighted_mixture_resumes_to_the_weights_of_an_uninterrupted_run(sources_root, tmp_path):
    synthetic = str(sources_root / "synthetic")
    common = [
        "--dataset_name", synthetic, str(sources_root / "real"), "--dataset_weights", "0.3", "0.7",
        "--dataset_cache_dir", str(tmp_path / "cache"), "--learning_rate", "0.005",
        "--max_steps", "10", "--save_strategy", "steps", "--save_steps", "4",
    ]  # fmt: skip
    run(synthetic, tmp_path / "straight", *common)

    class Killed(Exception):
        pass

    class KillCallback(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 9:  # after checkpoint-8, 2 batches into the second epoch (6 batches of 4 rows)
                raise Killed()

    interrupted = tmp_path / "interrupted"
    with trainer_callback(KillCallback()), pytest.raises(Killed):
        run(synthetic, interrupted, *common)
    run(synthetic, interrupted, *common, "--resume_from_checkpoint", "true")
    straight = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    resumed = load_file(interrupted / "final" / "model.safetensors")
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


@pytest.fixture
def no_model_load(monkeypatch):
    monkeypatch.setattr(
        train_sft, "load_model_and_processor", lambda *a, **k: pytest.fail("the model loaded before the refusal")
    )


@pytest.mark.parametrize(
    "weights, message",
    [
        (["0.5"], r"`dataset_weights` has 1 value\(s\) for 2 `dataset_name` source\(s\)"),
        (["0.5", "-0.5"], "`dataset_weights` must be finite numbers >= 0 with a positive sum"),
        (["0", "0"], "`dataset_weights` must be finite numbers >= 0 with a positive sum"),
        (["nan", "1"], "`dataset_weights` must be finite numbers >= 0 with a positive sum"),
    ],
)
def test_bad_weights_fail_before_any_work(sources_root, tmp_path, no_model_load, weights, message):
    synthetic = str(sources_root / "synthetic")
    with pytest.raises(ValueError, match=message):
        run(synthetic, tmp_path / "o", "--dataset_name", synthetic, str(sources_root / "real"),
            "--dataset_weights", *weights, "--dataset_cache_dir", str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists() and not (tmp_path / "o").exists()


def test_a_source_without_a_training_split_is_named_before_crops_are_built(sources_root, tmp_path, no_model_load):
    only_test = tmp_path / "only_test"
    DatasetDict({"test": plate_split(2, 1)}).save_to_disk(only_test)
    with pytest.raises(ValueError, match=f"`dataset_train_split`: {only_test} has no split 'train'"):
        run(str(only_test), tmp_path / "o", "--dataset_name", str(sources_root / "real"), str(only_test),
            "--dataset_cache_dir", str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_a_source_not_in_the_conversation_format_is_named(tmp_path, no_model_load):
    plain = tmp_path / "plain"
    rows = plate_split(2, 1).to_list()
    plain_rows = [{**row, "prompt": "Read the plate.", "completion": "AB12"} for row in rows]
    DatasetDict({"train": Dataset.from_list(plain_rows)}).save_to_disk(plain)
    with pytest.raises(ValueError, match=rf"{plain}\[train\] is not in the conversation format"):
        run(str(plain), tmp_path / "o")


def test_crops_without_a_readable_crop_are_named(tmp_path, no_model_load):
    broken = write_crop_folder(tmp_path / "broken", [("images/a.png", "AB12", "corrupt")])
    with pytest.raises(ValueError, match=f"--dataset_name {broken}: its crops cannot be built"):
        run(str(broken), tmp_path / "o", "--dataset_cache_dir", str(tmp_path / "cache"))


def test_a_recipe_names_one_source_as_a_string_or_several_as_a_list(sources_root, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the recipe names its model config relative to the repository
    synthetic, real = str(sources_root / "synthetic"), str(sources_root / "real")
    for value, expected in ((synthetic, [synthetic]), ([synthetic, real], [synthetic, real])):
        recipe = tmp_path / "recipe.yaml"
        fields = f"dataset_name: {json.dumps(value)}\noutput_dir: {tmp_path / 'o'}\n"
        recipe.write_text(Path(SMOKE).read_text() + fields)
        script_args = train_sft.parse_arguments(["--config", str(recipe)])[0]
        assert script_args.dataset_name == expected
