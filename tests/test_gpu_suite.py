"""benchmarks/gpu_suite.py on its tiny model on the CPU: every measurement is recorded, the numbers are sane, and a
measurement that fails, runs out of memory or is unsupported becomes a row instead of ending the run."""

import importlib.util
import json
import math
import os
import subprocess
import sys
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


def load_script(path: Path):
    """A benchmark script as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite():
    return load_script(SUITE_FILE)


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
        assert row["memory_filling_batch_estimate"] is None  # no device memory to fill on a CPU

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
    assert args.sizes == [(448, 448), (32, 672)] and args.train_batch_size == 16 and args.model_size == "2b"
    assert args.device.type in ("cpu", "cuda") and args.output == Path("results/gpu_suite.json")


# The parameter counts of Qwen/Qwen3-VL-{2B,4B,8B}-Instruct's published safetensors: the configs built here must give
# these to the parameter, CMRM aside.
PUBLISHED_PARAMETERS = {"2b": 2_127_532_032, "4b": 4_437_815_808, "8b": 8_767_123_696}


@pytest.mark.parametrize("model_size", sorted(PUBLISHED_PARAMETERS))
def test_each_model_size_has_its_published_parameter_count(suite, model_size):
    from modeling_lpllm import Qwen3VLForPlateRecognition, build_offline_processor

    config = suite.build_config(build_offline_processor(), tiny=False, model_size=model_size)
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = Qwen3VLForPlateRecognition(config)
    cmrm = suite.count_parameters(model.model.cmrm)
    assert suite.count_parameters(model) - cmrm == PUBLISHED_PARAMETERS[model_size]
    assert cmrm > 0 and config.cmrm_num_slots == suite.PAPER_CMRM["cmrm_num_slots"]
    assert suite.architecture_name(suite.parse_args(["--model_size", model_size])).startswith(
        f"Qwen3-VL-{model_size.upper()}-Instruct"
    )


@pytest.mark.slow
def test_the_compile_rows_compile_and_read_what_eager_reads(suite, monkeypatch, request):
    """The compile rows run on accelerators only; here generate is let compile on the CPU (CompileConfig's
    `_compile_all_devices`, without CUDA graphs) so that the rows' code runs, with both transformers versions in use."""
    compile_config_class = suite.CompileConfig
    if not hasattr(compile_config_class(), "_compile_all_devices"):
        pytest.skip("this transformers has no switch to compile generate's decode step on a CPU")

    def cpu_compile_config(**kwargs):
        config = compile_config_class(**kwargs)
        config._compile_all_devices, config.mode = True, "default"
        return config

    monkeypatch.setattr(suite, "CompileConfig", cpu_compile_config)
    request.addfinalizer(torch._dynamo.reset)  # no compiled graphs or guards left behind for later tests
    args = suite.parse_args(["--tiny", "--device", "cpu", "--repeats", "1", "--warmups", "1"])
    processor = suite.build_offline_processor()
    model = suite.build_model(suite.build_config(processor, True), processor.tokenizer, args.device, torch.float32, 0)
    prompt = suite.build_prompt(model, (32, 672), seed=0)
    eager = suite.read_plates(model, prompt.inputs)

    decode = suite.measure_compiled_decode(model, prompt, args, cap_s=300, eager_read_ms=10.0)
    assert decode["compiled"] and decode["new_tokens"] == suite.NEW_TOKENS and decode["read_ms"] > 0
    static_cache = {"cache_implementation": "static", "compile_config": cpu_compile_config()}
    compiled = suite.read_plates(model, prompt.inputs, **static_cache)
    assert torch.equal(compiled, eager)

    prefill = suite.measure_compiled_prefill(model, prompt, args, cap_s=300, eager_prefill_ms=4.0)
    assert prefill["prefill_ms"] > 0 and prefill["ratio_to_eager"] == pytest.approx(prefill["prefill_ms"] / 4.0)


def test_the_memory_filling_batch_is_read_off_the_two_largest_peaks(suite):
    points = [
        {"batch": 1, "peak_memory_gib": 4.5},
        {"batch": 8, "peak_memory_gib": 5.0},
        {"batch": 32, "peak_memory_gib": 6.0},  # 1/24 GiB a plate above the weights
    ]
    per_plate, batch = suite.memory_filling_batch(points, capacity_gib=80.0)
    assert per_plate == pytest.approx(1 / 24) and batch == 32 + 74 * 24
    assert suite.memory_filling_batch(points, capacity_gib=None) == (None, None)  # a CPU: no capacity
    assert suite.memory_filling_batch(points[:1], capacity_gib=80.0) == (None, None)
    flat = [{"batch": 1, "peak_memory_gib": 5.0}, {"batch": 8, "peak_memory_gib": 5.0}]
    assert suite.memory_filling_batch(flat, capacity_gib=80.0) == (None, None)
    unmeasured = [{"batch": 1, "peak_memory_gib": None}, {"batch": 8, "peak_memory_gib": None}]
    assert suite.memory_filling_batch(unmeasured, capacity_gib=80.0) == (None, None)

    row = {
        "kind": "throughput", "status": "ok", "best_plates_per_s": 900.0, "best_batch": 32, "stopped_by": "time cap",
        "points": [{"batch": 32, "plates_per_s": 900.0}], "memory_per_plate_gib": per_plate,
        "memory_filling_batch_estimate": batch,
    }  # fmt: skip
    assert suite.summarize(row).endswith("; 43 MiB a plate, memory full at ~1808 plates (estimate)")


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


# ------------------------------------------------------------------------------------------- report, device check

