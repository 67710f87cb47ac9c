"""benchmarks/gpu_suite.py on its tiny model on the CPU: every measurement is recorded, the numbers are sane, and a
measurement that fails, runs out of memory or is unsupported becomes a row instead of ending the run."""

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest
import torch


SUITE_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"
ROW_KINDS = {"latency", "cmrm_on_off", "lora_train_step", "throughput", "static_cache", "compile"}
# Few repeats, small images and batches: the behaviour is under test, not the timings.
QUICK = [
    "--tiny", "--device", "cpu", "--repeats", "2", "--warmups", "1", "--batch_sizes", "1,2,4", "--train_batch_size", "2",
    "--skip_compile",
]  # fmt: skip


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny model's operations are too small to share out between threads, and on a busy machine the threads wait
    on each other (a run took 7x as long with two): one thread keeps the runs short either way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rows_of(data: dict, kind: str) -> list[dict]:
    return [row for row in data["rows"] if row["kind"] == kind]


def expected_lora_parameters(text_config: dict, rank: int) -> int:
    """LoRA adds rank * (inputs + outputs) to each of the 7 projections of each language-model layer."""
    hidden, intermediate = text_config["hidden_size"], text_config["intermediate_size"]
    query = text_config["num_attention_heads"] * text_config["head_dim"]
    key_value = text_config["num_key_value_heads"] * text_config["head_dim"]
    shapes = [(hidden, query), (hidden, key_value), (hidden, key_value), (query, hidden)]
    shapes += [(hidden, intermediate), (hidden, intermediate), (intermediate, hidden)]
    return text_config["num_hidden_layers"] * sum(rank * (inputs + outputs) for inputs, outputs in shapes)


def test_the_tiny_suite_records_every_measurement(suite, tmp_path, capsys):
    output = tmp_path / "suite.json"
    data = suite.main([*QUICK, "--sizes", "64x64", "32x672", "--output", str(output)])
    printed = capsys.readouterr().out

    assert json.loads(output.read_text()) == json.loads(json.dumps(data, default=str))
    assert data["status"] == "finished"
    assert {row["kind"] for row in data["rows"]} == ROW_KINDS
    assert {"torch", "transformers", "peft", "cuda", "device_name"} <= set(data["environment"])
    sizes = {"64x64", "32x672"}
    assert {item["size"] for item in data["model"]["image_sizes"]} == sizes

    for row in rows_of(data, "latency"):
        assert row["status"] == "ok" and row["new_tokens"] == suite.NEW_TOKENS
        assert 0 < row["prefill_ms"] < row["read_ms"] and len(row["read_runs_ms"]) == 2
    assert {row["image_size"] for row in rows_of(data, "latency")} == sizes

    for row in rows_of(data, "cmrm_on_off"):
        assert row["status"] == "ok"
        for name in ("prefill_on_ms", "prefill_off_ms", "read_on_ms", "read_off_ms", "cmrm_module_ms"):
            assert row[name] > 0
        assert math.isfinite(row["prefill_ratio_on_off"]) and math.isfinite(row["read_ratio_on_off"])
        assert "same weights" in row["off_means"]
        # The switch changes what the model computes, so "off" really skipped CMRM.
        assert row["logits_max_abs_diff_on_vs_off"] > 0

    (training,) = rows_of(data, "lora_train_step")
    assert training["status"] == "ok" and training["batch"] == 2 and training["step_ms"] > 0
    assert all(math.isfinite(loss) for loss in training["losses"])
    assert training["lora_parameters"] == expected_lora_parameters(suite.TINY_TEXT_CONFIG, suite.PAPER_LORA["r"])
    assert training["trainable_cmrm_parameters"] == training["cmrm_parameters"] == data["model"]["cmrm_parameters"]
    assert training["trainable_parameters"] == training["lora_parameters"] + training["cmrm_parameters"]
    assert training["only_lora_and_cmrm_train"]

    for row in rows_of(data, "throughput"):
        assert row["status"] == "ok" and row["best_plates_per_s"] > 0
        assert [point["batch"] for point in row["points"]] == [1, 2, 4]
        assert row["stopped_by"] == "end of the batch-size list"

    for row in rows_of(data, "static_cache"):
        assert row["status"] in ("ok", "unsupported")
        if row["status"] == "ok":
            assert row["read_ms"] > 0 and row["new_tokens"] == suite.NEW_TOKENS

    compile_rows = rows_of(data, "compile")
    assert len(compile_rows) == 4 and all(row["status"] == "skipped" for row in compile_rows)

    table = printed[printed.index("kind "):]
    for kind in ROW_KINDS:
        assert kind in table


