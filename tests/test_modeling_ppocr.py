"""LP-LLM with PP-OCR's encoder as its vision tower (`vision_encoder="ppocr"`, `modeling_lpllm/ppocr_vision.py`):
patches back to images, one visual token per image token, forward, generation, save/load in a fresh process, and
starting the encoder from converted recognizer weights (`--vision_weights`, `--freeze_vision_encoder`)."""

import json
import textwrap

import numpy as np
import pytest
import torch
from datasets import DatasetDict
from safetensors.torch import save_file

from lpllm.training.arguments import PlateTrainingArguments
from lpllm.training.model_setup import (
    check_processor_matches_model,
    load_model_and_processor,
    load_vision_weights,
    set_trainable_parameters,
)
from modeling_lpllm import LPLLMConfig, Qwen3VLForPlateRecognition, build_offline_processor
from modeling_lpllm.ppocr_recognizer import PPOCRRecognizer
from modeling_lpllm.ppocr_vision import PPOCRVisionModel, unpatchify
from test_modeling_lpllm import plate_inputs
from test_train_sft import final_weights, plate_split, run
from tiny_lpllm import TINY_MODEL_CONFIG, forward_in_a_fresh_process, random_plate_image, tiny_model, tiny_processor


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


# Every image read at 48x96 by the encoder (12 positions): a tiny model's images stay cheap to encode.
PPOCR = {"vision_encoder": "ppocr", "ppocr_image_width": 96}


@pytest.fixture(scope="module")
def model(processor):
    return tiny_model(processor, **PPOCR)


def test_the_default_vision_tower_is_qwen3_vls_and_a_wrong_name_is_refused(processor):
    assert LPLLMConfig().vision_encoder == "qwen3_vl"
    assert type(tiny_model(processor).model.visual).__name__ == "Qwen3VLVisionModel"
    with pytest.raises(ValueError, match="vision_encoder"):
        LPLLMConfig(vision_encoder="resnet")


@pytest.mark.parametrize("image_size", [None, [32, 128]], ids=["image_processor", "fixed_size"])
def test_unpatchify_gives_back_the_images_the_processor_cut_into_patches(image_size):
    processor = build_offline_processor(min_pixels=32 * 32 * 3, max_pixels=32 * 32 * 12, image_size=image_size)
    images = [random_plate_image(1), random_plate_image(2, size=(150, 40))]
    prepared = processor.prepare_images(images)
    inputs = processor.image_processor(images=prepared, return_tensors="pt")
    fixed = processor.fixed_size_image_inputs([np.asarray(image) for image in prepared])
    if image_size is not None:  # the processor's batched path writes the same patches
        assert torch.equal(fixed["pixel_values"], inputs["pixel_values"])
    frames = unpatchify(inputs["pixel_values"], inputs["image_grid_thw"], 2, temporal_patch_size=2, patch_size=16)
    assert len(frames) == 2
    for frame, (_, height, width) in zip(frames, inputs["image_grid_thw"].tolist()):
        assert frame.shape == (3, 16 * height, 16 * width)
    # The first image, resized by the image processor's own arithmetic, as (pixel / 255 - 0.5) / 0.5.
    height, width = frames[0].shape[1:]
    resized = np.asarray(prepared[0].resize((width, height), resample=3), dtype=np.float64) if image_size is None else (
        np.asarray(prepared[0], dtype=np.float64)
    )
    expected = torch.from_numpy((resized / 255 - 0.5) / 0.5).permute(2, 0, 1).float()
    torch.testing.assert_close(frames[0], expected, atol=0.02, rtol=0)


