"""A training run's final evaluation is eval.py's: its report directories under `OUT/final_eval/` hold what
`eval.py` writes for the saved model, the model card takes its numbers from them, and `eval.py --compare` reuses
them without reading a plate again."""

import json
import os
from pathlib import Path

import pytest
import torch
from datasets import DatasetDict

from lpllm.cli import evaluate as eval_cli
from lpllm.cli import recognizers as cli_recognizers
from lpllm.evaluation import recognizers as evaluation_recognizers
from lpllm.training import sft as train_sft
from lpllm.training.data import PlateSource
from lpllm.training.final_evaluation import final_evaluation_sets, final_evaluations
from test_eval_helpers import save_plate_dataset, standard_splits, write_crop_folder
from tiny_lpllm import save_tiny_checkpoint


REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "recipes" / "smoke.yaml")
CPU = torch.device("cpu")
# What eval.py records of one evaluation; the rest (`created`, `command`, timings) says when and how it ran.
SAME_AS_EVAL = ("model", "dataset", "excluded", "normalization", "charset", "accuracy", "cer", "ned", "breakdowns",
                "per_position_accuracy", "confusion_pairs", "num_samples")


def crop_sets(root):
    write_crop_folder(root / "set_a", [("images/a.png", "AB123", "ok"), ("images/b.png", "O12", "ok")])
    write_crop_folder(root / "set_b", [("images/c.png", "XY9", "ok"), ("images/d.png", "", "ok")])
    (root / "notes").mkdir()  # no labels.csv: not a crop set
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("final_eval")
    dataset = save_plate_dataset(root / "data", standard_splits())
    realdata = crop_sets(root / "realdata")
    os.chdir(REPO)  # the recipe names its model config relative to the repository
    destination = train_sft.main([
        "--config", SMOKE, "--dataset_name", str(dataset), "--output_dir", str(root / "run"), "--max_steps", "1",
        "--final_eval_split", "test", "--realdata_dir", str(realdata),
    ])  # fmt: skip
    return root, dataset, realdata, destination


def saved_results(directory):
    return json.loads((Path(directory) / "results.json").read_text(encoding="utf-8"))


def test_training_writes_eval_reports_and_the_card_takes_their_numbers(trained_run):
    root, dataset, _, destination = trained_run
    reports = root / "run" / "final_eval"
    assert sorted(os.listdir(reports)) == ["realdata_set_a", "realdata_set_b", "test"]
    for report in reports.iterdir():
        assert {"results.json", "predictions.csv", "results.md"} <= set(os.listdir(report))
    test, set_a, set_b = (saved_results(reports / name) for name in ("test", "realdata_set_a", "realdata_set_b"))
    assert test["dataset"]["split"] == "test" and test["dataset"]["num_evaluated"] == 4
    assert set_a["dataset"]["num_evaluated"] == 2 and set_b["dataset"]["num_excluded"] == 1
    assert test["model"]["path"] == str(destination) and test["command"][0] == "train_sft.py"

    card_entries = json.loads((destination / "eval_results.json").read_text(encoding="utf-8"))
    expected = [
        {
            "name": name, "num_samples": results["num_samples"], "accuracy": results["accuracy"], "cer": results["cer"],
            "ece": results["calibration"]["ece"], "abstain": results["calibration"]["abstain"],
            "accuracy_at_coverage": results["calibration"]["accuracy_at_coverage"],
        }
        for name, results in (
            (f"{dataset} [test]", test), ("real crops: set_a", set_a), ("real crops: set_b", set_b)
        )
    ]
    assert card_entries == expected
    card = (destination / "README.md").read_text(encoding="utf-8")
    assert f"**{dataset} [test]** (4 plates): exact match {100 * test['accuracy']:.2f}%" in card
    assert "Not evaluated in this run." not in card
    # The scores were calibrated on the validation split before the evaluation, and the card says so.
    fit = json.loads((destination / "score_calibration.json").read_text(encoding="utf-8"))
    assert fit["split"] == "validation" and fit["num_plates"] > 0
    assert json.loads((destination / "processor_config.json").read_text())["score_temperature"] == fit["temperature"]
    assert "Scores are calibrated: temperature" in card and "| set | ECE (%) |" in card