REPORT_FILE = SUITE_FILE.with_name("gpu_report.py")
DEVICE_CHECK = SUITE_FILE.with_name("gpu_device_check.sh")


@pytest.fixture(scope="module")
def report():
    return load_script(REPORT_FILE)


def suite_result(rows: list[dict]) -> dict:
    """A gpu_suite.py JSON with the given rows (the header as an H200 run would write it)."""
    return {
        "environment": {
            "python": "3.12.3", "torch": "2.11.0+cu130", "transformers": "5.17.0", "peft": "0.18.0", "cuda": "13.0",
            "device": "cuda", "dtype": "bfloat16", "cpu_count": 16, "device_name": "NVIDIA H200",
            "device_memory_gib": 139.8, "compute_capability": "9.0",
        },
        "settings": {"tiny": False, "model_size": "2b", "time_budget_s": 230.0, "repeats": 10, "skip_compile": False},
        "model": {
            "architecture": "Qwen3-VL-2B-Instruct + CMRM", "weights": "random (seed 0)", "parameters": 2_161_127_424,
            "cmrm_parameters": 33_595_392, "image_sizes": [{"size": "448x448", "visual_tokens": 196}],
        },
        "status": "finished",
        "elapsed_s": 250.0,
        "rows": rows,
    }  # fmt: skip


def latency_row(read_ms: float) -> dict:
    return {
        "kind": "latency", "case": "448x448", "status": "ok", "image_size": "448x448", "read_ms": read_ms,
        "prefill_ms": read_ms / 2, "new_tokens": 8, "decode_ms_per_step": read_ms / 14, "visual_tokens": 196,
        "prompt_tokens": 207,
    }  # fmt: skip


def cmrm_row(read_ratio: float) -> dict:
    return {
        "kind": "cmrm_on_off", "case": "448x448", "status": "ok", "image_size": "448x448",
        "prefill_on_ms": 20.4, "prefill_off_ms": 20.0, "prefill_ratio_on_off": 1.02, "read_on_ms": 100 * read_ratio,
        "read_off_ms": 100.0, "read_ratio_on_off": read_ratio, "cmrm_module_ms": 0.2,
        "cmrm_module_share_of_prefill": 0.01,
    }  # fmt: skip


def training_row(peak_gib: float | None) -> dict:
    return {
        "kind": "lora_train_step", "case": "448x448 batch 16", "status": "ok", "batch": 16, "step_ms": 850.0,
        "plates_per_s": 18.8, "peak_memory_gib": peak_gib, "trainable_parameters": 100, "lora_parameters": 90,
        "trainable_cmrm_parameters": 10,
    }  # fmt: skip


def test_the_report_judges_each_target_from_the_rows(report):
    verdicts = {target.split(" ")[0]: verdict for target, _, verdict in report.target_rows(
        suite_result([latency_row(120.0), cmrm_row(1.004), training_row(31.5)])
    )}  # fmt: skip
    assert verdicts == {"batch-1": "met", "CMRM's": "met", "one": "reported"}

    missed = report.target_rows(suite_result([latency_row(500.0), cmrm_row(1.02), training_row(None)]))
    assert [verdict for _, _, verdict in missed] == ["not met", "not met", "partly"]
    assert "+2.00%" in missed[1][1]

    failed = {**latency_row(1.0), "status": "error", "reason": "out of memory: CUDA"}
    unmeasured = report.target_rows(suite_result([failed]))
    assert [verdict for _, _, verdict in unmeasured] == ["-", "-", "-"]
    assert "error: out of memory" in unmeasured[0][1] and "no row" in unmeasured[1][1]


def test_the_report_names_a_file_that_is_not_a_suite_result(report, tmp_path):
    output = tmp_path / "gpu.md"
    good = tmp_path / "good.json"
    good.write_text(json.dumps(suite_result([latency_row(120.0)])))
    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": []}))
    for bad, expected in ((not_json, "not JSON"), (other, "lacks environment, model, status"),
                          (tmp_path / "missing.json", "no such file")):  # fmt: skip
        with pytest.raises(SystemExit, match=expected) as raised:
            report.main([str(good), str(bad), "--output", str(output)])
        assert str(bad) in str(raised.value)
    assert not output.exists()  # every input is checked before the report is written


@pytest.mark.slow
def test_the_device_check_runs_both_sizes_and_writes_the_report(tmp_path):
    """The script the GPU machine runs, on the tiny model on this CPU: every file it promises, and a report with
    both runs' rows and the targets."""
    quick = ["--tiny", "--device", "cpu", "--repeats", "1", "--warmups", "0", "--batch_sizes", "1,2"]
    environment = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", str(DEVICE_CHECK), *quick, "--train_batch_size", "2"],
        cwd=SUITE_FILE.parents[1], env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    names = {"machine.txt", "gpu_suite_2b.json", "gpu_suite_2b.log", "gpu_suite_8b.json", "gpu_suite_8b.log", "gpu.md"}
    assert {path.name for path in tmp_path.iterdir()} == names
    assert "torch " in (tmp_path / "machine.txt").read_text()
    for size in ("2b", "8b"):
        data = json.loads((tmp_path / f"gpu_suite_{size}.json").read_text())
        assert data["status"] == "finished" and {row["kind"] for row in data["rows"]} == ROW_KINDS
    assert json.loads((tmp_path / "gpu_suite_8b.json").read_text())["settings"]["skip_compile"]
    text = (tmp_path / "gpu.md").read_text()
    assert text.count("## tiny LP-LLM (tests)") == 2 and text.count("| lora_train_step |") == 2
    assert "below the paper's 435 ms" in text
