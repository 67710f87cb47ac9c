"""`cmrm_fuse_frames`: CMRM's slots attend over all frames of a prompt together; off, or with one image per prompt,
the model computes exactly what it did without the option. Also the reading default it sets, save/load, and training
on tracks."""

import os
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from huggingface_hub.errors import StrictDataclassFieldValidationError
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

from lpllm.evaluation.recognizers import VisionLanguageRecognizer
from lpllm.training import sft as train_sft
from lpllm.training.model_setup import load_model_and_processor
from modeling_lpllm import CharacterAwareReasoningModule, LPLLMConfig, Qwen3VLForPlateRecognition, plate_messages
from modeling_lpllm.modeling_lpllm import LPLLMImageFeatures
from modeling_lpllm.plate_reading import plate_reading_inputs, read_plate_readings, resolve_fusion
from test_cmrm import make_cmrm, reference_cmrm
from tiny_lpllm import random_plate_image, save_tiny_checkpoint, tiny_model, tiny_processor


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


def frames(*seeds):
    return [random_plate_image(seed, size=(94 - 8 * (seed % 3), 24)) for seed in seeds]


def image_features(model, inputs):
    return model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], inputs["mm_token_type_ids"])


def test_grouped_cmrm_is_the_equations_over_the_groups_concatenated_tokens():
    module = make_cmrm()
    images = [torch.randn(6, 32), torch.randn(4, 32), torch.randn(5, 32), torch.randn(3, 32)]
    with torch.no_grad():
        outputs, slots = module.forward_with_slots(images, images_per_group=[3, 1])
    _, first_context = reference_cmrm(module, torch.cat(images[:3]))
    _, last_context = reference_cmrm(module, images[3])
    for tokens, output, context in zip(images, outputs, [first_context] * 3 + [last_context]):
        torch.testing.assert_close(output, tokens + context, rtol=1e-5, atol=1e-5)
    assert torch.equal(slots[0], slots[1]) and torch.equal(slots[1], slots[2]) and not torch.equal(slots[2], slots[3])


def test_groups_of_one_image_are_bit_identical_to_no_groups_and_bad_groups_are_refused():
    module = make_cmrm()
    images = [torch.randn(6, 32), torch.randn(11, 32), torch.randn(2, 32)]
    with torch.no_grad():
        alone, alone_slots = module.forward_with_slots(images)
        grouped, grouped_slots = module.forward_with_slots(images, images_per_group=[1, 1, 1])
    assert all(torch.equal(a, b) for a, b in zip(alone, grouped)) and torch.equal(alone_slots, grouped_slots)
    for bad in ([2], [1, 1, 2], [0, 3], [True, 1, 1]):
        with pytest.raises(ValueError, match="`images_per_group` must be positive counts adding up to the 3 images"):
            module(images, images_per_group=bad)


@pytest.mark.parametrize("deepstack", [False, True])
def test_option_off_computes_each_images_cmrm_on_its_own_bit_for_bit(processor, deepstack):
    """Off, the logits are those of the pre-option model: every image through CMRM on its own, whatever its prompt."""
    model = tiny_model(processor, seed=3, cmrm_apply_to_deepstack=deepstack)
    inputs = plate_reading_inputs(processor, [frames(1), frames(2, 3), frames(4, 5, 6)], fusion="joint")
    vision = Qwen3VLModel.get_image_features(model.model, inputs["pixel_values"], inputs["image_grid_thw"])
    with torch.no_grad():
        enriched, slots = model.cmrm.forward_with_slots(vision.pooler_output)
        deepstack_features = vision.deepstack_features
        if deepstack:
            add = model.cmrm.add_context
            deepstack_features = [
                tuple(add(tokens[None], context[None])[0] for tokens, context in zip(level, slots.mean(dim=1)))
                for level in deepstack_features
            ]
        reference = LPLLMImageFeatures(pooler_output=enriched, deepstack_features=deepstack_features)
        expected = model(**{**inputs, "pixel_values": None}, mm_encoder_outputs={"image": reference}).logits
        assert torch.equal(model(**inputs).logits, expected)


