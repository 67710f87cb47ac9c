"""eval.py end to end on tiny models: every output written, bad input reported per file, tables from saved results."""

import csv
import json
import os
import sys
from pathlib import Path

import evaluate
import pytest
import torch
from PIL import Image

from lpllm.evaluation import PLATE_METRICS_SCRIPT
from lpllm.evaluation.data import load_eval_data
from lpllm.evaluation.evaluation import EvalSettings, evaluate_recognizer
from lpllm.evaluation.normalization import PlateNormalizer
from lpllm.evaluation.recognizers import extract_plate_text
from lpllm.evaluation.report import render_markdown
from modeling_lpllm import DEFAULT_PLATE_CHARSET, DEFAULT_PROMPT
from test_eval_helpers import plate_row, save_plate_dataset, standard_splits, write_crop_folder
from tiny_lpllm import tiny_config, tiny_model, tiny_processor


REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
sys.path.insert(0, str(REPO))
from lpllm.cli import evaluate as eval_cli  # noqa: E402


FAST = ["--latency_runs", "2", "--latency_warmup", "1", "--batch_size", "2", "--log_level", "WARNING"]
PLOTS = ("accuracy_vs_severity.png", "confusion_heatmap.png", "per_position_accuracy.png")


@pytest.fixture(scope="module")
def plate_dataset(tmp_path_factory):
    return save_plate_dataset(tmp_path_factory.mktemp("plates") / "data", standard_splits())


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_tiny_model_evaluates_end_to_end_and_writes_all_outputs(tiny_checkpoint, plate_dataset, tmp_path):
    output = tmp_path / "report"
    results = eval_cli.main(
        [
            "--model_name_or_path",
            str(tiny_checkpoint),
            "--dataset_name",
            str(plate_dataset),
            "--split",
            "test",
            "--output_dir",
            str(output),
            *FAST,
        ]
    )
    for name in ("results.json", "predictions.csv", "results.md", *PLOTS):
        assert (output / name).is_file(), name
    assert not (output / "excluded.csv").exists()
    saved = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert saved["accuracy"] == results["accuracy"]
    assert 0.0 <= saved["accuracy"] <= 1.0 and saved["cer"] >= 0.0
    assert saved["dataset"]["num_evaluated"] == 4 and saved["dataset"]["num_excluded"] == 0
    assert saved["dataset"]["multi_frame"] is True
    assert saved["model"]["paradigm"] == "VLM + CMRM"
    assert saved["model"]["description"]["cmrm_num_slots"] == 8
    assert saved["model"]["parameters"]["total"] == sum(p.numel() for p in tiny_model().parameters())
    efficiency = saved["efficiency"]
    assert efficiency["device"].startswith("cpu (")
    assert efficiency["latency"]["runs"] == 2 and efficiency["latency"]["batch_size"] == 1
    assert efficiency["throughput"]["batch_size"] == 2
    assert set(saved["breakdowns"]["degradation_severity"]) == {"blur", "noise"}
    assert list(saved["breakdowns"]["degradation_severity"]["noise"]) == ["1", "3"]
    assert {key: value["num_samples"] for key, value in saved["breakdowns"]["subset"].items()} == {
        "blue": 2,
        "green": 2,
    }
    rows = read_csv(output / "predictions.csv")
    assert [row["id"] for row in rows] == ["plate-20", "plate-21", "plate-22", "plate-23"]
    assert [row["label"] for row in rows] == ["皖A88888", "AB999", "XY111", "CD222"]
    assert [row["num_images"] for row in rows] == ["1", "3", "1", "1"]
    # The report's accuracy is the share of rows marked correct in predictions.csv.
    assert saved["accuracy"] == pytest.approx(sum(row["prediction"] == row["label"] for row in rows) / 4)
    markdown = (output / "results.md").read_text(encoding="utf-8")
    # LP-LLM readings are scored: the table has the calibration columns and the report its confidence section.
    assert "| Method | Paradigm | Acc. (%) ↑ | ECE (%) ↓ | Acc. @90% cov. (%) ↑ | CER (%) ↓ | NED ↓ |" in markdown
    assert "## Confidence" in markdown
    assert all(0.0 <= float(row["score"]) <= 1.0 for row in rows)
    assert saved["calibration"]["num_scored"] == 4
    assert "## Excluded samples: 0" in markdown
    for name in PLOTS:
        with Image.open(output / name) as image:
            assert image.format == "PNG" and image.width > 100


