"""`lpllm read`: a folder of crops read as the pipeline reads them (texts, scores, candidates, abstention), the output
formats, bad files, exit codes, and two processes giving the output of one."""

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
from lpllm.cli.read import (
    CSV_COLUMNS,
    collect_inputs,
    format_records,
    parse_arguments,
    record_keys,
    resolve_min_score,
)
from tiny_lpllm import assert_same_readings, random_plate_image, save_tiny_checkpoint


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


@pytest.fixture(scope="module")
def reader(checkpoint):
    return pipeline("image-to-text", model=checkpoint, trust_remote_code=True)


def read_json(*argv, output):
    code = lpllm(["read", *map(str, argv), "--format", "json", "--output", str(output)])
    return code, json.loads(Path(output).read_text(encoding="utf-8"))


def read_csv(*argv, output):
    code = lpllm(["read", *map(str, argv), "--format", "csv", "--output", str(output)])
    with open(output, newline="", encoding="utf-8") as stream:
        return code, list(csv.DictReader(stream))


# The text format writes a tab or line break inside a text as an escape.
ESCAPES = str.maketrans({"\t": "\\t", "\n": "\\n", "\r": "\\r"})


def text_line(file, text, score):
    return f"{file}\t{text.translate(ESCAPES)}\t{score:.4f}"


def test_a_folder_reads_like_the_pipeline(checkpoint, crops, reader, tmp_path):
    folder, files = crops
    code, records = read_json(folder, "--model", checkpoint, "--batch_size", 3, output=tmp_path / "out.json")
    assert code == 0
    assert [record["file"] for record in records] == files  # sorted, recursive, only image files
    expected = [result[0] for result in reader(files, batch_size=2)]
    assert [record["text"] for record in records] == [result["generated_text"] for result in expected]
    assert len({result["generated_text"] for result in expected}) > 1  # an order mix-up would show
    assert_same_readings(
        [{key: record[key] for key in ("score", "char_scores", "regions")} for record in records],
        [{key: result[key] for key in ("score", "char_scores", "regions")} for result in expected],
    )
    assert all(list(record) == list(record_keys()) and record["error"] is None for record in records)
    assert all(len(record["char_scores"]) == len(record["text"]) for record in records)


def test_csv_and_text_formats_hold_the_same_readings(checkpoint, crops, tmp_path, capsys):
    folder, files = crops
    _, records = read_json(folder, "--model", checkpoint, output=tmp_path / "out.json")
    _, rows = read_csv(folder, "--model", checkpoint, output=tmp_path / "o.csv")
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(row["file"], row["text"], float(row["score"]), float(row["min_char_score"])) for row in rows] == [
        (r["file"], r["text"], r["score"], min(r["char_scores"])) for r in records
    ]
    assert [row["regions"] for row in rows] == [" ".join(r["regions"]) for r in records]
    assert {(row["candidates"], row["unreadable"], row["rejected_text"], row["error"]) for row in rows} == {("",) * 4}

    capsys.readouterr()
    assert lpllm(["read", files[1], files[0], "--model", checkpoint]) == 0  # the order given
    lines = capsys.readouterr().out.splitlines()
    assert lines == [text_line(files[i], records[i]["text"], records[i]["score"]) for i in (1, 0)]


def test_the_text_format_keeps_one_line_per_plate_read():
    records = [
        {**dict.fromkeys(record_keys()), "file": "a.png", "text": "AB\t1\r\n2", "score": 0.123456},
        {**dict.fromkeys(record_keys()), "file": "b.png", "error": "not an image"},
        {**dict.fromkeys(record_keys()), "file": "c.png", "text": "CD3"},  # a reader without scores
    ]
    assert format_records(records, "text") == "a.png\tAB\\t1\\r\\n2\t0.1235\nc.png\tCD3\t\n"


def test_top_k_gives_the_pipelines_candidates_best_first(checkpoint, crops, reader, tmp_path):
    _, files = crops
    code, records = read_json(*files[:3], "--model", checkpoint, "--top_k", 3, output=tmp_path / "top.json")
    assert code == 0 and all(list(record) == list(record_keys(candidates=True)) for record in records)
    expected = [result[0] for result in reader(files[:3], top_k=3)]
    for record, result in zip(records, expected):
        assert len(record["candidates"]) == 3
        assert (record["candidates"][0]["text"], record["candidates"][0]["score"]) == (record["text"], record["score"])
        assert_same_readings(
            record["candidates"],
            [{key: candidate[key] for key in ("text", "score", "regions")} for candidate in result["candidates"]],
        )
        assert_same_readings(record["score"], result["score"])
    _, rows = read_csv(*files[:3], "--model", checkpoint, "--top_k", 3, output=tmp_path / "top.csv")
    for row, record in zip(rows, records):
        cells = [cell.rsplit(":", 1) for cell in row["candidates"].split("|")]
        assert [text for text, _ in cells] == [candidate["text"] for candidate in record["candidates"]]
        assert [float(score) for _, score in cells] == pytest.approx(
            [candidate["score"] for candidate in record["candidates"]], rel=1e-3
        )