def test_failures_become_rows_and_the_run_goes_on(suite, tmp_path, monkeypatch):
    real_read_plates = suite.read_plates

    def read_plates(model, inputs, **generate_kwargs):
        if generate_kwargs.get("cache_implementation") == "static":
            raise ValueError("static cache not supported (simulated)")
        if inputs["input_ids"].shape[0] > 2:
            raise suite.OUT_OF_MEMORY("CUDA out of memory (simulated)")
        return real_read_plates(model, inputs, **generate_kwargs)

    def broken_training_step(model, args):
        raise RuntimeError("training broke (simulated)")

    monkeypatch.setattr(suite, "read_plates", read_plates)
    monkeypatch.setattr(suite, "measure_lora_step", broken_training_step)
    output = tmp_path / "suite.json"
    data = suite.main([*QUICK, "--sizes", "32x672", "--output", str(output)])

    assert data["status"] == "finished" and json.loads(output.read_text())["status"] == "finished"
    assert {row["kind"] for row in data["rows"]} == ROW_KINDS
    (training,) = rows_of(data, "lora_train_step")
    assert training["status"] == "error" and "training broke" in training["reason"] and training["traceback"]
    (throughput,) = rows_of(data, "throughput")
    assert throughput["status"] == "ok" and [point["batch"] for point in throughput["points"]] == [1, 2]
    assert throughput["stopped_by"] == "out of memory at batch 4"
    (static,) = rows_of(data, "static_cache")
    assert static["status"] == "unsupported" and "simulated" in static["reason"]


def test_an_interrupted_run_keeps_the_finished_rows(suite, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite, "measure_throughput", interrupt)
    output = tmp_path / "suite.json"
    with pytest.raises(KeyboardInterrupt):
        suite.main([*QUICK, "--sizes", "32x672", "--output", str(output)])
    data = json.loads(output.read_text())
    assert data["status"] == "interrupted"
    assert [row["kind"] for row in data["rows"]] == ["latency", "cmrm_on_off", "lora_train_step"]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left behind


def test_rows_past_the_time_budget_are_recorded_as_skipped(suite, tmp_path):
    data = suite.main([*QUICK, "--sizes", "32x672", "--time_budget_s", "0", "--output", str(tmp_path / "suite.json")])
    assert {row["kind"] for row in data["rows"]} == ROW_KINDS
    assert all(row["status"] == "skipped" and "time_budget_s" in row["reason"] for row in data["rows"])


def test_the_defaults_are_the_papers_sizes_and_batch(suite):
    args = suite.parse_args([])
    assert args.sizes == [(448, 448), (32, 672)] and args.train_batch_size == 16
    assert args.device.type in ("cpu", "cuda") and args.output == Path("results/gpu_suite.json")


def test_an_image_size_off_the_patch_grid_is_snapped_to_the_nearest_valid_one(suite):
    assert suite.valid_image_size((30, 680), factor=32) == (32, 672)
    assert suite.valid_image_size((448, 448), factor=32) == (448, 448)
    assert suite.valid_image_size((5, 40), factor=32) == (32, 32)


def test_a_variant_that_fails_is_unsupported_and_one_past_its_cap_is_skipped(suite):
    with pytest.raises(suite.Unsupported, match="ValueError: no static cache here"):
        with suite.variant_support():
            raise ValueError("no static cache here")
    with pytest.raises(suite.OUT_OF_MEMORY):  # running out of memory is an error of the row, not a missing feature
        with suite.variant_support():
            raise suite.OUT_OF_MEMORY("simulated")
    with pytest.raises(suite.RowSkipped, match="over its 0 s cap"):
        with suite.variant_support(), suite.time_cap(0.2):
            time.sleep(5)
    # A compiler that catches the alarm's exception and raises its own is still stopped by the cap.
    with pytest.raises(suite.RowSkipped, match="cap"):
        with suite.variant_support(), suite.time_cap(0.2):
            try:
                time.sleep(5)
            except suite.TimeCapExceeded as error:
                raise RuntimeError("internal compiler error") from error
    with suite.time_cap(5):  # a block that ends in time is not interrupted later
        pass
    time.sleep(0.1)
