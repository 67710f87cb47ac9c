"""CTC baselines: codec by hand, a few training steps on a tiny synthetic set, checkpoint reload, evaluation."""

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from lpllm.baselines import BaselineConfig, CTCCodec, build_model, load_baseline
from lpllm.baselines.fast_plate_ocr import export_dataset, plate_config_yaml
from lpllm.baselines.preprocessing import CropPreparation
from lpllm.baselines.train import main as train_main
from lpllm.cli.recognizers import load_recognizer
from test_eval_helpers import noise_image, save_plate_dataset, standard_splits, write_crop_folder


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lpllm.cli import evaluate as eval_cli  # noqa: E402


@pytest.fixture(scope="module")
def plate_dataset(tmp_path_factory):
    return save_plate_dataset(tmp_path_factory.mktemp("plates") / "data", standard_splits())


def one_hot(path, num_classes):
    logits = torch.full((1, len(path), num_classes), -10.0)
    for step, index in enumerate(path):
        logits[0, step, index] = 10.0
    return logits


def test_ctc_codec_by_hand():
    codec = CTCCodec("AB1")
    assert codec.num_classes == 4
    assert codec.encode("BA1") == [2, 1, 3]
    # A A _ A B B _ 1 -> repeats merged, blanks dropped, a blank separates the two A's.
    assert codec.decode(one_hot([1, 1, 0, 1, 2, 2, 0, 3], 4)) == ["AAB1"]
    assert codec.decode(one_hot([0, 0, 0], 4)) == [""]
    with pytest.raises(ValueError, match="outside the reader's charset: 'Z'"):
        codec.encode("AZ")
    with pytest.raises(ValueError, match="repeated"):
        CTCCodec("AA")


@pytest.mark.parametrize("arch, steps", [("crnn", 32), ("lprnet", 18)])
def test_architectures_score_fixed_step_sequences(arch, steps):
    config = BaselineConfig(arch=arch, charset="AB1")
    model = build_model(config).eval()
    height, width = config.input_size
    assert model(torch.zeros(2, 3, height, width)).shape == (2, steps, 4)