def test_min_score_makes_readings_below_it_unreadable(checkpoint, crops, tmp_path, capsys):
    _, files = crops
    _, plain = read_json(*files[:2], "--model", checkpoint, output=tmp_path / "plain.json")
    code, records = read_json(*files[:2], "--model", checkpoint, "--min_score", "1.0", output=tmp_path / "none.json")
    assert code == 0 and all(list(record) == list(record_keys(min_score=True)) for record in records)
    assert all(record["unreadable"] is True and record["text"] == "" for record in records)
    assert [record["rejected_text"] for record in records] == [record["text"] for record in plain]
    assert [record["score"] for record in records] == [record["score"] for record in plain]
    _, rows = read_csv(*files[:2], "--model", checkpoint, "--min_score", "0", output=tmp_path / "all.csv")
    assert [(row["text"], row["unreadable"], row["rejected_text"]) for row in rows] == [
        (record["text"], "0", "") for record in plain
    ]
    capsys.readouterr()
    assert lpllm(["read", files[0], "--model", checkpoint, "--min_score", "1"]) == 0
    assert capsys.readouterr().out == f"{files[0]}\t\t{plain[0]['score']:.4f}\n"  # one line, the text empty


def test_min_score_saved_needs_a_calibrated_model_and_scores_need_a_scoring_reader(checkpoint, crops):
    _, files = crops
    with pytest.raises(ValueError, match="--min_score saved takes the model's abstain threshold, and .* has none"):
        lpllm(["read", files[0], "--model", checkpoint, "--min_score", "saved"])

    class UnscoredReader:  # a CTC baseline's interface: texts only
        name, paradigm = "crnn", "CNN + BiLSTM + CTC"

    with pytest.raises(ValueError, match="`min_score` needs plate scores, and crnn"):
        resolve_min_score(0.5, UnscoredReader())
    assert resolve_min_score(None, UnscoredReader()) is None


def test_a_reader_of_one_text_refuses_top_k_and_constrain_before_it_loads(crops, tmp_path):
    _, files = crops
    baseline = tmp_path / "crnn"
    baseline.mkdir()
    (baseline / "baseline_config.json").write_text("{}", encoding="utf-8")  # not a loadable baseline: never loaded
    for options in (["--top_k", "2"], ["--num_beams", "3"], ["--region", "BR", "--constrain"]):
        with pytest.raises(ValueError, match="is a CTC baseline, which reads one plate text; top_k/num_beams/constrain/fusion need"):
            lpllm(["read", files[0], "--model", str(baseline), *options])


@pytest.mark.parametrize(
    "options, expected",
    [([], ("auto", False, None)), (["--region", "none"], (None, False, None)),
     (["--region", "br", "--constrain", "--min_score", "0.5"], ("br", True, 0.5)),
     (["--min_score", "SAVED"], ("auto", False, "saved"))],
)  # fmt: skip
def test_region_constrain_and_min_score_options_parse(options, expected):
    args = parse_arguments(["a.png", "--model", "org/model", *options])
    assert (args.region, args.constrain, args.min_score) == expected


@pytest.mark.parametrize(
    "options, message",
    [(["--min_score", "1.5"], "must be in \\[0, 1\\]"), (["--min_score", "high"], "or the word saved"),
     (["--constrain"], "give `region` a region code"), (["--top_k", "0"], "whole number >= 1")],
)  # fmt: skip
def test_bad_trust_options_are_refused_before_anything_loads(options, message):
    with pytest.raises(ValueError, match=message):
        parse_arguments(["a.png", "--model", "org/model", *options])


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


def test_tracks_read_a_folder_of_frames_as_one_plate_like_the_pipeline(checkpoint, tmp_path):
    tracks = tmp_path / "tracks"
    for track, seeds in (("car1", (1, 2, 3)), ("car2", (4, 5))):
        (tracks / track).mkdir(parents=True)
        for frame, seed in enumerate(seeds):
            random_plate_image(seed).save(tracks / track / f"frame{frame}.png")
    code, records = read_json(str(tracks / "*"), "--tracks", "--model", checkpoint, output=tmp_path / "out.json")
    assert code == 0 and [record["file"] for record in records] == [str(tracks / "car1"), str(tracks / "car2")]
    reader = pipeline("image-to-text", model=checkpoint, trust_remote_code=True)
    frames = [[str(path) for path in sorted((tracks / track).iterdir())] for track in ("car1", "car2")]
    expected = reader(frames)
    assert [record["text"] for record in records] == [reading[0]["generated_text"] for reading in expected]
    assert [record["score"] for record in records] == pytest.approx([reading[0]["score"] for reading in expected], rel=1e-4)
    with pytest.raises(FileNotFoundError, match="--tracks"):
        lpllm(["read", str(tracks / "car1" / "frame0.png"), "--tracks", "--model", checkpoint])