def test_one_image_per_prompt_reads_the_same_with_the_option_on_or_off(processor):
    off = tiny_model(processor, seed=3)
    on = tiny_model(processor, seed=3, cmrm_fuse_frames=True)
    assert all(torch.equal(a, b) for a, b in zip(off.state_dict().values(), on.state_dict().values()))
    inputs = plate_reading_inputs(processor, [frames(1), frames(2), frames(3)])
    with torch.no_grad():
        assert torch.equal(on(**inputs).logits, off(**inputs).logits)
        generated_on = on.generate(**inputs, max_new_tokens=5, do_sample=False, num_beams=2)
        generated_off = off.generate(**inputs, max_new_tokens=5, do_sample=False, num_beams=2)
    assert torch.equal(generated_on, generated_off)


@pytest.mark.parametrize("fuse", [True, False])
def test_a_frame_changes_the_other_frames_context_only_with_the_option(processor, fuse):
    model = tiny_model(processor, seed=3, cmrm_fuse_frames=fuse)
    first, second, other_second = frames(1, 2, 7)
    track = plate_reading_inputs(processor, [frames(9), [first, second]], fusion="joint")
    changed = plate_reading_inputs(processor, [frames(9), [first, other_second]], fusion="joint")
    with torch.no_grad():
        features = image_features(model, track)
        changed_features = image_features(model, changed)
    # images in order: the single crop, then the track's first and second frame
    assert torch.equal(features.pooler_output[0], changed_features.pooler_output[0])  # another prompt: untouched
    assert torch.equal(features.pooler_output[1], changed_features.pooler_output[1]) is not fuse
    slots = features.character_slots
    assert torch.equal(slots[1], slots[2]) is fuse  # with the option one context per prompt, added to both frames


def test_generation_reads_the_fused_context_as_the_forward_pass_does(processor):
    model = tiny_model(processor, seed=3, cmrm_fuse_frames=True)
    inputs = plate_reading_inputs(processor, [frames(1), frames(2, 3)], fusion="joint")
    with torch.no_grad():
        last_logits = model(**inputs).logits[:, -1]
        for beams in (1, 3):
            generated = model.generate(
                **inputs, max_new_tokens=2, do_sample=False, num_beams=beams, output_logits=True,
                return_dict_in_generate=True,
            )  # fmt: skip
            torch.testing.assert_close(generated.logits[0][::beams], last_logits, rtol=1e-5, atol=1e-5)


def test_prompts_and_images_that_do_not_match_are_a_clear_error(processor):
    model = tiny_model(processor, seed=3, cmrm_fuse_frames=True)
    inputs = plate_reading_inputs(processor, [frames(1), frames(2, 3)], fusion="joint")
    first_prompt_only = inputs["mm_token_type_ids"][:1]
    with pytest.raises(ValueError, match=r"marks the tokens of 1 image\(s\); `image_grid_thw` holds 3"):
        model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], first_prompt_only)


def test_the_option_is_saved_and_its_model_reads_late_unless_asked_to_read_jointly(processor, tmp_path):
    model, _ = save_tiny_checkpoint(tmp_path, seed=4, cmrm_fuse_frames=True)
    loaded = Qwen3VLForPlateRecognition.from_pretrained(tmp_path).eval()
    assert loaded.config.cmrm_fuse_frames is True
    assert LPLLMConfig.from_pretrained(tmp_path).cmrm_fuse_frames is True
    assert resolve_fusion() == "late" and resolve_fusion("joint") == "joint"
    reader = VisionLanguageRecognizer(loaded, processor, name="fused", device=torch.device("cpu"))
    assert reader.fusion == "late" and reader.describe()["cmrm_fuse_frames"] is True
    track = [frames(1, 2)]
    assert read_plate_readings(loaded, processor, track) == read_plate_readings(model, processor, track, fusion="late")
    joint = read_plate_readings(loaded, processor, track, fusion="joint")
    assert joint == read_plate_readings(model, processor, track, fusion="joint")
    with pytest.raises(StrictDataclassFieldValidationError, match="cmrm_fuse_frames"):
        LPLLMConfig(cmrm_fuse_frames="yes")