def test_one_visual_token_per_image_token_in_reading_order(model, processor):
    images = [random_plate_image(1), random_plate_image(2, size=(200, 30)), random_plate_image(3, size=(40, 40))]
    inputs = plate_inputs(processor, images)
    with torch.no_grad():
        features = model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
    expected = (inputs["image_grid_thw"].prod(-1) // 4).tolist()
    assert [tokens.shape for tokens in features.pooler_output] == [(count, 32) for count in expected]
    assert (inputs["input_ids"] == model.config.image_token_id).sum(dim=1).tolist() == expected
    assert features.deepstack_features == []
    # An image's tokens depend on it alone: the same tokens when it is read by itself.
    single = plate_inputs(processor, images[1:2])
    with torch.no_grad():
        alone = model.get_image_features(single["pixel_values"], single["image_grid_thw"])
    torch.testing.assert_close(alone.pooler_output[0], features.pooler_output[1], atol=1e-5, rtol=1e-5)


def test_a_mirrored_image_gives_other_tokens_so_the_order_carries_information(model, processor):
    image = random_plate_image(4, size=(160, 40))
    mirrored = image.transpose(0)  # PIL.Image.FLIP_LEFT_RIGHT
    inputs = plate_inputs(processor, [image, mirrored])
    with torch.no_grad():
        tokens = model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
    assert not torch.allclose(tokens[0], tokens[1], atol=1e-3)


def test_loss_gradients_and_batched_generation(processor):
    model = tiny_model(processor, **PPOCR).train()
    images = [random_plate_image(1), random_plate_image(2, size=(160, 40))]
    inputs = plate_inputs(processor, images, answers=["AB12CD3", "XY9"])
    outputs = model(**inputs, labels=inputs["input_ids"])
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    visual = model.model.visual
    assert visual.encoder.backbone.stem.stem1.weight.grad.abs().sum() > 0
    assert visual.merger.linear_fc2.weight.grad.abs().sum() > 0
    model.eval()
    batched = plate_inputs(processor, images)
    batched_ids = model.generate(**batched, max_new_tokens=5, do_sample=False)[:, batched["input_ids"].shape[1] :]
    for index, image in enumerate(images):
        single = plate_inputs(processor, [image])
        single_ids = model.generate(**single, max_new_tokens=5, do_sample=False)[:, single["input_ids"].shape[1] :]
        padding = [model.generation_config.pad_token_id] * (batched_ids.shape[1] - single_ids.shape[1])
        assert batched_ids[index].tolist() == single_ids[0].tolist() + padding


def test_the_encoder_starts_from_pytorch_default_initialisation(model):
    """Not the config's `initializer_range`: without normalisation between the convolutions, that would blow up."""
    weight = model.model.visual.encoder.backbone.blocks[-1].expand.weight  # fan-in 384
    assert 0.5 / 384**0.5 / 3**0.5 < weight.std().item() < 1.5 / 384**0.5 / 3**0.5


FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import torch
    from transformers import AutoModelForImageTextToText

    checkpoint, inputs_file, output_file = sys.argv[1:4]
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**torch.load(inputs_file)).logits
    torch.save({"class": type(model.model.visual).__name__, "logits": logits}, output_file)
    """
)


def test_save_and_load_in_a_fresh_process_without_the_package(model, processor, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    assert {"ppocr_vision.py", "ppocr_recognizer.py"} <= {path.name for path in checkpoint.iterdir()}
    inputs = dict(plate_inputs(processor, [random_plate_image(1), random_plate_image(2, size=(60, 40))]))
    expected, results = forward_in_a_fresh_process(FRESH_PROCESS_SCRIPT, model, inputs, checkpoint, tmp_path)
    assert results["class"] == "PPOCRVisionModel"
    # The same weights and inputs; the convolution kernels oneDNN picks may sum in another order in another process.
    torch.testing.assert_close(results["logits"], expected, rtol=1e-5, atol=1e-6)


class TestVisionWeights:
    @pytest.fixture
    def weights_file(self, tmp_path):
        torch.manual_seed(5)
        recognizer = PPOCRRecognizer()
        path = tmp_path / "ppocr.safetensors"
        save_file(recognizer.state_dict(), path)
        return path, recognizer

    def test_the_encoder_takes_the_recognizers_weights_and_not_its_head(self, processor, weights_file):
        path, recognizer = weights_file
        model = tiny_model(processor, **PPOCR)
        merger_before = model.model.visual.merger.state_dict()
        load_vision_weights(model, str(path))
        encoder_state = model.model.visual.encoder.state_dict()
        assert encoder_state.keys() == recognizer.encoder.state_dict().keys()
        assert all(torch.equal(encoder_state[name], tensor) for name, tensor in recognizer.encoder.state_dict().items())
        assert all(torch.equal(model.model.visual.merger.state_dict()[name], t) for name, t in merger_before.items())

    def test_freezing_keeps_the_encoder_and_trains_the_rest(self, processor, weights_file):
        model = tiny_model(processor, **PPOCR)
        load_vision_weights(model, str(weights_file[0]))
        set_trainable_parameters(model, None, freeze_vision_encoder=True)
        trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        assert not any(".visual.encoder." in name for name in trainable)
        assert any(".visual.merger." in name for name in trainable) and any(".cmrm." in name for name in trainable)
        with pytest.raises(ValueError, match="freeze_vision_encoder"):
            set_trainable_parameters(tiny_model(processor), None, freeze_vision_encoder=True)

    def test_a_qwen_tower_or_other_weights_are_refused_naming_the_file(self, processor, weights_file, tmp_path):
        path, _ = weights_file
        with pytest.raises(ValueError, match="vision_encoder: ppocr"):
            load_vision_weights(tiny_model(processor), str(path))
        other = tmp_path / "other.safetensors"
        save_file({"encoder.backbone.stem.stem1.weight": torch.zeros(2, 3, 3, 3)}, other)
        with pytest.raises(ValueError, match="other.safetensors does not hold"):
            load_vision_weights(tiny_model(processor, **PPOCR), str(other))
        not_safetensors = tmp_path / "broken.safetensors"
        not_safetensors.write_bytes(b"garbage")
        with pytest.raises(ValueError, match="broken.safetensors"):
            load_vision_weights(tiny_model(processor, **PPOCR), str(not_safetensors))

    def test_a_processor_that_normalises_otherwise_is_refused(self, model):
        processor = tiny_processor()
        processor.image_processor.image_mean = [0.48145466, 0.4578275, 0.40821073]
        with pytest.raises(ValueError, match="PP-OCR vision encoder reads pixels"):
            check_processor_matches_model(processor, model.config, "here")
        check_processor_matches_model(tiny_processor(), model.config, "here")


def test_the_encoder_reads_at_ppocr_image_width_or_at_the_images_aspect_ratio(model, processor):
    visual = model.model.visual
    assert isinstance(visual, PPOCRVisionModel)
    assert visual.spatial_merge_size == 2 and visual.dtype == torch.float32
    assert visual.encoder_width(32, 672) == 96
    keep_aspect = PPOCRVisionModel(tiny_model(processor, vision_encoder="ppocr").config)
    assert keep_aspect.encoder_width(32, 128) == 192 and keep_aspect.encoder_width(32, 672) == 1008
    for width in (0, 100):
        with pytest.raises(ValueError, match="ppocr_image_width"):
            LPLLMConfig(vision_encoder="ppocr", ppocr_image_width=width)


class TestTraining:
    @pytest.fixture(scope="class")
    def ppocr_config_file(self, tmp_path_factory):
        """The smoke recipe's tiny architecture with PP-OCR's encoder."""
        path = tmp_path_factory.mktemp("configs") / "lpllm_tiny_ppocr.json"
        config = json.loads(TINY_MODEL_CONFIG.read_text())
        path.write_text(json.dumps({**config, **PPOCR}))
        return str(path)

    def test_a_frozen_encoder_keeps_the_converted_weights_and_the_rest_trains(
        self, ppocr_config_file, tmp_path, tmp_path_factory
    ):
        data = tmp_path_factory.mktemp("plates")
        DatasetDict({"train": plate_split(8, 1), "validation": plate_split(2, 2)}).save_to_disk(data)
        torch.manual_seed(5)
        recognizer = PPOCRRecognizer()
        weights = tmp_path / "ppocr.safetensors"
        save_file(recognizer.state_dict(), weights)
        output = tmp_path / "run"
        run(str(data), output, "--model_name_or_path", ppocr_config_file, "--vision_weights", str(weights),
            "--freeze_vision_encoder", "true", "--max_steps", "2")  # fmt: skip
        saved = final_weights(output)
        for name, tensor in recognizer.encoder.state_dict().items():
            assert torch.equal(saved[f"model.visual.encoder.{name}"], tensor), name
        assert not any(name.startswith("model.visual.head") for name in saved)
        reloaded = Qwen3VLForPlateRecognition.from_pretrained(output / "final")
        assert reloaded.config.vision_encoder == "ppocr" and reloaded.config.ppocr_image_width == 96

    def test_vision_weights_that_do_not_exist_or_start_a_checkpoint_are_refused(self, tmp_path):
        with pytest.raises(ValueError, match="`vision_weights` .*missing.safetensors: no such file"):
            PlateTrainingArguments(vision_weights=str(tmp_path / "missing.safetensors"))
        weights = tmp_path / "ppocr.safetensors"
        save_file(PPOCRRecognizer().state_dict(), weights)
        with pytest.raises(ValueError, match="`vision_weights` starts the PP-OCR encoder of a from-scratch config"):
            load_model_and_processor(str(tmp_path), PlateTrainingArguments(vision_weights=str(weights)))


def test_top_k_candidates_come_from_beam_search_with_the_ppocr_tower(model, processor):
    # PP-OCR's tower has no DeepStack features; beam search must still repeat its images per beam.
    from modeling_lpllm.plate_reading import read_plate_readings

    images = [[random_plate_image(seed)] for seed in (1, 2)]
    readings = read_plate_readings(model, processor, images, max_new_tokens=5, top_k=3, region=None)
    for reading in readings:
        assert len(reading["candidates"]) == 3 and reading["text"] == reading["candidates"][0]["text"]
    one_by_one = [read_plate_readings(model, processor, [image], max_new_tokens=5, top_k=3, region=None)[0]
                  for image in images]  # fmt: skip
    assert [reading["text"] for reading in readings] == [reading["text"] for reading in one_by_one]
