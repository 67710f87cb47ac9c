"""Reading across processes (`lpllm.evaluation.sharding`): the shards of one process, and `lpllm eval` under a
two-process launch writing the report of one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lpllm.cli import main as lpllm
from lpllm.evaluation.sharding import gather_shards, process_state, reading_device, shard
from test_eval_helpers import save_plate_dataset, standard_splits
from tiny_lpllm import save_tiny_checkpoint


REPO = Path(__file__).resolve().parents[1]


def test_one_process_reads_the_whole_list_on_the_device_asked_for():
    state = process_state("cpu")
    assert state.num_processes == 1
    items = list(range(7))
    assert shard(items, state) == items and gather_shards(items, state) == items
    assert reading_device(state, "cpu") == torch.device("cpu")
    assert reading_device(state) == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo (CPU process groups) is not available")  # fmt: skip
def test_eval_on_two_processes_writes_the_report_of_one(tmp_path):
    checkpoint = tmp_path / "model"
    save_tiny_checkpoint(checkpoint, seed=10)
    dataset = save_plate_dataset(tmp_path / "plates", standard_splits())  # its test split has a multi-frame sample
    common = ["--model_name_or_path", str(checkpoint), "--dataset_name", str(dataset), "--device", "cpu",
              "--batch_size", "1", "--latency_runs", "0", "--log_level", "WARNING"]  # fmt: skip
    lpllm(["eval", *common, "--output_dir", str(tmp_path / "one")])
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "lpllm.cli", "eval", *common, "--output_dir", str(tmp_path / "two")],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(paths)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    one_results, two_results = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    assert two_results["efficiency"]["processes"] == 2 and one_results["efficiency"]["processes"] == 1
    assert (tmp_path / "two" / "predictions.csv").read_text() == (tmp_path / "one" / "predictions.csv").read_text()
    for key in ("accuracy", "cer", "ned", "num_samples"):
        assert two_results[key] == one_results[key], key
    assert two.stdout.count("Report written to") == 1  # the main process alone prints and writes
