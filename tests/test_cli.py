"""The `lpllm` command: every subcommand's options as argument dataclasses, `--help`, and `--config` YAML files."""

import dataclasses
import json
import sys

import pytest
from datasets import load_from_disk

from dataset_scripts.build import BuildArguments
from lpllm.baselines.fast_plate_ocr import ExportArguments
from lpllm.baselines.train import BaselineTrainingArguments
from lpllm.cli import main as lpllm
from lpllm.cli.demo import DemoArguments
from lpllm.cli.evaluate import EvalArguments, parse_arguments
from lpllm.cli.read import ReadArguments
from lpllm.training.arguments import PlateTrainingArguments
from lpllm.training.ppocr_conversion import ConvertArguments


@pytest.mark.parametrize(
    "command, arguments",
    [
        ("data", BuildArguments),
        ("train", PlateTrainingArguments),
        ("eval", EvalArguments),
        ("read", ReadArguments),
        ("demo", DemoArguments),
        ("train-baseline", BaselineTrainingArguments),
        ("export-fast-plate-ocr", ExportArguments),
        ("convert-ppocr", ConvertArguments),
    ],
)
def test_every_command_lists_its_options_with_their_defaults(command, arguments, capsys):
    program = sys.argv[0]
    with pytest.raises(SystemExit) as exited:
        lpllm([command, "--help"])
    assert exited.value.code == 0
    assert sys.argv[0] == program
    printed = capsys.readouterr().out
    assert printed.startswith(f"usage: lpllm {command} ")
    fields = dataclasses.fields(arguments)
    missing = [field.name for field in fields if f"--{field.name}" not in printed]
    assert not missing, f"lpllm {command} --help lacks {missing}"
    assert printed.count("(default:") >= len(fields)


def saved_report(directory, name, accuracy):
    """A report directory as `lpllm eval` writes it (the fields the comparison table reads)."""
    directory.mkdir(parents=True)
    results = {
        "accuracy": accuracy,
        "cer": 0.1,
        "ned": 0.1,
        "num_samples": 10,
        "model": {"name": name, "paradigm": "CNN + BiLSTM + CTC", "parameters": {"total": 1000, "trainable": 1000}},
        "dataset": {"name": "plates", "split": "test", "num_excluded": 0},
        "efficiency": {"device": "cpu", "latency": {"median_ms": 1.0}},
    }
    (directory / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return str(directory)


def test_eval_reads_a_yaml_config_and_the_command_line_wins(tmp_path):
    first = saved_report(tmp_path / "one", "one", 0.5)
    second = saved_report(tmp_path / "two", "two", 0.75)
    config = tmp_path / "eval.yaml"
    config.write_text(
        f"compare: [{first}, {second}]\nnames: [A, B]\noutput_dir: {tmp_path / 'table'}\nbatch_size: 3\n"
        "region_map: ['CN:O=0', 'BR:O=0']\n",
        encoding="utf-8",
    )
    args = parse_arguments(["--config", str(config), "--batch_size", "5"])
    assert (args.batch_size, args.names, args.region_map) == (5, ["A", "B"], ["CN:O=0", "BR:O=0"])
    assert parse_arguments(["--config", str(config)]).batch_size == 3
    assert args.max_new_tokens is None  # the model's saved generation_config decides

    table = lpllm(["eval", "--config", str(config)])
    assert "| A | CNN + BiLSTM + CTC | 50.00 |" in table and "| B | CNN + BiLSTM + CTC | 75.00 |" in table
    assert (tmp_path / "table" / "comparison.md").read_text(encoding="utf-8") == table


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model_name_or_path", "m", "--compare", "a", "b"], "exactly one of `model_name_or_path`"),
        ([], "exactly one of `model_name_or_path`"),
        (["--model_name_or_path", "m"], "`dataset_name` is required"),
        (["--compare", "a", "b", "--names", "A"], "`names` has 1 entries for 2 paths"),
        (["--model_name_or_path", "m", "--dataset_name", "d", "--names", "A"], "`names` names the rows"),
        (["--model_name_or_path", "m", "--dataset_name", "d", "--batch_size", "0"], "`batch_size` must be"),
        (["--compare", "a", "--region_map", "O=0"], "`region_map`: Region rule 'O=0'"),
    ],
)
def test_eval_argument_errors_name_the_field_before_any_work(argv, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        lpllm(["eval", *argv, "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_eval_modes_exclude_each_other_in_a_config_too(tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(f"model_name_or_path: m\ndataset_name: {tmp_path}\noutput_dir: out\n", encoding="utf-8")
    assert parse_arguments(["--config", str(config)]).model_name_or_path == "m"
    with pytest.raises(ValueError, match="got model_name_or_path, compare"):
        parse_arguments(["--config", str(config), "--compare", "a"])


def test_data_reads_a_yaml_config_and_the_command_line_wins(tmp_path, capsys):
    config = tmp_path / "data.yaml"
    config.write_text(
        f"source: synthetic\noutput: {tmp_path / 'plates'}\nnum: 6\nregions: [BR, EU]\nsplits: [1, 1, 2]\n"
        "workers: 0\nquiet: true\nparquet: false\n",
        encoding="utf-8",
    )
    assert lpllm(["data", "--config", str(config), "--num", "4"]) == 0
    assert "Wrote 4 samples" in capsys.readouterr().out
    rows = [row for split in load_from_disk(str(tmp_path / "plates")).values() for row in split]
    assert len(rows) == 4 and {row["region"] for row in rows} <= {"BR", "EU"}
    assert not (tmp_path / "plates" / "data").exists()  # parquet: false

    config.write_text("source: synthetic\noutput: elsewhere\nsplits: [0.9, 0.1]\n", encoding="utf-8")
    assert lpllm(["data", "--config", str(config)]) == 2
    assert "`splits` must be three" in capsys.readouterr().err


def test_unknown_command_is_refused_with_the_list_of_commands(capsys):
    assert lpllm(["nonsense"]) == 2
    assert "train-baseline" in capsys.readouterr().err
