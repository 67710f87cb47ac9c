"""Bad input to train_sft.py: an earlier run is resumed or refused, never silently replaced; a user's folder is never
deleted; bad values, empty splits and missing paths fail before the model loads, naming the field."""

from pathlib import Path

import pytest
from datasets import DatasetDict
from test_dataset_fixtures import snapshot
from test_train_sft import SMOKE, plate_split, run

from lpllm.training import data as training_data
from lpllm.training.arguments import PlateTrainingArguments
from lpllm.training import sft as train_sft


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("plates")
    DatasetDict({"train": plate_split(8, 1), "validation": plate_split(4, 2), "test": plate_split(4, 3)}).save_to_disk(
        directory
    )
    return str(directory)


@pytest.fixture
def no_model_load(monkeypatch):
    """A run that reaches the model loader fails the test: the check under test had to come first."""

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(train_sft, "load_model_and_processor", load)


def test_an_earlier_run_is_resumed_or_refused_and_replaced_only_when_asked(dataset_dir, tmp_path, monkeypatch):
    output = tmp_path / "run"
    run(dataset_dir, output, "--save_strategy", "steps", "--save_steps", "2")
    first = snapshot(output)
    assert (output / "checkpoint-4").is_dir() and (output / "final" / "model.safetensors").is_file()

    original_load = train_sft.load_model_and_processor
    monkeypatch.setattr(train_sft, "load_model_and_processor", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(ValueError) as refused:
        run(dataset_dir, output)
    message = str(refused.value)
    assert str(output) in message and "--resume_from_checkpoint true" in message
    assert "--overwrite_output_dir true" in message and "checkpoint-4/" in message
    assert snapshot(output) == first

    monkeypatch.setattr(train_sft, "load_model_and_processor", original_load)
    run(dataset_dir, output, "--overwrite_output_dir", "true", "--max_steps", "2")
    assert not (output / "checkpoint-2").exists() and not (output / "checkpoint-4").exists()
    assert '"global_step": 2' in (output / "trainer_state.json").read_text()
    final_model = str(output / "final" / "model.safetensors")
    assert snapshot(output)[final_model] != first[final_model]


@pytest.mark.parametrize("flag", [[], ["--overwrite_output_dir", "true"]])
def test_a_folder_that_is_not_a_run_is_never_written_into(dataset_dir, tmp_path, no_model_load, flag):
    mine = tmp_path / "mine"
    (mine / "final").mkdir(parents=True)
    (mine / "final" / "notes.txt").write_text("mine")
    (mine / "data.csv").write_text("a,b\n")
    before = snapshot(mine)
    with pytest.raises(ValueError, match="holds no earlier training run") as refused:
        run(dataset_dir, mine, *flag)
    assert str(mine) in str(refused.value) and "data.csv" in str(refused.value)
    assert snapshot(mine) == before


def test_resuming_needs_a_checkpoint(dataset_dir, tmp_path, no_model_load):
    with pytest.raises(ValueError, match="holds no checkpoint-"):
        run(dataset_dir, tmp_path / "fresh", "--resume_from_checkpoint", "true")
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        run(dataset_dir, tmp_path / "fresh", "--resume_from_checkpoint", str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    "options, recipe_line, field",
    [
        (["--learning_rate", "-0.001"], "", "learning_rate"),
        (["--max_steps", "0"], "", "max_steps"),
        ([], "max_steps: 2.5", "max_steps"),
        (["--max_steps", "-1", "--num_train_epochs", "0"], "", "num_train_epochs"),
        (["--per_device_train_batch_size", "0"], "", "per_device_train_batch_size"),
        (["--per_device_eval_batch_size", "-4"], "", "per_device_eval_batch_size"),
        (["--gradient_accumulation_steps", "0"], "", "gradient_accumulation_steps"),
        ([], "learning_rate: .nan", "learning_rate"),
        ([], "per_device_train_batch_size: 2.5", "per_device_train_batch_size"),
        ([], "max_length: 0", "max_length"),
        (["--seed", "-1"], "", "seed"),
        (["--save_strategy", "steps", "--save_steps", "0"], "", "save_steps"),
        (["--eval_strategy", "steps", "--eval_steps", "-1"], "", "eval_steps"),
        (["--max_grad_norm", "-1"], "", "max_grad_norm"),
        (["--weight_decay", "-0.1"], "", "weight_decay"),
    ],
)
def test_bad_trainer_values_fail_before_any_work_naming_the_field(
    dataset_dir, tmp_path, no_model_load, options, recipe_line, field
):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(Path(SMOKE).read_text() + recipe_line + "\n")
    with pytest.raises(ValueError, match=f"`{field}` must be"):
        train_sft.main(["--config", str(recipe), "--dataset_name", dataset_dir, "--output_dir", str(tmp_path / "o"),
                        *options])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "option, value", [("lora_r", "0"), ("lora_alpha", "-16"), ("lora_dropout", "1.5")]
)
def test_bad_lora_values_fail_before_the_model_loads(dataset_dir, tmp_path, no_model_load, option, value):
    with pytest.raises(ValueError, match=f"`{option}` must be"):
        run(dataset_dir, tmp_path / "o", "--model_name_or_path", str(tmp_path), "--ablation", "D", f"--{option}", value)