def test_training_reports_hold_what_eval_py_writes_for_the_saved_model(trained_run, tmp_path):
    root, dataset, realdata, destination = trained_run
    for report, data, split in (("test", dataset, "test"), ("realdata_set_a", realdata / "set_a", "test")):
        from_eval = eval_cli.main([
            "--model_name_or_path", str(destination), "--dataset_name", str(data), "--split", split,
            "--output_dir", str(tmp_path / report), "--log_level", "WARNING",
        ])  # fmt: skip
        from_training = saved_results(root / "run" / "final_eval" / report)
        for key in SAME_AS_EVAL:
            assert from_training.get(key) == from_eval.get(key), key
        efficiency, eval_efficiency = from_training["efficiency"], from_eval["efficiency"]
        assert efficiency["device"] == eval_efficiency["device"]
        assert efficiency["parameters"] == eval_efficiency["parameters"]
        assert efficiency["latency"]["runs"] == eval_efficiency["latency"]["runs"]
        assert efficiency["throughput"]["batch_size"] == eval_efficiency["throughput"]["batch_size"]


def test_compare_reuses_the_training_reports_without_loading_the_model(trained_run, tmp_path, monkeypatch):
    root, dataset, _, _ = trained_run

    def no_model_load(*args, **kwargs):
        raise AssertionError("eval.py --compare loaded a model for a report directory")

    monkeypatch.setattr(cli_recognizers, "load_vision_language_recognizer", no_model_load)
    monkeypatch.setattr(evaluation_recognizers, "load_vision_language_recognizer", no_model_load)
    report = root / "run" / "final_eval" / "test"
    eval_cli.main([
        "--compare", str(report), "--names", "LP-LLM", "--dataset_name", str(dataset), "--split", "test",
        "--output_dir", str(tmp_path / "table"), "--log_level", "WARNING",
    ])  # fmt: skip
    (row,) = json.loads((tmp_path / "table" / "comparison.json").read_text(encoding="utf-8"))
    saved = saved_results(report)
    keys = ("model", "dataset", "accuracy", "cer", "ned", "calibration", "efficiency")
    assert row == {key: saved.get(key) for key in keys} and row["calibration"]["num_scored"] > 0
    assert not (tmp_path / "table" / "LP-LLM").exists() and not (tmp_path / "table" / "test").exists()


def source(name, label, local_dir):
    return PlateSource(name=name, label=label, dataset=DatasetDict(), local_dir=local_dir)


def test_sets_are_the_local_test_split_then_each_crop_set(tmp_path):
    realdata = crop_sets(tmp_path / "realdata")
    dataset = tmp_path / "data"
    dataset.mkdir()
    local = source(str(dataset), "data", str(dataset))
    assert [entry[:2] for entry in final_evaluation_sets([local], "test", str(realdata))] == [
        (f"{dataset} [test]", "test"),
        ("real crops: set_a", "realdata_set_a"),
        ("real crops: set_b", "realdata_set_b"),
    ]
    assert final_evaluation_sets([source("org/hub-dataset", "hub-dataset", None)], "test", None) == []
    assert final_evaluation_sets([local], None, str(tmp_path / "absent")) == []


def test_several_sources_each_get_a_report_named_after_them(tmp_path):
    sources = [source("data/a", "a", "data/a"), source("crops/labels.csv", "crops", "cache/crops-0123")]
    assert [entry[1:] for entry in final_evaluation_sets(sources, "test", None, name_by_source=True)] == [
        ("a_test", "data/a", "test"),
        ("crops_test", "cache/crops-0123", "test"),
    ]


def test_real_crop_sets_are_read_into_reports(tmp_path):
    model_dir = tmp_path / "final"
    save_tiny_checkpoint(model_dir)
    realdata = crop_sets(tmp_path / "realdata")
    evaluations = final_evaluations(model_dir, tmp_path / "run", [], None, realdata, CPU)
    assert [(e["name"], e["num_samples"]) for e in evaluations] == [("real crops: set_a", 2), ("real crops: set_b", 1)]
    assert all(0.0 <= e["accuracy"] <= 1.0 and e["cer"] >= 0 for e in evaluations)
    assert saved_results(tmp_path / "run" / "final_eval" / "realdata_set_a")["num_samples"] == 2
    assert final_evaluations(model_dir, tmp_path / "run2", [], None, tmp_path / "absent", CPU) == []