class ScriptedReader:
    """A reader whose answers are fixed in the test, to check the pipeline's numbers by hand."""

    name, paradigm, device = "scripted", "script", torch.device("cpu")

    def __init__(self, answers):
        self.answers = answers
        self.model = torch.nn.Linear(2, 3)  # 9 parameters
        self.seen = []

    def read(self, batch, prompts):
        self.seen += [(len(images), prompt) for images, prompt in zip(batch, prompts)]
        return [self.answers.pop(0) for _ in batch]

    def describe(self):
        return {"model_type": "scripted"}


def test_pipeline_numbers_with_a_scripted_reader(plate_dataset):
    data = load_eval_data(plate_dataset, "test", PlateNormalizer(), DEFAULT_PLATE_CHARSET)
    # Right, right after normalisation, empty (wrong, no crash), None (wrong, no crash).
    reader = ScriptedReader(["皖A88888", "ab-999", "", None])
    metric = evaluate.load(str(PLATE_METRICS_SCRIPT))
    results, rows = evaluate_recognizer(
        reader, data, metric, PlateNormalizer(), EvalSettings(batch_size=3, latency_runs=0), DEFAULT_PLATE_CHARSET
    )
    assert reader.seen == [(1, DEFAULT_PROMPT), (3, DEFAULT_PROMPT), (1, DEFAULT_PROMPT), (1, DEFAULT_PROMPT)]
    assert results["accuracy"] == 0.5
    assert results["cer"] == pytest.approx(10 / 22)  # 0 + 0 + 5 + 5 edits over 7 + 5 + 5 + 5 characters
    assert results["num_empty_predictions"] == 2
    assert results["model"]["parameters"] == {"total": 9, "trainable": 9}
    assert results["efficiency"]["latency"] is None
    assert results["breakdowns"]["degradation"]["blur"]["accuracy"] == 1.0
    assert results["breakdowns"]["degradation"]["noise"]["accuracy"] == 0.0
    assert [row["prediction"] for row in rows] == ["皖A88888", "AB999", "", ""]
    assert [row["raw_prediction"] for row in rows] == ["皖A88888", "ab-999", "", ""]


class ScriptedCandidateReader(ScriptedReader):
    """A scripted reader of several candidates per plate: `answers` are each plate's candidate texts, best first,
    scored 0.5, 0.3, 0.2, ..."""

    def read_scored(self, batch, prompts):
        readings = []
        for texts in (self.answers.pop(0) for _ in batch):
            candidates = [{"text": text, "score": 0.5 / (index + 1)} for index, text in enumerate(texts)]
            readings.append({**candidates[0], "candidates": candidates})
        return readings


def test_top_k_accuracy_counts_plates_whose_label_is_among_the_candidates(plate_dataset):
    data = load_eval_data(plate_dataset, "test", PlateNormalizer(), DEFAULT_PLATE_CHARSET)
    # Right first; right second after normalisation; right third; never right.
    reader = ScriptedCandidateReader(
        [["皖A88888", "皖A8888", "X"], ["AB998", "ab-999", "B"], ["XY11", "XY1", "xy 111"], ["CD2", "CD22", "C"]]
    )
    metric = evaluate.load(str(PLATE_METRICS_SCRIPT))
    results, rows = evaluate_recognizer(
        reader, data, metric, PlateNormalizer(), EvalSettings(batch_size=3, latency_runs=0), DEFAULT_PLATE_CHARSET
    )
    assert results["accuracy"] == 0.25
    assert results["top_k"] == {"k": 3, "accuracy": 0.75}
    assert rows[1]["candidates"] == "AB998:0.5|ab-999:0.25|B:0.1667"
    assert "| Top-3 accuracy (%) — label among the candidates | 75.00 |" in render_markdown(results)
    results, _ = evaluate_recognizer(
        ScriptedReader(["皖A88888", "AB999", "", ""]), data, metric, PlateNormalizer(),
        EvalSettings(batch_size=3, latency_runs=0), DEFAULT_PLATE_CHARSET,
    )  # fmt: skip
    assert results["top_k"] is None


