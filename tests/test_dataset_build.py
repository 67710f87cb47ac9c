"""The command line, and what a built dataset looks like to the processor."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_from_disk
from PIL import Image
from test_dataset_fixtures import REALDATA
from tiny_lpllm import tiny_processor

from dataset_scripts import build
from dataset_scripts.pipeline import BuildOptions
from dataset_scripts.schema import FEATURES, conversation
from dataset_scripts.synthetic.generate import SyntheticConfig, build_synthetic
from modeling_lpllm.processing_lpllm import DEFAULT_PROMPT, plate_messages

REPO = Path(__file__).resolve().parents[1]


def _crops_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    Image.new("RGB", (90, 30), (200, 40, 40)).save(folder / "ABC1234.png")
    Image.new("RGB", (90, 30), (40, 200, 40)).save(folder / "DEF5678.png")
    (folder / "GHI9012.png").write_bytes(b"")
    return folder


def test_cli_skips_bad_inputs_and_exits_zero(tmp_path, capsys):
    folder = _crops_folder(tmp_path / "crops")
    out = tmp_path / "out"
    code = build.main(
        [
            "--source",
            "crops",
            "--input",
            str(folder),
            "--output",
            str(out),
            "--region",
            "US",
            "--workers",
            "0",
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Wrote 2 samples" in printed and "Skipped 1 input(s) (empty_file 1)" in printed
    with open(out / "skipped.csv", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [
            ["file", "reason"],
            ["GHI9012.png", "empty_file: file is empty (0 bytes); expected an image"],
        ]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (
        summary["num_samples"] == 2
        and summary["skip_reasons"] == {"empty_file": 1}
        and summary["regions"] == {"US": 2}
    )
    assert set(load_from_disk(str(out))) == {"train", "validation", "test"}

    # An existing output is an error without --overwrite, and left as it was.
    assert (
        build.main(["--source", "crops", "--input", str(folder), "--output", str(out), "--workers", "0", "--quiet"])
        == 1
    )
    assert "--overwrite" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == summary


def test_cli_strict_exits_non_zero_naming_the_file(tmp_path):
    folder = _crops_folder(tmp_path / "crops")
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "dataset_scripts.build",
            "--source",
            "crops",
            "--input",
            str(folder),
            "--output",
            str(tmp_path / "out"),
            "--strict",
            "--quiet",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 1
    assert "GHI9012.png: empty_file" in process.stderr and "strict" in process.stderr
    assert not (tmp_path / "out").exists()


def test_cli_argument_errors(tmp_path, capsys):
    # Wrong arguments exit 2 before any work, naming the field.
    assert build.main(["--source", "ccpd", "--output", str(tmp_path / "out"), "--quiet"]) == 2
    assert "`input` is required for `source` ccpd" in capsys.readouterr().err
    assert build.main(["--source", "synthetic", "--output", str(tmp_path / "out"), "--splits", "0.9", "0.1"]) == 2
    assert "`splits` must be three" in capsys.readouterr().err
    assert build.main(["--source", "synthetic", "--output", str(tmp_path / "out"), "--regions", "XX"]) == 2
    assert "Cannot synthesise region(s) ['XX']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert (
        build.main(
            ["--source", "ccpd", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out"), "--quiet"]
        )
        == 1
    )
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        build.main(["--source", "kitti", "--output", str(tmp_path / "out")])
    assert caught.value.code == 2


def test_cli_synthetic_multi_frame(tmp_path):
    out = tmp_path / "syn"
    args = [
        "--source",
        "synthetic",
        "--output",
        str(out),
        "--num",
        "6",
        "--frames",
        "3",
        "--seed",
        "5",
        "--regions",
        "BR",
        "EU",
        "--workers",
        "0",
        "--quiet",
    ]
    assert build.main(args) == 0
    rows = [row for split in load_from_disk(str(out)).values() for row in split]
    assert len(rows) == 6 and all(len(row["images"]) == 3 == row["num_frames"] for row in rows)
    assert {row["region"] for row in rows} <= {"BR", "EU"}


def _expected_chat(text: str, num_images: int) -> str:
    images = "<|vision_start|><|image_pad|><|vision_end|>" * num_images
    return f"<|im_start|>user\n{images}{DEFAULT_PROMPT}<|im_end|>\n<|im_start|>assistant\n{text}<|im_end|>\n"


@pytest.mark.parametrize("frames", [1, 2])
def test_built_rows_go_through_the_chat_template_to_the_exact_prompt_and_label_tokens(tmp_path, frames):
    result = build_synthetic(
        tmp_path / "syn",
        SyntheticConfig(num=3, frames=frames, regions=("CN",)),
        BuildOptions(seed=2, progress=False, parquet=False),
    )
    processor = tiny_processor()
    tokenizer = processor.tokenizer
    row = next(row for split in result.dataset.values() for row in split)
    assert conversation(row) == plate_messages(DEFAULT_PROMPT, frames, row["text"])

    full = processor.apply_chat_template(conversation(row), tokenize=False)
    prompt = processor.apply_chat_template(conversation(row)[:1], tokenize=False, add_generation_prompt=True)
    assert full == _expected_chat(row["text"], frames)
    assert full.startswith(prompt)

    full_ids = processor(text=[full], images=row["images"], return_tensors="pt")["input_ids"][0].tolist()
    prompt_ids = processor(text=[prompt], images=row["images"], return_tensors="pt")["input_ids"][0].tolist()
    assert full_ids[: len(prompt_ids)] == prompt_ids
    label_ids = full_ids[len(prompt_ids) :]
    assert label_ids == tokenizer.convert_tokens_to_ids(list(row["text"]) + ["<|im_end|>", "\n"])
    assert tokenizer.unk_token_id not in full_ids
    assert full_ids.count(processor.image_token_id) > 0 and prompt_ids.count(processor.vision_start_token_id) == frames


def test_realdata_rows_also_fit_the_template(tmp_path):
    from dataset_scripts.crops import build_crops

    result = build_crops(
        REALDATA / "openalpr_br", tmp_path / "br", options=BuildOptions(progress=False, parquet=False)
    )
    processor = tiny_processor()
    row = result.dataset["train"][0]
    assert processor.apply_chat_template(conversation(row), tokenize=False) == _expected_chat(row["text"], 1)
    assert result.dataset["train"].features == FEATURES


def test_push_to_hub_sends_the_card_then_the_data(tmp_path, monkeypatch):
    from dataset_scripts import pipeline

    calls = []
    monkeypatch.setattr(
        pipeline, "create_repo", lambda repo_id, **kwargs: calls.append(("create_repo", repo_id, kwargs))
    )
    monkeypatch.setattr(
        pipeline.DatasetCard, "push_to_hub", lambda card, repo_id, **kwargs: calls.append(("card", repo_id, card.text))
    )
    monkeypatch.setattr(
        pipeline.DatasetDict,
        "push_to_hub",
        lambda dataset, repo_id, **kwargs: calls.append(("data", repo_id, sorted(dataset), kwargs)),
    )
    options = BuildOptions(progress=False, push_to_hub="me/plates", private=True)
    build_synthetic(tmp_path / "syn", SyntheticConfig(num=3, regions=("US",)), options)
    assert [call[0] for call in calls] == ["create_repo", "card", "data"]
    assert calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert "# LP-LLM synthetic plates" in calls[1][2] and "degradation" in calls[1][2]
    assert calls[2][1:] == ("me/plates", ["test", "train", "validation"], {"private": True})
