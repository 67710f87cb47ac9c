"""The helper scripts of the embedded default."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
BENCHMARKS = SCRIPTS.parent / "benchmarks"


def load_script(name, folder=SCRIPTS):
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_curve_is_plotted_and_tabulated(tmp_path, capsys):
    history = [
        {"loss": 5.0, "minutes": 0.5, "step": 10},
        {"eval_exact_match": 0.25, "eval_cer": 0.4, "minutes": 1.0, "step": 20},
        {"loss": 3.0, "minutes": 1.5, "step": 30},
        {"eval_exact_match": 0.5, "eval_cer": 0.2, "minutes": 2.0, "step": 40},
    ]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    load_script("plot_training_curve").main(["--run_dirs", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "| 1.0 | 20 | 25.0 | 40.0 |" in printed and "| 2.0 | 40 | 50.0 | 20.0 |" in printed
    assert (tmp_path / "training_curve.png").stat().st_size > 0


def test_several_training_curves_are_compared_with_when_each_left_the_plateau(tmp_path, capsys):
    script = load_script("plot_training_curve")
    for name, losses in (("fast", [2.5, 0.8, 0.3]), ("slow", [2.5, 2.4, 1.5])):
        history = [{"loss": loss, "minutes": 1.0 + index, "step": 10 * (index + 1)} for index, loss in enumerate(losses)]
        history.append({"eval_exact_match": 0.9 if name == "fast" else 0.4, "eval_cer": 0.1, "minutes": 3.0, "step": 30})
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    output = tmp_path / "curves.png"
    runs = ["--run_dirs", str(tmp_path / "fast"), str(tmp_path / "slow")]
    script.main([*runs, "--names", "A", "B", "--output", str(output)])
    printed = capsys.readouterr().out
    assert "| A | 2.0 | 90.0 at 3.0 min |" in printed and "| B | never | 40.0 at 3.0 min |" in printed
    assert output.stat().st_size > 0
    with pytest.raises(ValueError, match="`output` is needed"):  # two runs need --output
        script.main(runs)
    with pytest.raises(ValueError, match="`names` gives 1 names for 2 runs"):
        script.main([*runs, "--names", "A", "--output", str(output)])


def test_training_curve_without_a_log_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="trainer_state.json"):
        load_script("plot_training_curve").main(["--run_dirs", str(tmp_path)])


def test_learning_speed_probe_prints_a_curve_that_the_plot_script_reads(tmp_path, capsys, monkeypatch):
    from datasets import Dataset, DatasetDict

    from modeling_lpllm import plate_messages
    from tiny_lpllm import random_plate_image

    def split(size, seed):
        rows = []
        for index in range(size):
            messages = plate_messages(answer="AB12CD3")
            rows.append(
                {"images": [random_plate_image(seed * 100 + index)], "prompt": [messages[0]],
                 "completion": [messages[1]]}
            )
        return Dataset.from_list(rows)

    DatasetDict({"train": split(8, 1), "validation": split(4, 2)}).save_to_disk(tmp_path / "plates")
    monkeypatch.chdir(SCRIPTS.parent)
    load_script("probe_learning_speed", BENCHMARKS).main(
        ["--name", "tiny", "--dataset_name", str(tmp_path / "plates"), "--config", "recipes/models/lpllm_tiny.json",
         "--image_size", "32", "64", "--batch", "4", "--num_validation", "4", "--minutes", "0.02", "--every", "0.01"]
    )
    log = tmp_path / "tiny.log"
    log.write_text(capsys.readouterr().out)
    readings = [line for line in log.read_text().splitlines() if " min " in line]
    assert readings and all("teacher-forced exact" in line for line in readings)

    load_script("plot_probes", BENCHMARKS).main([str(log), "--output", str(tmp_path / "probes.png")])
    assert "| tiny |" in capsys.readouterr().out
    assert (tmp_path / "probes.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="exists"):
        load_script("plot_probes", BENCHMARKS).main([str(log), "--output", str(tmp_path / "probes.png")])


def test_training_step_benchmark_compares_the_same_computation_in_every_set_up(tmp_path, capsys, monkeypatch):
    from datasets import Dataset, DatasetDict

    from modeling_lpllm import plate_messages
    from tiny_lpllm import random_plate_image

    rows = []
    for index in range(6):
        messages = plate_messages(answer="AB12CD3")
        rows.append({"images": [random_plate_image(index)], "prompt": [messages[0]], "completion": [messages[1]]})
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(tmp_path / "plates")
    monkeypatch.chdir(SCRIPTS.parent)
    tiny = ["--dataset_name", str(tmp_path / "plates"), "--config", "recipes/models/lpllm_tiny.json",
            "--image_size", "32", "64", "--batch", "4", "--steps", "1", "--rounds", "1"]  # fmt: skip
    timings = load_script("bench_training_step", BENCHMARKS).main([*tiny, "--bf16", "always"])
    printed = capsys.readouterr().out
    assert list(timings) == [
        "stock", "+ linear patch embedding", "+ no checkpointing", "+ decoded in memory", "+ fused AdamW",
        "+ bf16 autocast", "+ batched vision attention", "+ eager attention", "+ cached tokenization",
        "+ whole-word prompt tokens", "+ batched pixel values", "+ positions per distinct row", "+ Muon",
    ]  # fmt: skip
    assert all(milliseconds > 0 for milliseconds in timings.values())
    assert "first-batch loss, every set-up" in printed and "| stock |" in printed and "1.00x" in printed
    # --last: only the recipe and the set-up after it, the speed-up against the recipe
    timings = load_script("bench_training_step", BENCHMARKS).main([*tiny, "--bf16", "always", "--last", "2"])
    assert list(timings) == ["+ positions per distinct row", "+ Muon"]
    assert "| + positions per distinct row | " in capsys.readouterr().out
    # Where bfloat16 would be emulated, the bf16 set-up is left out and the recipe's float32 timed instead.
    monkeypatch.setattr("lpllm.training.precision.has_native_bf16", lambda device: False)
    benchmark = load_script("bench_training_step", BENCHMARKS)
    assert [name for name in benchmark.main(tiny) if "bf16" in name] == []
    assert "No native bfloat16 on this CPU" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no dataset there"):
        benchmark.main(["--dataset_name", str(tmp_path / "nothing")])


def test_batch_preparation_benchmark_checks_its_set_ups_agree_and_times_them(tmp_path, monkeypatch, capsys):
    from datasets import Dataset, DatasetDict

    from modeling_lpllm import plate_messages
    from tiny_lpllm import random_plate_image

    rows = []
    for index in range(6):
        messages = plate_messages(answer="AB12CD3")
        image = random_plate_image(index, size=(120, 40))
        rows.append({"images": [image], "prompt": [messages[0]], "completion": [messages[1]]})
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(tmp_path / "plates")
    benchmark = load_script("bench_batch_preparation", BENCHMARKS)
    arguments = ["--dataset_name", str(tmp_path / "plates"), "--image_size", "32", "224", "--batch", "4",
                 "--batches", "2", "--rounds", "1"]  # fmt: skip
    timings = benchmark.main(arguments)
    assert list(timings) == ["PIL jitter + image processor", "OpenCV jitter", "+ batched pixel values"]
    assert all(milliseconds > 0 for milliseconds in timings.values())
    assert "agree within" in capsys.readouterr().out
    # A pixel path that gives other values is caught before anything is timed.
    monkeypatch.setattr(benchmark, "build_offline_processor", broken_pixel_path(benchmark.build_offline_processor))
    with pytest.raises(SystemExit, match="disagree"):
        benchmark.main(arguments)
    with pytest.raises(SystemExit, match="no dataset there"):
        benchmark.main(["--dataset_name", str(tmp_path / "nothing")])


def broken_pixel_path(build_offline_processor):
    def build(**kwargs):
        processor = build_offline_processor(**kwargs)
        batched = processor.fixed_size_image_inputs

        def off_by_a_little(images):
            inputs = batched(images)
            inputs["pixel_values"] = inputs["pixel_values"] + 1e-3
            return inputs

        processor.fixed_size_image_inputs = off_by_a_little
        return processor

    return build


def test_deskew_benchmark_times_the_three_preparations_and_counts_the_levelled_crops(tmp_path, capsys):
    from datasets import Dataset, DatasetDict
    from test_deskew import plate_crop

    rows = [
        {"images": [plate_crop(tilt)], "degradation": "perspective" if tilt else "none"} for tilt in (0, 0, 12, -9)
    ]
    DatasetDict({"test": Dataset.from_list(rows)}).save_to_disk(tmp_path / "plates")
    timings, levelled = load_script("bench_deskew", BENCHMARKS).main(
        ["--dataset_name", str(tmp_path / "plates"), "--image_size", "32", "224", "--rounds", "1"]
    )
    assert list(timings) == ["off", "deskew_max_degrees=20", "deskew_max_degrees=20, rectify_plate"]
    assert all(ms > 0 for ms in timings.values())
    assert levelled == {"perspective": 2}
    assert "| perspective | 2 | 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no dataset there"):
        load_script("bench_deskew", BENCHMARKS).main(["--dataset_name", str(tmp_path / "nothing")])


def test_deskew_benchmark_sheet_shows_each_preparation_of_the_chosen_crops(tmp_path):
    from datasets import Dataset, DatasetDict
    from PIL import Image
    from test_deskew import plate_crop

    rows = [{"images": [plate_crop(tilt)], "degradation": "perspective" if tilt else "none"} for tilt in (0, 12, -9)]
    DatasetDict({"test": Dataset.from_list(rows)}).save_to_disk(tmp_path / "plates")
    arguments = ["--dataset_name", str(tmp_path / "plates"), "--image_size", "32", "224", "--rounds", "1"]
    load_script("bench_deskew", BENCHMARKS).main([*arguments, "--sheet", str(tmp_path / "sheet.png")])
    sheet = np.asarray(Image.open(tmp_path / "sheet.png").convert("RGB")).astype(int)
    assert sheet.shape == (2 * 32 + 6, 3 * 224 + 2 * 6, 3)  # two perspective crops, three preparations
    # The levelled strip differs from the plain one; the plain one is the crop squashed to the strip.
    plain, levelled = sheet[:32, :224], sheet[:32, 230:454]
    assert np.abs(plain - levelled).mean() > 5
    expected = np.asarray(plate_crop(12).resize((224, 32), Image.BICUBIC)).astype(int)
    np.testing.assert_array_equal(plain, expected)
    with pytest.raises(SystemExit, match="no 'dark' crops"):
        load_script("bench_deskew", BENCHMARKS).main([*arguments, "--sheet", str(tmp_path / "x.png"),
                                                       "--sheet_degradation", "dark"])  # fmt: skip
    assert not (tmp_path / "x.png").exists()