def test_eval_with_top_k_keeps_the_candidates_of_the_model(tiny_checkpoint, plate_dataset, tmp_path):
    output = tmp_path / "report"
    argv = ["--model_name_or_path", str(tiny_checkpoint), "--dataset_name", str(plate_dataset), "--output_dir",
            str(output), "--top_k", "3", "--region", "none", *FAST]  # fmt: skip
    results = eval_cli.main(argv)
    saved = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert saved["top_k"]["k"] == 3 and saved["top_k"]["accuracy"] >= saved["accuracy"]
    assert saved["model"]["description"]["generation"]["region"] is None
    assert saved["model"]["description"]["generation"]["decoding"] == "beam search, 3 beams"
    rows = read_csv(output / "predictions.csv")
    normalizer = PlateNormalizer()
    for row in rows:
        candidates = [candidate.rsplit(":", 1) for candidate in row["candidates"].split("|")]
        assert len(candidates) == 3 and candidates[0][0] == row["raw_prediction"]
        assert float(candidates[0][1]) == pytest.approx(float(row["score"]), rel=1e-3)
    in_candidates = [
        row["label"] in {normalizer(text, row["region"] or None) for text, _ in
                         (candidate.rsplit(":", 1) for candidate in row["candidates"].split("|"))}
        for row in rows
    ]  # fmt: skip
    assert results["top_k"]["accuracy"] == pytest.approx(sum(in_candidates) / len(rows))
    assert "Top-3 accuracy (%)" in (output / "results.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "options, region",
    [([], "auto"), (["--region", "none"], None), (["--region", "None"], None), (["--region", "auto"], "auto"),
     (["--region", "BR", "--constrain"], "BR")],
)  # fmt: skip
def test_eval_region_options_parse(plate_dataset, tmp_path, options, region):
    args = eval_cli.parse_arguments(
        ["--model_name_or_path", "org/model", "--dataset_name", str(plate_dataset), "--output_dir", str(tmp_path),
         *options]
    )  # fmt: skip
    assert args.region == region and args.constrain == ("--constrain" in options)


def test_eval_refuses_top_k_for_a_baseline_and_constrain_without_a_region(plate_dataset, tmp_path):
    baseline = tmp_path / "crnn"
    baseline.mkdir()
    (baseline / "baseline_config.json").write_text("{}", encoding="utf-8")  # never loaded: refused before
    common = ["--dataset_name", str(plate_dataset), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(ValueError, match="a CTC baseline, which reads one plate text; top_k/num_beams/constrain/fusion need an LP-LLM"):
        eval_cli.parse_arguments(["--compare", "org/model", str(baseline), "--top_k", "2", *common])
    with pytest.raises(ValueError, match="give `region` a region code"):
        eval_cli.parse_arguments(["--model_name_or_path", "org/model", "--constrain", *common])
    with pytest.raises(ValueError, match="`top_k` must be a whole number >= 1"):
        eval_cli.parse_arguments(["--model_name_or_path", "org/model", "--top_k", "0", *common])
    assert not (tmp_path / "out").exists()


def test_bad_input_is_reported_per_file_and_excluded(tiny_checkpoint, tmp_path):
    folder = write_crop_folder(
        tmp_path / "crops",
        [
            ("images/a.png", "AB123", "ok"),
            ("images/b.png", "AB124", "missing"),
            ("images/c.png", "AB125", "corrupt"),
            ("images/d.png", "", "ok"),
            ("images/e.png", "ABЖ12", "ok"),  # a letter outside the charset
            ("images/f.png", "O12", "ok"),  # a US plate: O is read as 0
        ],
    )
    output = tmp_path / "report"
    eval_cli.main(
        [
            "--model_name_or_path",
            str(tiny_checkpoint),
            "--dataset_name",
            str(folder),
            "--output_dir",
            str(output),
            *FAST,
        ]
    )
    saved = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert saved["dataset"]["num_rows"] == 6
    assert saved["dataset"]["num_evaluated"] == 2 and saved["dataset"]["num_excluded"] == 4
    assert saved["num_samples"] == 2
    reasons = {entry["file"]: entry["reason"] for entry in saved["excluded"]}
    assert "image file not found" in reasons["images/b.png"]
    assert "unreadable image" in reasons["images/c.png"]
    assert reasons["images/d.png"] == "empty label"
    assert "outside the charset: 'Ж'" in reasons["images/e.png"]
    assert len(read_csv(output / "excluded.csv")) == 4
    rows = read_csv(output / "predictions.csv")
    assert [(row["id"], row["label"], row["raw_label"]) for row in rows] == [
        ("images/a.png", "AB123", "AB123"),
        ("images/f.png", "012", "O12"),
    ]
    assert saved["breakdowns"]["source"] == {"crops": saved["breakdowns"]["region"]["US"]}
    assert "## Excluded samples: 4" in (output / "results.md").read_text(encoding="utf-8")


def test_corrupt_image_in_a_saved_dataset_is_excluded(tmp_path):
    rows = [plate_row(0, "AB123", degradation="real", severity=-1), plate_row(1, "AB124"), plate_row(2, "AB125")]
    rows[1]["images"] = [{"bytes": b"garbage", "path": None}]
    directory = save_plate_dataset(tmp_path / "data", {"test": rows})
    data = load_eval_data(directory, "test")
    assert [sample.id for sample in data.samples] == ["plate-0", "plate-2"]
    # Severity -1 means unknown in the dataset contract; 0 is the level of undegraded ("none") samples.
    assert [(s.degradation, s.severity) for s in data.samples] == [("real", None), ("none", 0)]
    assert [(e.id, e.reason.split(" (")[0]) for e in data.excluded] == [("plate-1", "unreadable image")]


def test_bad_dataset_paths_and_splits_get_clear_errors(tmp_path, plate_dataset):
    with pytest.raises(ValueError, match="not found"):
        load_eval_data(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="has no split 'dev'"):
        load_eval_data(plate_dataset, "dev")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "labels.csv").write_text("image,label\nx.png,AB1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'file' and 'text'"):
        load_eval_data(tmp_path / "bad")