def track_split(sizes, seed):
    rows = []
    for index, size in enumerate(sizes):
        plate = "".join("ABCDEFGH0123456789"[(seed * 7 + index * 3 + k * 5) % 18] for k in range(7))
        messages = plate_messages(num_images=size, answer=plate)
        rows.append({
            "images": [random_plate_image(seed * 1000 + 10 * index + frame) for frame in range(size)],
            "prompt": [messages[0]], "completion": [messages[1]], "text": plate, "region": "XX", "source": "noise",
            "id": f"{seed}-{index}",
        })  # fmt: skip
    return Dataset.from_list(rows)


def test_training_on_tracks_with_the_option_fuses_each_rows_frames_and_saves_the_option(tmp_path, monkeypatch):
    data = tmp_path / "tracks"
    DatasetDict({"train": track_split([1, 3, 2, 3, 1, 2, 3, 3], 1), "validation": track_split([3, 1], 2)}).save_to_disk(
        data
    )
    groups = []
    forward_with_slots = CharacterAwareReasoningModule.forward_with_slots

    def recording(self, image_tokens, images_per_group=None):
        groups.append((len(image_tokens), images_per_group))
        return forward_with_slots(self, image_tokens, images_per_group)

    monkeypatch.setattr(CharacterAwareReasoningModule, "forward_with_slots", recording)
    os.chdir(REPO)  # recipes name the model config relative to the repository
    destination = train_sft.main([
        "--config", str(REPO / "recipes" / "smoke.yaml"), "--dataset_name", str(data), "--output_dir",
        str(tmp_path / "run"), "--cmrm_fuse_frames", "true", "--max_steps", "2",
    ])  # fmt: skip
    assert LPLLMConfig.from_pretrained(destination).cmrm_fuse_frames is True
    assert (destination / "model.safetensors").is_file()
    # Every training batch (4 rows of 1-3 frames) went through CMRM one group per row, its frames together.
    assert len(groups) >= 2
    for num_images, images_per_group in groups:
        assert images_per_group is not None and sum(images_per_group) == num_images
    assert any(count > 1 for _, images_per_group in groups for count in images_per_group)


def test_tracks_recipe_is_the_embedded_default_with_frames_fused(tmp_path):
    os.chdir(REPO)
    parsed = {
        name: train_sft.parse_arguments([
            "--config", str(REPO / "recipes" / f"{name}.yaml"), "--dataset_name", "data/x",
            "--output_dir", str(tmp_path),
        ])  # fmt: skip
        for name in ("demo_cpu", "tracks_cpu")
    }
    (_, demo_training, demo_model, demo_plate), (_, tracks_training, tracks_model, tracks_plate) = parsed.values()
    assert tracks_plate.cmrm_fuse_frames is True and demo_plate.cmrm_fuse_frames is None
    assert tracks_model.model_name_or_path == demo_model.model_name_or_path
    # The same settings but the fusion and the budget: the demo trains for 15 minutes, the tracks recipe 800 steps.
    budget = {"max_train_minutes": None, "cosine_over_budget": None}
    assert {**vars(tracks_plate), "cmrm_fuse_frames": None, **budget} == {**vars(demo_plate), **budget}
    assert tracks_plate.max_train_minutes is None and tracks_training.max_steps == 800
    assert tracks_training.learning_rate == demo_training.learning_rate
    assert tracks_training.per_device_train_batch_size == demo_training.per_device_train_batch_size
    model, _ = load_model_and_processor(tracks_model.model_name_or_path, tracks_plate)
    assert model.config.cmrm_fuse_frames is True