@pytest.mark.parametrize("arch", ["crnn", "lprnet"])
def test_train_a_few_steps_reload_and_evaluate(arch, plate_dataset, tmp_path):
    output = tmp_path / arch
    train_main(
        [
            "--arch",
            arch,
            "--dataset_name",
            str(plate_dataset),
            "--output_dir",
            str(output),
            "--max_steps",
            "3",
            "--batch_size",
            "4",
            "--max_minutes",
            "2",
            "--log_level",
            "WARNING",
        ]
    )
    config = json.loads((output / "baseline_config.json").read_text(encoding="utf-8"))
    training = config["training"]
    assert config["arch"] == arch
    assert training["split"] == "train" and training["num_train_samples"] == 6  # the train split only
    assert training["steps"] == 3 and training["stopped_by"] == "max_steps"
    assert training["epochs"] == pytest.approx(3 / 2)  # 6 images in batches of 4: 2 steps per epoch
    assert training["max_minutes"] == 2 and training["validation_split"] == "validation"

    # The reloaded checkpoint computes exactly what the saved one would.
    model, reloaded = load_baseline(output)
    assert reloaded.training == training
    pixels = reloaded.crop_preparation.to_tensor([noise_image(7)])
    again, _ = load_baseline(output)
    assert torch.equal(model(pixels), again(pixels))

    reader = load_recognizer(str(output), device="cpu")
    texts = reader.read([[noise_image(1)], [noise_image(2), noise_image(3)]])
    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)

    report = tmp_path / "report"
    results = eval_cli.main(
        [
            "--model_name_or_path",
            str(output),
            "--dataset_name",
            str(plate_dataset),
            "--output_dir",
            str(report),
            "--latency_runs",
            "2",
            "--latency_warmup",
            "1",
            "--log_level",
            "WARNING",
        ]
    )
    assert results["model"]["training"]["steps"] == 3
    assert results["model"]["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    assert results["dataset"]["num_evaluated"] == 4
    assert "training budget: 3 steps / 1.50 epochs" in (report / "results.md").read_text(encoding="utf-8")


def test_training_refuses_crop_folders_and_unsplit_data(tmp_path):
    folder = write_crop_folder(tmp_path / "crops", [("images/a.png", "AB123", "ok")])
    with pytest.raises(ValueError, match="no train split"):
        train_main(["--arch", "crnn", "--dataset_name", str(folder), "--output_dir", str(tmp_path / "out")])
    only_test = save_plate_dataset(tmp_path / "test_only", {"test": standard_splits()["test"]})
    with pytest.raises(ValueError, match="no 'train' split"):
        train_main(["--arch", "crnn", "--dataset_name", str(only_test), "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_fast_plate_ocr_export_uses_its_csv_format(plate_dataset, tmp_path):
    output = export_dataset(str(plate_dataset), str(tmp_path / "fpo"))
    with open(output / "train" / "annotations.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["plate_text"] for row in rows] == ["皖A12345", "AB123", "XY789", "CD456", "皖B0000", "EF12"]
    assert all((output / "train" / row["image_path"]).is_file() for row in rows)
    assert (output / "validation" / "annotations.csv").is_file()
    assert not (output / "test").exists()  # nothing from the test split leaves for training
    # Alphabet: the sorted characters of the train+validation labels, then the pad character.
    config = (output / "plate_config.yaml").read_text(encoding="utf-8")
    assert config == plate_config_yaml("0123456789ABCDEFXY皖", 7, 64, 128)
    assert 'alphabet: "0123456789ABCDEFXY皖_"' in config and "max_plate_slots: 7" in config
    assert "fast-plate-ocr train" in (output / "TRAINING.md").read_text(encoding="utf-8")


def preparations_used_in_reading(checkpoint, crop, monkeypatch) -> list:
    """The `CropPreparation`s a saved baseline's recognizer applies when it reads `crop`."""
    used = []
    prepare = CropPreparation.to_tensor
    monkeypatch.setattr(CropPreparation, "to_tensor", lambda self, images: used.append(self) or prepare(self, images))
    load_recognizer(str(checkpoint), device="cpu").read([[crop]])
    return used


def test_deskew_option_is_saved_with_the_checkpoint_and_used_in_reading(plate_dataset, tmp_path, monkeypatch):
    from test_deskew import plate_crop

    from modeling_lpllm.deskew import deskew

    output = tmp_path / "crnn_deskew"
    train_main(
        ["--arch", "crnn", "--dataset_name", str(plate_dataset), "--output_dir", str(output), "--max_steps", "1",
         "--batch_size", "4", "--deskew_max_degrees", "20", "--log_level", "WARNING"]
    )
    assert json.loads((output / "baseline_config.json").read_text(encoding="utf-8"))["deskew_max_degrees"] == 20
    size = BaselineConfig(arch="crnn", charset="AB1").input_size
    tilted = plate_crop(12)
    levelling = CropPreparation(size, 20)
    assert torch.equal(levelling.to_tensor([tilted]), CropPreparation(size).to_tensor([deskew(tilted, 20)]))
    assert not torch.equal(levelling.to_tensor([tilted]), CropPreparation(size).to_tensor([tilted]))

    assert preparations_used_in_reading(output, tilted, monkeypatch) == [CropPreparation(size, 20.0, False)]
    with pytest.raises(ValueError, match="deskew_max_degrees"):
        BaselineConfig(arch="crnn", charset="AB1", deskew_max_degrees=50)


def test_rectify_option_is_saved_with_the_checkpoint_and_used_in_reading(plate_dataset, tmp_path, monkeypatch):
    from test_deskew import keystone_crop

    from modeling_lpllm.deskew import deskew

    output = tmp_path / "crnn_rectify"
    train_main(
        ["--arch", "crnn", "--dataset_name", str(plate_dataset), "--output_dir", str(output), "--max_steps", "1",
         "--batch_size", "4", "--deskew_max_degrees", "20", "--rectify_plate", "--log_level", "WARNING"]
    )  # fmt: skip
    assert json.loads((output / "baseline_config.json").read_text(encoding="utf-8"))["rectify_plate"] is True
    size = BaselineConfig(arch="crnn", charset="AB1").input_size
    crop = keystone_crop(0.5)
    rectified = CropPreparation(size, 20, True).to_tensor([crop])
    assert torch.equal(rectified, CropPreparation(size).to_tensor([deskew(crop, 20, rectify=True)]))
    assert not torch.equal(rectified, CropPreparation(size, 20).to_tensor([crop]))

    assert preparations_used_in_reading(output, crop, monkeypatch) == [CropPreparation(size, 20.0, True)]
    assert load_recognizer(str(output), device="cpu").describe()["rectify_plate"] is True
    with pytest.raises(ValueError, match="rectify_plate"):
        BaselineConfig(arch="crnn", charset="AB1", rectify_plate="yes")


def test_augmented_training_draws_new_crops_every_epoch_and_is_seeded(plate_dataset, tmp_path, monkeypatch):
    import lpllm.baselines.training as training

    drawn = []  # the batches the model sees
    original = training.to_model_input
    monkeypatch.setattr(training, "to_model_input", lambda pixels: drawn.append(pixels.clone()) or original(pixels))

    def train(name, *options):
        drawn.clear()
        output = tmp_path / name
        # 6 images in batches of 6: one step per epoch, 3 epochs
        train_main(["--arch", "crnn", "--dataset_name", str(plate_dataset), "--output_dir", str(output),
                    "--max_steps", "3", "--batch_size", "6", "--deskew_max_degrees", "20", "--log_level", "WARNING",
                    *options])  # fmt: skip
        return load_baseline(output), list(drawn)

    augment = ["--augment_quad_jitter", "0.05", "0.2", "--augment_shadow", "1.0", "0.6", "--augment_warmup_epochs", "1"]
    (plain_model, plain_config), plain_batches = train("plain")  # the same order of images: a separate generator
    (model, config), batches = train("augmented", *augment)
    (again, _), batches_again = train("again", *augment)

    assert config.training["augmentation"] == "cast shadow 1,0.6; corner jitter 0.05,0.2; full strength from epoch 1"
    assert plain_config.training["augmentation"] == "none"
    assert len(batches) == 3 and all(batch.shape == plain_batches[0].shape for batch in batches)
    assert all(torch.equal(a, b) for a, b in zip(batches, batches_again))  # seeded: the same crops again
    # epoch 0 at zero strength: no shadow, no shift; from epoch 1 the crops are jittered and shaded
    assert (batches[0].float() - plain_batches[0].float()).abs().mean() < 3
    for epoch in (1, 2):
        assert (batches[epoch].float() - plain_batches[epoch].float()).abs().mean() > 5
        assert batches[epoch].float().mean() < plain_batches[epoch].float().mean()  # every crop has a shadow
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert any(not torch.equal(t, plain_model.state_dict()[n]) for n, t in model.state_dict().items())


@pytest.mark.parametrize(
    "options, message",
    [(["--augment_shadow", "2", "0.5"], "augment_shadow"),
     (["--augment_quad_jitter", "0.6", "0.1"], "augment_quad_jitter"),
     (["--augment_warmup_epochs", "1"], "`augment_warmup_epochs` needs an augmentation")],
)
def test_bad_baseline_augmentation_fails_before_any_output(plate_dataset, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        train_main(["--arch", "crnn", "--dataset_name", str(plate_dataset), "--output_dir", str(tmp_path / "o"),
                    *options])  # fmt: skip
    assert not (tmp_path / "o").exists()