def test_model_dir_without_processor_gives_a_clear_message(plate_dataset, tmp_path):
    model_dir = tmp_path / "no_processor"
    tiny_model().save_pretrained(model_dir)
    with pytest.raises(ValueError, match="no usable processor"):
        eval_cli.main(
            [
                "--model_name_or_path",
                str(model_dir),
                "--dataset_name",
                str(plate_dataset),
                "--output_dir",
                str(tmp_path / "out"),
                *FAST,
            ]
        )


def test_stock_qwen3_vl_evaluates_zero_shot(plate_dataset, tmp_path):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    processor = tiny_processor()
    tokenizer = processor.tokenizer
    lpllm_config = tiny_config(processor)  # the same tiny sizes, as a plain Qwen3-VL config
    config = Qwen3VLConfig(
        text_config=lpllm_config.text_config.to_dict(),
        vision_config=lpllm_config.vision_config.to_dict(),
        **processor.special_token_ids(),
    )
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model_dir = tmp_path / "stock"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    output = tmp_path / "report"
    eval_cli.main(
        [
            "--model_name_or_path",
            str(model_dir),
            "--dataset_name",
            str(plate_dataset),
            "--output_dir",
            str(output),
            "--max_new_tokens",
            "4",
            *FAST,
        ]
    )
    saved = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert saved["model"]["paradigm"] == "VLM"
    assert saved["model"]["description"]["model_type"] == "qwen3_vl"
    assert saved["model"]["description"]["generation"]["answer_extraction"] == "longest plate-character run"
    assert saved["model"]["description"]["num_views"] == 1  # where the tables' notes look for it
    assert len(read_csv(output / "predictions.csv")) == 4


def test_extract_plate_text_from_free_form_answers():
    assert extract_plate_text('The plate reads "AB 123 CD".') == "AB 123 CD"
    assert extract_plate_text("皖A12345") == "皖A12345"
    assert extract_plate_text("no plate here") == "no plate here"


