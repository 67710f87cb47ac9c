"""`lpllm read`: a folder of crops read as the pipeline reads them, the output formats, bad files, exit codes, and
two processes giving the output of one."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import pipeline

from lpllm.cli import main as lpllm
from lpllm.cli.read import OUTPUT_FIELDS, collect_inputs, parse_arguments
from tiny_lpllm import random_plate_image, save_tiny_checkpoint


REPO = Path(__file__).resolve().parents[1]
# Crops of several sizes: the tiny model with this seed reads them as different texts.
CROP_SIZES = [(94, 24), (104, 27), (114, 30), (124, 33), (134, 36)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_lpllm")
    save_tiny_checkpoint(directory, seed=10)
    return str(directory)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """A folder of five crops, two of them in a sub-folder, with a labels file and a hidden file that are not read."""
    folder = tmp_path_factory.mktemp("crops")
    (folder / "more").mkdir()
    names = ["a.png", "b.png", "c.jpg", "more/d.png", "more/e.png"]
    for seed, (name, size) in enumerate(zip(names, CROP_SIZES)):
        random_plate_image(seed, size=size).save(folder / name)
    (folder / "labels.csv").write_text("file,text\na.png,AB123\n", encoding="utf-8")
    random_plate_image(9).save(folder / ".hidden.png")
    return folder, [str(folder / name) for name in names]


def read_json(*argv, output):
    code = lpllm(["read", *map(str, argv), "--format", "json", "--output", str(output)])
    return code, json.loads(Path(output).read_text(encoding="utf-8"))


def test_a_folder_reads_like_the_pipeline(checkpoint, crops, tmp_path):
    folder, files = crops
    code, records = read_json(folder, "--model", checkpoint, "--batch_size", 3, output=tmp_path / "out.json")
    assert code == 0
    assert [record["file"] for record in records] == files  # sorted, recursive, only image files
    reader = pipeline("image-to-text", model=checkpoint, trust_remote_code=True)
    expected = [result[0]["generated_text"] for result in reader(files, batch_size=2)]
    assert [record["text"] for record in records] == expected
    assert len(set(expected)) > 1  # the crops are told apart, so an order mix-up would show
    assert all(list(record) == list(OUTPUT_FIELDS) and record["error"] is None for record in records)


def test_csv_and_text_formats_hold_the_same_readings(checkpoint, crops, tmp_path, capsys):
    folder, files = crops
    _, records = read_json(folder, "--model", checkpoint, output=tmp_path / "out.json")
    csv_argv = ["read", str(folder), "--model", checkpoint, "--format", "csv", "--output", str(tmp_path / "o.csv")]
    assert lpllm(csv_argv) == 0
    with open(tmp_path / "o.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == list(OUTPUT_FIELDS)
    assert [(row["file"], row["text"], row["error"]) for row in rows] == [(r["file"], r["text"], "") for r in records]

    capsys.readouterr()
    assert lpllm(["read", files[1], files[0], "--model", checkpoint]) == 0  # the order given
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{files[1]}\t{records[1]['text']}", f"{files[0]}\t{records[0]['text']}"]


def test_a_bad_file_is_named_the_others_are_read_and_the_exit_code_says_so(checkpoint, crops, tmp_path, capsys):
    folder, files = crops
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    small = tmp_path / "tiny.png"
    random_plate_image(0, size=(4, 4)).save(small)
    _, good = read_json(folder, "--model", checkpoint, output=tmp_path / "good.json")
    capsys.readouterr()

    code, records = read_json(files[0], bad, small, files[1], "--model", checkpoint, output=tmp_path / "mixed.json")
    assert code == 1
    assert [record["file"] for record in records] == [files[0], str(bad), str(small), files[1]]
    assert [record["text"] for record in records] == [good[0]["text"], None, None, good[1]["text"]]
    assert "cannot identify image file" in records[1]["error"] and "at least 8 pixels" in records[2]["error"]
    report = capsys.readouterr().err
    assert "2 of 4 inputs could not be read" in report and f"{bad}: cannot identify" in report

    capsys.readouterr()
    assert lpllm(["read", str(bad), "--model", checkpoint]) == 1
    assert capsys.readouterr().out == ""  # the text format lists the plates read; failures go to standard error


def test_an_existing_output_is_replaced_only_with_overwrite(checkpoint, crops, tmp_path):
    _, files = crops
    output = tmp_path / "readings.json"
    output.write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match="--overwrite"):
        lpllm(["read", files[0], "--model", checkpoint, "--format", "json", "--output", str(output)])
    assert output.read_text(encoding="utf-8") == "mine"
    assert lpllm(["read", files[0], "--model", checkpoint, "--output", str(output), "--overwrite"]) == 0
    assert output.read_text(encoding="utf-8").startswith(f"{files[0]}\t")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        lpllm(["read", files[0], "--model", checkpoint, "--output", str(tmp_path)])


@pytest.mark.parametrize(
    "path, message",
    [
        ("missing.png", "no such file or folder"),
        ("empty_folder", "holds no image file"),
        ("*.nothing", "matches no image file"),
    ],
)
def test_paths_that_name_nothing_stop_the_command_before_the_model_loads(tmp_path, path, message):
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "empty_folder" / "notes.txt").write_text("no plates", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=message):
        # The model does not exist either: the paths are checked first, and no model is loaded.
        lpllm(["read", str(tmp_path / path), "--model", str(tmp_path)])


def test_paths_come_before_or_after_options_and_globs_expand_in_order(crops):
    folder, files = crops
    args = parse_arguments([files[0], "--model", "org/model", files[1], "--batch_size", "2", str(folder / "more")])
    assert (args.model, args.batch_size) == ("org/model", 2)
    assert [item.name for item in collect_inputs(args.paths)] == files[:2] + files[3:]
    pattern = str(folder / "**" / "*.png")
    assert [item.name for item in collect_inputs([pattern, files[0]])] == sorted(
        [files[0], files[1], files[3], files[4]]
    )  # every file once
    with pytest.raises(ValueError, match="Nothing to read"):
        collect_inputs(parse_arguments(["--model", "org/model"]).paths)
    with pytest.raises(SystemExit):
        parse_arguments([files[0], "--model", "org/model", "--no_such_option", "1"])


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo (CPU process groups) is not available")  # fmt: skip
def test_two_processes_write_the_output_of_one(checkpoint, crops, tmp_path):
    folder, _ = crops
    bad = folder.parent / "bad_crop.png"  # a failure in the second shard travels to the one output too
    bad.write_bytes(b"")
    common = ["-m", "lpllm.cli", "read", str(folder), str(bad), "--model", checkpoint, "--device", "cpu",
              "--batch_size", "2", "--format", "csv", "--log_level", "INFO"]  # fmt: skip
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(paths)}
    one = lpllm([*common[2:], "--output", str(tmp_path / "one.csv")])
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *common,
         "--output", str(tmp_path / "two.csv")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one == 1
    assert two.returncode != 0, two.stderr[-3000:]  # the failed input makes every process exit with 1
    assert "on 2 process(es)" in two.stderr and "1 of 6 inputs could not be read" in two.stderr, two.stderr[-3000:]
    assert (tmp_path / "two.csv").read_text(encoding="utf-8") == (tmp_path / "one.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "one.csv").read_text(encoding="utf-8"))))
    assert len(rows) == 6 and rows[-1]["error"] and all(row["text"] for row in rows[:-1])
