"""`eval.py --track_frames`: every track read from its first k frames, accuracy per k overall and per degradation, in
results.json, results.md and track_frames.png; `--fusion` reaches the reader."""

import json

import evaluate
import pytest
import torch
from PIL import Image

from lpllm.cli import evaluate as eval_cli
from lpllm.evaluation import PLATE_METRICS_SCRIPT
from lpllm.evaluation.data import load_eval_data
from lpllm.evaluation.evaluation import EvalSettings, evaluate_recognizer
from lpllm.evaluation.normalization import PlateNormalizer
from modeling_lpllm import DEFAULT_PLATE_CHARSET
from test_eval_helpers import plate_row, save_plate_dataset
from tiny_lpllm import save_tiny_checkpoint


FAST = ["--latency_runs", "0", "--batch_size", "2", "--log_level", "WARNING"]


@pytest.fixture(scope="module")
def track_dataset(tmp_path_factory):
    """Test split: tracks of 3, 2 and 3 frames (blur, blur, noise) and a single crop."""
    test = [
        plate_row(30, "AB123", num_images=3, degradation="blur", severity=2),
        plate_row(31, "CD456", num_images=2, degradation="blur", severity=3),
        plate_row(32, "EF789", num_images=3, degradation="noise", severity=1),
        plate_row(33, "GH012", degradation="noise", severity=1),
    ]
    return save_plate_dataset(tmp_path_factory.mktemp("tracks") / "data", {"test": test})


class FrameCountingReader:
    """Reads a plate right from at least `frames_needed` frames, wrong from fewer; records the frames of each read."""

    name, paradigm, device, fusion = "counting", "script", torch.device("cpu"), "late"

    def __init__(self, labels, frames_needed):
        self.labels, self.frames_needed, self.seen = labels, frames_needed, []
        self.model = torch.nn.Linear(2, 3)

    def read(self, batch, prompts):
        texts = []
        for images in batch:
            label = self.labels[images[0].tobytes()]
            texts.append(label if len(images) >= self.frames_needed[label] else "")
            self.seen.append((label, len(images)))
        return texts

    def describe(self):
        return {"model_type": "scripted"}


def test_accuracy_per_frame_count_overall_and_per_degradation(track_dataset):
    data = load_eval_data(track_dataset, "test", PlateNormalizer(), DEFAULT_PLATE_CHARSET)
    labels = {sample.images[0].tobytes(): sample.label for sample in data.samples}
    reader = FrameCountingReader(labels, {"AB123": 1, "CD456": 1, "EF789": 2, "GH012": 1})
    settings = EvalSettings(batch_size=2, latency_runs=0, track_frames=[3, 1, 2])
    results, _ = evaluate_recognizer(
        reader, data, evaluate.load(str(PLATE_METRICS_SCRIPT)), PlateNormalizer(), settings, DEFAULT_PLATE_CHARSET
    )
    block = results["track_frames"]
    # Only tracks of at least 3 frames are read at every k; AB123 is right from 1 frame, EF789 from 2.
    assert block == {
        "frames": [1, 2, 3],
        "fusion": "late",
        "num_tracks": 2,
        "accuracy": [0.5, 1.0, 1.0],
        "per_degradation": {
            "blur": {"num_tracks": 1, "accuracy": [1.0, 1.0, 1.0]},
            "noise": {"num_tracks": 1, "accuracy": [0.0, 1.0, 1.0]},
        },
    }
    # The full evaluation read every sample once; k = 3 reuses its readings of the 3-frame tracks.
    extra_reads = reader.seen[len(data.samples) :]
    assert sorted(extra_reads) == [("AB123", 1), ("AB123", 2), ("EF789", 1), ("EF789", 2)]


def test_eval_track_frames_writes_the_block_the_section_and_the_plot(track_dataset, tmp_path):
    checkpoint = tmp_path / "fused"
    save_tiny_checkpoint(checkpoint, seed=2, cmrm_fuse_frames=True)
    output = tmp_path / "report"
    results = eval_cli.main([
        "--model_name_or_path", str(checkpoint), "--dataset_name", str(track_dataset), "--output_dir", str(output),
        "--track_frames", "2", "1", *FAST,
    ])  # fmt: skip
    saved = json.loads((output / "results.json").read_text(encoding="utf-8"))
    block = saved["track_frames"]
    assert block == results["track_frames"]
    assert block["frames"] == [1, 2] and block["num_tracks"] == 3 and block["fusion"] == "late"
    assert sorted(block["per_degradation"]) == ["blur", "noise"] and len(block["accuracy"]) == 2
    assert saved["model"]["description"]["generation"]["fusion"] == "late"  # the default, for this model too
    markdown = (output / "results.md").read_text(encoding="utf-8")
    assert "## Accuracy vs frames per track" in markdown and "| Degradation | n | 1 frame | 2 frames |" in markdown
    assert "![Accuracy vs frames per track](track_frames.png)" in markdown
    with Image.open(output / "track_frames.png") as image:
        assert image.format == "PNG" and image.width > 100

    late = eval_cli.main([
        "--model_name_or_path", str(checkpoint), "--dataset_name", str(track_dataset), "--output_dir",
        str(tmp_path / "late"), "--track_frames", "1", "--fusion", "late", *FAST,
    ])  # fmt: skip
    assert late["track_frames"]["fusion"] == "late" and late["track_frames"]["num_tracks"] == 4


def test_bad_track_frames_fail_before_any_model_loads(track_dataset, tmp_path):
    not_a_model = tmp_path / "not_a_model"  # it is never loaded: the options fail first
    not_a_model.mkdir()

    def run(*options):
        return eval_cli.main([
            "--model_name_or_path", str(not_a_model), "--dataset_name", str(track_dataset),
            "--output_dir", str(tmp_path / "out"), *options, *FAST,
        ])  # fmt: skip

    with pytest.raises(ValueError, match="reads tracks of at least 4 frames; the samples have at most 3"):
        run("--track_frames", "1", "4")
    with pytest.raises(ValueError, match="`track_frames` names a frame count twice"):
        run("--track_frames", "2", "2")
    with pytest.raises(ValueError, match="`track_frames` must be whole numbers >= 1"):
        run("--track_frames", "0", "1")


def test_fusion_is_refused_for_a_reader_of_one_text(track_dataset, tmp_path):
    with pytest.raises(ValueError, match="top_k/num_beams/constrain/fusion need an LP-LLM or Qwen3-VL model"):
        eval_cli.main([
            "--model_name_or_path", "rapidocr", "--dataset_name", str(track_dataset), "--output_dir",
            str(tmp_path / "out"), "--fusion", "joint", *FAST,
        ])  # fmt: skip