def test_existing_output_dir_needs_overwrite(tiny_checkpoint, plate_dataset, tmp_path):
    output = tmp_path / "report"
    output.mkdir()
    (output / "notes.txt").write_text("mine", encoding="utf-8")
    args = [
        "--model_name_or_path",
        str(tiny_checkpoint),
        "--dataset_name",
        str(plate_dataset),
        "--output_dir",
        str(output),
        "--max_samples",
        "1",
        *FAST,
    ]
    with pytest.raises(FileExistsError, match="--overwrite"):
        eval_cli.main(args)
    eval_cli.main([*args, "--overwrite"])
    assert (output / "results.json").is_file()
    assert (output / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert not [name for name in os.listdir(output) if name.endswith(".tmp")]


def saved_report(
    directory, name, paradigm, accuracy, cer, ned, total, latency_ms, model_type, cmrm=None, num_views=None
):
    directory.mkdir(parents=True)
    description = {"model_type": model_type}
    if num_views is not None:
        description["num_views"] = num_views
    if cmrm is not None:
        description.update(
            cmrm_enabled=cmrm is not False, cmrm_num_slots=cmrm or None, cmrm_num_layers=2, cmrm_parameters=4096
        )
    results = {
        "accuracy": accuracy,
        "cer": cer,
        "ned": ned,
        "num_samples": 200,
        "model": {
            "name": name,
            "paradigm": paradigm,
            "parameters": {"total": total, "trainable": total},
            "description": description,
        },
        "dataset": {"name": "ccpd_blur", "split": "test", "num_excluded": 1},
        "efficiency": {"device": "cpu (test CPU, 2 threads)", "latency": {"median_ms": latency_ms}},
    }
    (directory / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return directory


def test_compare_and_ablation_tables_render_from_saved_results(tmp_path):
    lpllm = saved_report(
        tmp_path / "r1", "lpllm", "VLM + CMRM", 0.915, 0.021, 0.0304, 2_130_000_000, 123.44, "lpllm", cmrm=8
    )
    crnn = saved_report(tmp_path / "r2", "crnn", "CNN + BiLSTM + CTC", 0.7, 0.1, 0.1, 1_282_416, 4.56, "baseline-crnn")
    table = eval_cli.main(["--compare", str(lpllm), str(crnn), "--output_dir", str(tmp_path / "t1")])
    assert "| lpllm | VLM + CMRM | 91.50 | 2.10 | 0.030 | 2.13B | 123.4 |" in table
    assert "| crnn | CNN + BiLSTM + CTC | 70.00 | 10.00 | 0.100 | 1.28M | 4.6 |" in table
    assert "- lpllm: ccpd_blur [test], n=200, 1 excluded; measured on cpu (test CPU, 2 threads)" in table
    assert (tmp_path / "t1" / "comparison.md").read_text(encoding="utf-8") == table
    assert json.loads((tmp_path / "t1" / "comparison.json").read_text(encoding="utf-8"))[1]["accuracy"] == 0.7

    no_cmrm = saved_report(
        tmp_path / "r3", "lpllm-nocmrm", "VLM (CMRM off)", 0.885, 0.03, 0.04, 2_120_000_000, 120.0, "lpllm", cmrm=False
    )
    table = eval_cli.main(["--ablation_table", str(no_cmrm), str(lpllm), "--output_dir", str(tmp_path / "t2")])
    assert "| A | lpllm-nocmrm | lpllm | off | 2.12B | 4.1K | 88.50 | 3.00 | 0.040 | 0.00 (ref.) |" in table
    assert "| B | lpllm | lpllm | K=8, L=2 | 2.13B | 4.1K | 91.50 | 2.10 | 0.030 | +3.00 |" in table
    table = eval_cli.main(
        ["--ablation_table", str(no_cmrm), str(lpllm), "--names", "B", "C", "--output_dir", str(tmp_path / "t3")]
    )
    assert table.splitlines()[2].startswith("| B | lpllm-nocmrm |")


def test_comparison_table_says_how_many_views_each_plate_was_read_from(tmp_path):
    lpllm = saved_report(tmp_path / "r1", "lpllm", "VLM + CMRM", 0.97, 0.01, 0.01, 2_420_000, 43.0, "lpllm", 8, 5)
    crnn = saved_report(
        tmp_path / "r2", "crnn", "CNN + BiLSTM + CTC", 0.9, 0.02, 0.02, 1_280_000, 7.0, "baseline-crnn", num_views=3
    )
    single = saved_report(tmp_path / "r3", "one", "VLM + CMRM", 0.96, 0.01, 0.01, 2_420_000, 9.0, "lpllm", 8, 1)
    table = eval_cli.main(["--compare", str(lpllm), str(crnn), str(single), "--output_dir", str(tmp_path / "t")])
    assert "- lpllm: ccpd_blur [test], n=200, 1 excluded; each plate read from 5 views; measured on" in table
    assert "- crnn: ccpd_blur [test], n=200, 1 excluded; each plate read from 3 views; measured on" in table
    assert "- one: ccpd_blur [test], n=200, 1 excluded; measured on" in table


@pytest.mark.skipif(
    not (REALDATA / "openalpr_us" / "labels.csv").is_file(), reason="shared/realdata is not beside the checkout"
)
def test_real_crops_evaluate_out_of_the_box(tiny_checkpoint, tmp_path):
    output = tmp_path / "report"
    eval_cli.main(
        [
            "--model_name_or_path",
            str(tiny_checkpoint),
            "--dataset_name",
            str(REALDATA / "openalpr_us"),
            "--output_dir",
            str(output),
            "--max_samples",
            "3",
            *FAST,
        ]
    )
    saved = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert saved["dataset"]["num_rows"] == 3
    assert saved["dataset"]["name"] == "openalpr_us"
    assert set(saved["breakdowns"]["region"]) == {"US"}
    assert len(read_csv(output / "predictions.csv")) == saved["dataset"]["num_evaluated"]
