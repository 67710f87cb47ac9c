"""Bad input to evaluation and to the sample reader: refused before any work, the field named; remote code runs only
with the user's opt-in, except from an LP-LLM folder this project wrote."""

import importlib.util
import json
import shutil
from pathlib import Path

import datasets
import pytest
import torch
from PIL import Image

from lpllm.cli.evaluate import parse_arguments
from lpllm.cli.read import parse_arguments as parse_read_arguments
from lpllm.cli.recognizers import load_recognizer
from lpllm.evaluation.data import load_eval_data
from lpllm.evaluation.model_sources import check_model_reference, is_project_checkpoint
from lpllm.evaluation.recognizers import load_vision_language_recognizer
from test_eval_helpers import noise_image, plate_row, save_plate_dataset


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def foreign_checkpoint(tmp_path_factory, tiny_checkpoint):
    """A checkpoint that ships code but is not an LP-LLM folder of ours (as a Hub model of another type would be)."""
    directory = tmp_path_factory.mktemp("foreign") / "model"
    shutil.copytree(tiny_checkpoint, directory)
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["model_type"] = "someone_elses_reader"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def plate_dataset(tmp_path_factory):
    rows = [plate_row(index, text) for index, text in enumerate(("AB123", "CD456"))]
    return save_plate_dataset(tmp_path_factory.mktemp("plates") / "data", {"test": rows, "validation": rows[:1]})


def eval_arguments(*extra):
    return ["--output_dir", "unused", *extra]


def test_negative_max_samples_is_refused_naming_the_field(plate_dataset):
    with pytest.raises(ValueError, match="`max_samples` must be an integer >= 1, got -3"):
        parse_arguments(eval_arguments("--model_name_or_path", "m", "--dataset_name", str(plate_dataset), "--max_samples", "-3"))
    with pytest.raises(ValueError, match="`max_samples` must be a whole number >= 1 or None"):
        load_eval_data(plate_dataset, "test", max_samples=-3)


def test_missing_local_paths_are_reported_as_missing_not_as_hub_lookups(tmp_path, plate_dataset):
    missing_data = tmp_path / "no_such_dataset"
    with pytest.raises(FileNotFoundError, match=r"`dataset_name` '.*no_such_dataset': no such file or folder"):
        parse_arguments(eval_arguments("--model_name_or_path", "m", "--dataset_name", str(missing_data)))
    missing_model = str(tmp_path / "runs" / "demo" / "final")
    with pytest.raises(FileNotFoundError, match=r"`model_name_or_path` '.*final': no such folder"):
        parse_arguments(eval_arguments("--model_name_or_path", missing_model, "--dataset_name", str(plate_dataset)))
    with pytest.raises(FileNotFoundError, match=r"`compare\[1\]` '\./runs/b': no such folder"):
        parse_arguments(eval_arguments("--compare", str(plate_dataset), "./runs/b", "--dataset_name", str(plate_dataset)))
    with pytest.raises(FileNotFoundError, match="`model_name_or_path` .*: no such folder"):
        load_recognizer(missing_model, device="cpu")
    # A Hub repo id is left to the Hub.
    assert check_model_reference("Qwen/Qwen3-VL-2B-Instruct", "model_name_or_path") == "Qwen/Qwen3-VL-2B-Instruct"


def test_a_missing_relative_path_that_could_be_a_hub_id_says_neither_was_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `runs/b` exists neither here nor (offline) on the Hub
    with pytest.raises(FileNotFoundError, match=r"`model_name_or_path` 'runs/b': no local folder of that name .* Hub"):
        load_recognizer("runs/b", device="cpu")


def test_empty_splits_and_header_only_csvs_are_refused(tmp_path):
    full = datasets.load_from_disk(str(save_plate_dataset(tmp_path / "full", {"test": [plate_row(0, "AB123")]})))
    empty = tmp_path / "data"
    datasets.DatasetDict({"test": full["test"].select([]), "validation": full["test"]}).save_to_disk(str(empty))
    with pytest.raises(ValueError, match=r"\[test\] has no rows: there is no sample to evaluate"):
        load_eval_data(empty, "test")
    csv_file = tmp_path / "crops" / "labels.csv"
    csv_file.parent.mkdir()
    csv_file.write_text("file,text\n", encoding="utf-8")
    with pytest.raises(ValueError, match="labels.csv has a header but no rows"):
        load_eval_data(csv_file.parent)