@pytest.mark.parametrize(
    "empty, options, field",
    [
        ("train", [], "dataset_train_split"),
        ("validation", ["--eval_strategy", "steps", "--eval_steps", "2"], "dataset_eval_split"),
        ("test", ["--final_eval_split", "test"], "final_eval_split"),
    ],
)
def test_an_empty_split_fails_before_the_model_loads(tmp_path, no_model_load, empty, options, field):
    splits = {"train": plate_split(4, 1), "validation": plate_split(2, 2), "test": plate_split(2, 3)}
    splits[empty] = splits[empty].select([])
    DatasetDict(splits).save_to_disk(tmp_path / "data", num_shards={empty: 1})  # zero shards would not load
    with pytest.raises(ValueError, match=f"`{field}`.*no rows"):
        run(str(tmp_path / "data"), tmp_path / "o", *options)


@pytest.mark.parametrize("field", ["dataset_name", "model_name_or_path"])
@pytest.mark.parametrize("path", ["./missing_folder", "/no/such/folder/anywhere", "~/no_such_lpllm_folder"])
def test_a_missing_local_path_is_named_as_a_path_not_a_hub_id(dataset_dir, tmp_path, no_model_load, field, path):
    arguments = {"dataset_name": dataset_dir, "model_name_or_path": "recipes/models/lpllm_tiny.json", field: path}
    with pytest.raises(ValueError, match=f"--{field} .*no such file or folder.*local path"):
        run(arguments["dataset_name"], tmp_path / "o", "--model_name_or_path", arguments["model_name_or_path"])


def test_a_name_that_could_be_a_hub_id_says_neither_was_found(monkeypatch):
    def offline(name):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(training_data.datasets, "load_dataset", offline)
    with pytest.raises(ValueError, match="no local folder of that name.*Couldn't reach"):
        training_data.load_plate_dataset("data/plates_that_are_not_here")


def test_split_sizes_are_checked_against_a_split_without_rows():
    empty = DatasetDict({"train": plate_split(1, 1).select([])})
    with pytest.raises(ValueError, match="`dataset_train_split`: split 'train' of here has no rows"):
        training_data.training_split(empty, "train", "here")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"max_train_minutes": float("nan")}, "`max_train_minutes` must be a positive finite number"),
        ({"min_pixels": 4096, "max_pixels": 1024}, "`min_pixels` \\(4096\\) must not exceed `max_pixels`"),
        ({"generation_batch_size": 2.5}, "`generation_batch_size` must be a positive integer"),
        ({"generation_eval_samples": -1}, "`generation_eval_samples` must be an integer >= 0"),
    ],
)
def test_bad_plate_training_values_name_the_field(values, message):
    with pytest.raises(ValueError, match=message):
        PlateTrainingArguments(**values)