def test_evaluation_crops_pass_the_image_gate_and_are_excluded_by_file(tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    noise_image(1).save(folder / "good.png")
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    Image.new("RGB", (400, 10)).save(folder / "strip.png")
    (folder / "labels.csv").write_text("file,text\ngood.png,AB123\ndot.png,AB124\nstrip.png,AB125\n", encoding="utf-8")
    data = load_eval_data(folder)
    assert [sample.id for sample in data.samples] == ["good.png"]
    reasons = {excluded.file: excluded.reason for excluded in data.excluded}
    assert "dot.png: image is 1x1; each side must be at least 8 pixels" in reasons["dot.png"]
    assert "strip.png: image is 400x10 (aspect 40:1)" in reasons["strip.png"]


def test_a_project_checkpoint_loads_without_the_flag(tiny_checkpoint):
    assert is_project_checkpoint(tiny_checkpoint)
    recognizer = load_vision_language_recognizer(str(tiny_checkpoint), CPU)
    assert len(recognizer.read([[noise_image(3)]])) == 1


def test_a_model_that_ships_code_needs_the_flag(foreign_checkpoint):
    assert not is_project_checkpoint(foreign_checkpoint)
    with pytest.raises(ValueError, match="ships its own Python code .* pass --trust_remote_code"):
        load_vision_language_recognizer(str(foreign_checkpoint), CPU)
    args = parse_arguments(eval_arguments("--model_name_or_path", "m", "--dataset_name", ".", "--trust_remote_code"))
    assert args.trust_remote_code is True
    assert parse_arguments(eval_arguments("--model_name_or_path", "m", "--dataset_name", ".")).trust_remote_code is False


def test_a_project_checkpoint_missing_its_code_is_not_trusted(tmp_path, tiny_checkpoint):
    directory = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, directory)
    (directory / "modeling_lpllm.py").unlink()
    assert not is_project_checkpoint(directory)


def load_read_samples():
    spec = importlib.util.spec_from_file_location("read_samples", SCRIPTS / "read_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_read_samples_asks_for_the_flag_and_checks_its_paths(tmp_path, tiny_checkpoint, foreign_checkpoint, plate_dataset):
    read_samples = load_read_samples()
    common = ["--dataset_name", str(plate_dataset), "--num", "1"]
    with pytest.raises(ValueError, match="pass --trust_remote_code"):
        read_samples.main(["--model", str(foreign_checkpoint), *common, "--output_dir", str(tmp_path / "foreign")])
    assert not (tmp_path / "foreign").exists()
    with pytest.raises(FileNotFoundError, match="`model` '.*missing/final': no such folder"):
        read_samples.main(["--model", str(tmp_path / "missing" / "final"), *common, "--output_dir", str(tmp_path / "x")])
    with pytest.raises(FileNotFoundError, match="`dataset_name` .*: no such folder"):
        read_samples.main(["--model", str(tiny_checkpoint), "--dataset_name", str(tmp_path / "nope"), "--output_dir", "x"])
    with pytest.raises(ValueError, match="`split` 'dev'"):
        read_samples.main(["--model", str(tiny_checkpoint), *common, "--split", "dev", "--output_dir", str(tmp_path / "x")])
    read_samples.main(["--model", str(tiny_checkpoint), *common, "--output_dir", str(tmp_path / "ours")])
    assert (tmp_path / "ours" / "pipeline_readings.png").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", "x" * 5000], r"`prompt` has 5000 characters; at most 2000"),
        (["--max_new_tokens", "100000"], r"`max_new_tokens` must be a whole number in \[1, 1024\]"),
        (["--split", " "], "`split` must name a split"),
    ],
)
def test_reading_arguments_are_checked_when_parsed(plate_dataset, extra, message):
    with pytest.raises(ValueError, match=message):
        parse_arguments(eval_arguments("--model_name_or_path", "m", "--dataset_name", str(plate_dataset), *extra))


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--batch_size", "0", "`batch_size` must be an integer >= 1, got 0"),
        ("--max_new_tokens", "-2", "`max_new_tokens` must be an integer >= 1, got -2"),
        ("--num_views", "0", "`num_views` must be an integer >= 1, got 0"),
    ],
)
def test_read_and_eval_refuse_the_same_bad_counts_in_the_same_words(plate_dataset, option, value, message):
    with pytest.raises(ValueError, match=message):
        parse_arguments(eval_arguments("--model_name_or_path", "m", "--dataset_name", str(plate_dataset), option, value))
    with pytest.raises(ValueError, match=message):
        parse_read_arguments([str(plate_dataset), "--model", "m", option, value])
