"""train_sft.py on tiny models: what trains for each ablation, the loss mask, the exported model, resuming, and
clear errors for bad recipes and datasets."""

import contextlib
import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file
from transformers import TrainerCallback

from lpllm.training.collator import PlateCollator
from modeling_lpllm import build_offline_processor, plate_messages
from tiny_lpllm import random_plate_image, run_without_the_package, save_tiny_checkpoint, tiny_processor
from lpllm.training import sft as train_sft


REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "recipes" / "smoke.yaml")


def plate_split(size, seed):
    rows = []
    for index in range(size):
        plate = "".join("ABCDEFGH0123456789"[(seed * 7 + index * 3 + k * 5) % 18] for k in range(7))
        messages = plate_messages(answer=plate)
        rows.append(
            {
                "images": [random_plate_image(seed * 1000 + index)],
                "prompt": [messages[0]],
                "completion": [messages[1]],
                "text": plate,
                "region": "XX",
                "source": "noise",
                "id": f"{seed}-{index}",
                "severity": index % 7 - 1,  # -1 (unknown) to 5, as dataset_scripts.build writes
            }
        )
    return Dataset.from_list(rows)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("plates")
    DatasetDict({"train": plate_split(16, 1), "validation": plate_split(4, 2), "test": plate_split(4, 3)}).save_to_disk(
        directory
    )
    return str(directory)


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pretrained")
    save_tiny_checkpoint(directory, seed=5)
    return str(directory)


def run(dataset_dir, output_dir, *extra):
    os.chdir(REPO)  # recipes name the model config relative to the repository
    return train_sft.main(["--config", SMOKE, "--dataset_name", dataset_dir, "--output_dir", str(output_dir), *extra])


def final_weights(output_dir):
    return load_file(Path(output_dir) / "final" / "model.safetensors")


@contextlib.contextmanager
def trainer_callback(callback):
    """`train_sft.main` runs inside the block train with `callback` among the trainer's callbacks."""
    original_init = train_sft.PlateSFTTrainer.__init__

    def init_with_callback(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(callback)

    train_sft.PlateSFTTrainer.__init__ = init_with_callback
    try:
        yield
    finally:
        train_sft.PlateSFTTrainer.__init__ = original_init


def changed_groups(before, after):
    """Which parameter groups differ between two state dicts: 'lm_lora_targets', 'cmrm', 'other'."""
    groups = set()
    for name, tensor in after.items():
        if name in before and torch.equal(before[name], tensor):
            continue
        if ".cmrm." in name:
            groups.add("cmrm")
        elif "language_model.layers" in name and name.endswith("_proj.weight"):
            groups.add("lm_lora_targets")
        else:
            groups.add(f"other:{name}")
    return groups


def test_from_scratch_smoke_run_exports_a_model_that_loads_in_a_fresh_process(dataset_dir, tmp_path):
    destination = run(dataset_dir, tmp_path / "run", "--image_size", "32", "64")
    assert destination == tmp_path / "run" / "final"
    files = set(os.listdir(destination))
    assert {"model.safetensors", "config.json", "generation_config.json", "processor_config.json", "README.md"} <= files
    card = (destination / "README.md").read_text()
    assert "pipeline_tag: image-to-text" in card and "library_name: transformers" in card
    assert "{{" not in card and "trained from scratch" in card

    script = textwrap.dedent(
        """
        from PIL import Image
        from transformers import AutoModel, AutoProcessor, pipeline
        model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
        reader = pipeline("image-to-text", model=sys.argv[1], trust_remote_code=True)
        result = reader(Image.new("RGB", (94, 24), "white"))
        assert type(model).__name__ == "Qwen3VLForPlateRecognition"
        # The training resize travels with the model: any crop becomes 32x64 pixels at inference too.
        processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
        assert processor.image_size == [32, 64], processor.image_size
        prompt = "<|vision_start|><|image_pad|><|vision_end|>"
        inputs = processor(images=[Image.new("RGB", (300, 100))], text=[prompt], return_tensors="np")
        assert inputs["image_grid_thw"].tolist() == [[1, 2, 4]], inputs["image_grid_thw"]
        assert isinstance(result[0]["generated_text"], str)
        print("OK", model.generation_config.max_new_tokens)
        """
    )
    completed = run_without_the_package(script, destination, work_dir=tmp_path)
    assert completed.stdout.split()[-2:] == ["OK", "10"]


@pytest.mark.parametrize(
    "ablation, expected",
    [
        ("A", set()),
        ("B", {"lm_lora_targets"}),
        ("C", {"cmrm"}),
        ("D", {"lm_lora_targets", "cmrm"}),
    ],
)
def test_each_ablation_trains_exactly_its_parameter_set(dataset_dir, pretrained_dir, tmp_path, ablation, expected):
    before = load_file(Path(pretrained_dir) / "model.safetensors")
    run(
        dataset_dir, tmp_path / ablation, "--model_name_or_path", pretrained_dir, "--ablation", ablation,
        "--learning_rate", "0.01", "--lora_r", "4", "--lora_alpha", "8", "--max_steps", "3",
    )
    after = final_weights(tmp_path / ablation)
    has_cmrm = any(".cmrm." in name for name in after)
    assert has_cmrm == (ablation in ("C", "D"))
    assert not any("lora" in name for name in after), "LoRA must be merged into the final weights"
    assert changed_groups(before, after) == expected
    if ablation in ("B", "D"):
        assert (tmp_path / ablation / "adapter_config.json").is_file()
    if ablation == "D":
        adapter = load_file(tmp_path / ablation / "adapter_model.safetensors")
        assert any("cmrm" in name for name in adapter), "CMRM is saved with the adapter"


def test_loss_is_on_the_answer_and_its_end_token_only():
    processor = tiny_processor()
    collator = PlateCollator(processor=processor, completion_only_loss=True)
    examples = []
    for index, plate in enumerate(("AB12CD3", "皖A12345")):
        messages = plate_messages(answer=plate)
        examples.append({"images": [random_plate_image(index)], "prompt": [messages[0]], "completion": [messages[1]]})
    batch = collator(examples)
    tokenizer = processor.tokenizer
    supervised = [tokenizer.decode(row[labels != -100]) for row, labels in zip(batch["input_ids"], batch["labels"])]
    assert supervised == ["AB12CD3<|im_end|>", "皖A12345<|im_end|>"]


def collator_examples(plates, sizes, frames=None):
    frames = frames or [1] * len(plates)
    examples = []
    for index, (plate, size, count) in enumerate(zip(plates, sizes, frames)):
        messages = plate_messages(num_images=count, answer=plate)
        images = [random_plate_image(10 * index + frame, size=size) for frame in range(count)]
        examples.append({"images": images, "prompt": [messages[0]], "completion": [messages[1]]})
    return examples


@pytest.mark.parametrize("max_length", [None, 20])
def test_collator_batches_equal_trls_while_reusing_its_tokenization(max_length):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    processor = tiny_processor()
    cached = PlateCollator(processor=processor, completion_only_loss=True, max_length=max_length)
    trl = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True, max_length=max_length)
    batches = [
        # answers of different lengths, images of different sizes (so different visual token counts), 3 frames
        collator_examples(["AB12CD3", "皖A1", "XY9"], [(94, 24), (64, 32), (94, 24)], frames=[1, 1, 3]),
        # the same plates again (read from memory), in another order and with other sizes
        collator_examples(["XY9", "AB12CD3", "皖A1"], [(64, 32), (64, 32), (94, 24)]),
    ]
    for examples in batches:
        reference = trl(copy.deepcopy(examples))
        cached._supervise_answer_only(reference)  # the one change PlateCollator makes to TRL's batch
        batch = cached(copy.deepcopy(examples))
        assert sorted(batch) == sorted(reference)
        for name in reference:
            assert torch.equal(batch[name], reference[name]) and batch[name].dtype == reference[name].dtype, name
    # each answer tokenized once per prompt it follows: XY9 after the 3-frame prompt, then after the 1-frame one
    assert len(cached._completion_ids) == 4
    # remembered as Python ints, not tensors, which would stay in the C heap among the batches' buffers
    remembered = [*cached._completion_ids.values(), *(ids for ids, _ in cached._prompt_ids.values())]
    assert all(isinstance(ids, tuple) and all(type(id_) is int for id_ in ids) for ids in remembered)
    # a prompt per image count and visual token counts: 1 frame of 94x24, 1 of 64x32, 3 of 94x24
    assert len(cached._prompt_ids) == 3


def test_collator_batches_of_fixed_size_crops_equal_trls():
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    processor = build_offline_processor(patch_size=16, merge_size=2, image_size=[32, 224])
    examples = collator_examples(["AB12CD3", "XY9"], [(94, 24), (64, 32)], frames=[1, 2])
    for example in examples:  # prepared as `DecodedPlateSplit` serves them: 8-bit arrays at the fixed size
        example["images"] = [np.asarray(processor.prepare_images(image), dtype=np.uint8) for image in example["images"]]
    assert processor.fixed_size_image_inputs([image for example in examples for image in example["images"]])
    trl = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)
    reference = trl(copy.deepcopy(examples))
    PlateCollator(processor=processor)._supervise_answer_only(reference)
    batch = PlateCollator(processor=processor, completion_only_loss=True)(copy.deepcopy(examples))
    assert sorted(batch) == sorted(reference)
    for name in reference:
        assert torch.equal(batch[name], reference[name]), name


def test_collator_takes_trls_path_for_rows_without_images():
    processor = tiny_processor()
    collator = PlateCollator(processor=processor, completion_only_loss=True)
    examples = []
    for plate in ("AB12", "CD345"):
        messages = [{"role": "user", "content": "Spell a plate."}, {"role": "assistant", "content": plate}]
        examples.append({"images": [], "prompt": [messages[0]], "completion": [messages[1]]})
    batch = collator(examples)
    rows = zip(batch["input_ids"], batch["labels"])
    supervised = [processor.tokenizer.decode(row[labels != -100]) for row, labels in rows]
    assert supervised == ["AB12<|im_end|>", "CD345<|im_end|>"]
    assert "pixel_values" not in batch
    assert not collator._completion_ids and not collator._prompt_ids


@pytest.mark.parametrize(
    "data_options",
    [
        [],
        ["--preload_images", "true", "--augment_quad_jitter", "0.05", "0.1"],
        # 4 steps per epoch: the crops are plain in epoch 0, shaded and jittered from epoch 1, where the run resumes.
        ["--preload_images", "true", "--augment_quad_jitter", "0.05", "0.1", "--augment_shadow", "0.5", "0.6",
         "--augment_warmup_epochs", "1"],
        # Muon's momentum and AdamW's moments come back from the one optimizer state
        ["--muon", "true"],
    ],
    ids=["read-split", "decoded-and-jittered", "augmentation-warm-up", "muon"],
)
def test_resume_after_a_kill_gives_the_same_weights_as_an_uninterrupted_run(dataset_dir, tmp_path, data_options):
    common = [
        "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2", "--learning_rate", "0.005", *data_options
    ]
    run(dataset_dir, tmp_path / "straight", *common)

    class Killed(Exception):
        pass

    interrupted = tmp_path / "interrupted"

    class KillCallback(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise Killed()

    with trainer_callback(KillCallback()), pytest.raises(Killed):
        run(dataset_dir, interrupted, *common)
    assert (interrupted / "checkpoint-4").is_dir() and not (interrupted / "final").exists()
    run(dataset_dir, interrupted, *common, "--resume_from_checkpoint", "true")

    straight, resumed = final_weights(tmp_path / "straight"), final_weights(interrupted)
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_unknown_recipe_field_fails_before_any_work(dataset_dir, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(Path(SMOKE).read_text() + "learning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        train_sft.main(["--config", str(recipe), "--dataset_name", dataset_dir, "--output_dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "field, value, message",
    [("ablation", "Z", "ablation"), ("max_new_tokens", "0", "max_new_tokens"), ("learning_rate", "fast", "learning_rate"),
     ("image_size", "32x672", "image_size"), ("image_size", "[32, 0]", "image_size"),
     ("augment_quad_jitter", "0.05,0.2", "augment_quad_jitter"), ("augment_shadow", "[0.3]", "augment_shadow")],
)
def test_invalid_recipe_value_fails_with_a_clear_message(dataset_dir, tmp_path, capsys, field, value, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(Path(SMOKE).read_text() + f"{field}: {value}\n")
    with pytest.raises((ValueError, SystemExit)) as raised:
        train_sft.main(["--config", str(recipe), "--dataset_name", dataset_dir, "--output_dir", str(tmp_path / "o")])
    shown = str(raised.value) + capsys.readouterr().err
    assert message in shown
    assert not (tmp_path / "o").exists()


def test_dataset_with_wrong_columns_is_rejected_naming_the_column(tmp_path):
    broken = tmp_path / "broken"
    rows = [{"images": [random_plate_image(0)], "text": "AB12CD3"}]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(broken)
    with pytest.raises(ValueError, match=r"missing the column\(s\) prompt, completion"):
        run(str(broken), tmp_path / "o", "--final_eval_split", "none")


def test_ablation_on_a_from_scratch_config_is_rejected(dataset_dir, tmp_path):
    with pytest.raises(ValueError, match="from-scratch config trains everything"):
        run(dataset_dir, tmp_path / "o", "--ablation", "D")


@pytest.mark.parametrize("native", [True, False])
def test_bf16_if_native_trains_in_bfloat16_only_where_the_hardware_computes_it(dataset_dir, tmp_path, monkeypatch,
                                                                                native):
    monkeypatch.setattr(train_sft, "has_native_bf16", lambda device: native)
    autocast_in_forward = []

    class RecordAutocast(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            # On a submodule: Accelerate's autocast wraps the model's `forward`, inside the model's own hooks.
            model.get_input_embeddings().register_forward_pre_hook(
                lambda *_: autocast_in_forward.append(torch.is_autocast_enabled("cpu"))
            )

    with trainer_callback(RecordAutocast()):
        destination = run(
            dataset_dir, tmp_path, "--bf16_if_native", "true", "--bf16", str(not native).lower(), "--max_steps", "2",
            "--final_eval_split", "none",
        )  # fmt: skip
    assert autocast_in_forward and set(autocast_in_forward) == {native}  # the hardware's choice, not `--bf16`'s
    precision = "bfloat16 autocast" if native else "float32"
    assert f"precision | {precision} |" in (destination / "README.md").read_text()


def test_native_bf16_is_avx512_bf16_or_amx_on_a_cpu(monkeypatch):
    from lpllm.training.precision import has_native_bf16

    for avx512_bf16, amx, expected in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        assert has_native_bf16(torch.device("cpu")) is expected
    assert has_native_bf16(torch.device("meta")) is False  # a device PyTorch cannot report on: float32


def test_bf16_if_native_refuses_fp16(tmp_path):
    with pytest.raises(ValueError, match="`bf16_if_native`.*cannot be combined with `fp16`"):
        train_sft.parse_arguments(
            ["--config", SMOKE, "--dataset_name", "data/demo", "--output_dir", str(tmp_path), "--fp16", "true",
             "--bf16_if_native", "true"]
        )  # fmt: skip


def test_deskew_option_trains_is_saved_with_the_processor_and_the_card_says_so(dataset_dir, tmp_path):
    destination = run(
        dataset_dir, tmp_path / "level", "--deskew_max_degrees", "15", "--preload_images", "true",
        "--augment_quad_jitter", "0.05", "0.2", "--max_steps", "2", "--final_eval_split", "none",
    )  # fmt: skip
    assert json.loads((destination / "processor_config.json").read_text())["deskew_max_degrees"] == 15
    assert (destination / "deskew.py").is_file()
    assert "tilts up to 15 degrees levelled first (beyond the paper)" in (destination / "README.md").read_text()
    rectified = run(
        dataset_dir, tmp_path / "rectify", "--rectify_plate", "true", "--max_steps", "1", "--final_eval_split", "none",
    )  # fmt: skip
    assert json.loads((rectified / "processor_config.json").read_text())["rectify_plate"] is True
    assert "keystone undone first (beyond the paper)" in (rectified / "README.md").read_text()
    with pytest.raises(ValueError, match="deskew_max_degrees"):
        run(dataset_dir, tmp_path / "steep", "--deskew_max_degrees", "60", "--max_steps", "1")


def test_images_decoded_in_memory_train_the_same_weights_as_reading_the_split(dataset_dir, tmp_path):
    common = ["--max_steps", "3", "--learning_rate", "0.005", "--final_eval_split", "none"]
    run(dataset_dir, tmp_path / "read", *common)
    run(dataset_dir, tmp_path / "decoded", *common, "--preload_images", "true")
    read, decoded = final_weights(tmp_path / "read"), final_weights(tmp_path / "decoded")
    assert read.keys() == decoded.keys()
    for name in read:
        assert torch.equal(read[name], decoded[name]), name


def test_decoded_split_rows_are_the_processors_pixels_and_fresh_messages(dataset_dir):
    from datasets import load_from_disk

    from lpllm.training.data import DecodedPlateSplit

    processor = tiny_processor()
    processor.set_image_size([32, 128])
    split = load_from_disk(dataset_dir)["train"]
    decoded = DecodedPlateSplit(split, processor.prepare_images)
    assert len(decoded) == len(split)
    row = decoded[3]
    expected = processor.prepare_images(split[3]["images"][0])
    assert row["images"][0].shape == (32, 128, 3) and (row["images"][0] == np.asarray(expected)).all()
    assert row["prompt"] == split[3]["prompt"] and row["completion"] == split[3]["completion"]
    row["prompt"][0]["content"].clear()  # what TRL's collator may do to a row must not reach the next epoch
    assert decoded[3]["prompt"] == split[3]["prompt"]


def test_jitter_changes_the_training_plates_and_is_seeded(dataset_dir):
    from datasets import load_from_disk

    from lpllm.training.augmentation import RandomQuadJitter
    from lpllm.training.data import DecodedPlateSplit

    split = load_from_disk(dataset_dir)["train"]
    decoded = DecodedPlateSplit(split, tiny_processor().prepare_images, augment=RandomQuadJitter((0.05, 0.1), (32, 128)))
    torch.manual_seed(0)
    first = np.asarray(decoded[2]["images"][0])
    again = np.asarray(decoded[2]["images"][0])
    torch.manual_seed(0)
    replayed = np.asarray(decoded[2]["images"][0])
    assert first.shape == (32, 128, 3)
    assert not np.array_equal(first, again)  # a new draw at every read
    assert np.array_equal(first, replayed)  # from torch's seeded generator


def test_augmentation_warm_up_follows_the_epoch_also_when_resuming_mid_epoch():
    from transformers import TrainerState

    from lpllm.training.augmentation import RandomQuadJitter
    from lpllm.training.callbacks import AugmentationWarmupCallback

    augment = RandomQuadJitter((0.05, 0.1))
    callback = AugmentationWarmupCallback(augment, warmup_epochs=2)
    strengths = {}
    for epoch in (0.0, 1.0, 1.75, 2.0, 5.5):  # 1.75, 5.5: a run resumed from a mid-epoch checkpoint
        callback.on_epoch_begin(None, TrainerState(epoch=epoch), None)
        strengths[epoch] = augment.strength
    assert strengths == {0.0: 0.0, 1.0: 0.5, 1.75: 0.5, 2.0: 1.0, 5.5: 1.0}
    image = random_plate_image(3).convert("RGB")
    augment.strength = 0.0
    assert np.array_equal(np.asarray(augment(image)), np.asarray(image))  # zero strength: the crop as it is


def test_shadow_darkens_one_polygon_of_the_crop_and_is_seeded():
    from PIL import Image

    from lpllm.training.augmentation import AugmentationChain, RandomShadow

    image = Image.fromarray(np.full((40, 160, 3), 200, dtype=np.uint8))
    shadow = RandomShadow(1.0, 0.6)
    torch.manual_seed(0)
    shaded = np.asarray(shadow(image)).astype(int)
    darker = shaded < 200
    assert darker.any() and not darker.all()  # a polygon, not the whole crop
    assert (darker == darker[..., :1]).all()  # every channel of a shaded pixel, as a shadow darkens
    assert (shaded[~darker] == 200).all() and (shaded[darker] >= round(200 * 0.4)).all()
    assert len(np.unique(shaded[darker])) == 1  # one darkening per shadow
    torch.manual_seed(0)
    assert np.array_equal(np.asarray(shadow(image)), shaded)  # from torch's seeded generator

    # Off, or at zero strength (set through a chain), the crop stays as it is, and the random stream moves on by the
    # same draws as when a shadow falls.
    never = RandomShadow(0.0, 0.6)
    faded = AugmentationChain([RandomShadow(1.0, 0.6)])
    faded.strength = 0.0
    assert faded.transforms[0].strength == 0.0
    for unshaded in (never, faded):
        torch.manual_seed(0)
        assert np.array_equal(np.asarray(unshaded(image)), np.asarray(image))
        next_draws = torch.rand(3)
        torch.manual_seed(0)
        torch.rand(2 + 2 * 5)  # a shadow's draws: whether, how dark, 5 vertices
        assert torch.equal(next_draws, torch.rand(3))


def test_zero_jitter_keeps_the_crop():
    from lpllm.training.augmentation import RandomQuadJitter

    image = random_plate_image(3)
    assert np.array_equal(np.asarray(RandomQuadJitter((0.0, 0.0))(image.convert("RGB"))), np.asarray(image.convert("RGB")))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_quad_warp_is_pils_quad_transform_within_one_level(mode):
    from PIL import Image

    from lpllm.training.augmentation import quad_warp

    generator = np.random.default_rng(0)
    for index in range(6):
        image = random_plate_image(index, size=(int(generator.integers(60, 200)), int(generator.integers(20, 60))))
        image = image.convert(mode)
        width, height = image.size
        corners = [(0, 0), (0, height), (width, height), (width, 0)]
        # shifts up to 30% of the sides: parts of the output fall outside the crop and take its corner colour
        quad = [
            coordinate + shift * side
            for corner in corners
            for coordinate, side, shift in zip(corner, (width, height), generator.uniform(-0.3, 0.3, size=2))
        ]
        size = (int(generator.integers(50, 300)), int(generator.integers(16, 64)))
        expected = image.transform(
            size, Image.Transform.QUAD, quad, resample=Image.Resampling.BILINEAR, fillcolor=image.getpixel((0, 0))
        )
        warped = quad_warp(np.asarray(image), quad, size)
        assert warped.shape == np.asarray(expected).shape and warped.dtype == np.uint8
        assert np.abs(warped.astype(int) - np.asarray(expected).astype(int)).max() <= 1


@pytest.mark.parametrize(
    "options, message",
    [
        (["--preload_images", "true", "--augment_warmup_epochs", "1"], "needs an augmentation"),
        (["--augment_shadow", "0.3", "0.6"], "needs `preload_images: true`"),
        (["--preload_images", "true", "--augment_shadow", "0.3", "1.5"], r"largest darkening in \(0, 1\)"),
        (["--preload_images", "true", "--augment_shadow", "0.3"], "`augment_shadow` must be `P DARKENING`"),
        (["--augment_quad_jitter", "0.05", "0.1"], "needs `preload_images: true`"),
        (["--preload_images", "true", "--augment_quad_jitter", "0.6", "0.1"], r"two fractions in \[0, 0.5\)"),
        (["--preload_images", "true", "--augment_quad_jitter", "0.05", "0.1", "0.2"], "`augment_quad_jitter` must be"),
    ],
)
def test_bad_jitter_settings_fail_before_any_work(dataset_dir, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        run(dataset_dir, tmp_path / "o", *options)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(dataset_dir, tmp_path):
    output_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        str(REPO / "train_sft.py"), "--config", SMOKE, "--dataset_name", dataset_dir, "--output_dir", str(output_dir),
        "--max_steps", "2", "--ddp_backend", "gloo",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert (output_dir / "final" / "model.safetensors").is_file()
    assert completed.stderr.count("on 2 process(es)") == 2  # both ranks trained together


def test_demo_recipe_reads_each_plate_as_twenty_one_visual_tokens_and_decays_over_its_budget(tmp_path):
    from lpllm.training.model_setup import load_model_and_processor
    from lpllm.training.precision import has_native_bf16

    os.chdir(REPO)
    recipe = str(REPO / "recipes" / "demo_cpu.yaml")
    _, training_args, model_args, plate_args = train_sft.parse_arguments(
        ["--config", recipe, "--dataset_name", "data/demo", "--output_dir", str(tmp_path)]
    )
    assert plate_args.cosine_over_budget and plate_args.max_train_minutes == 15
    assert training_args.lr_scheduler_type.value == "cosine"
    model, processor = load_model_and_processor(
        model_args.model_name_or_path, plate_args, attn_implementation=model_args.attn_implementation
    )
    assert model.config.text_config._attn_implementation == "eager"
    assert processor.image_size == [32, 672] and processor.deskew_max_degrees == 20 and processor.rectify_plate
    assert processor.num_views == 5  # read from the crop and four fixed corner jitters, saved with the processor
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[random_plate_image(0)], text=[prompt], return_tensors="pt")
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == 21  # three per character of a 7-character plate
    assert model.config.initializer_range == 0.2 and model.config.text_config.num_hidden_layers == 4
    assert plate_args.bf16_if_native and training_args.adam_beta2 == 0.95
    assert training_args.bf16 == has_native_bf16(torch.device("cpu"))  # float32 where bfloat16 would be emulated
    assert training_args.per_device_train_batch_size == 48 and training_args.learning_rate == 3e-3
    assert plate_args.muon and plate_args.muon_newton_schulz_steps == 3
    assert training_args.optim.value == "adamw_torch_fused"  # AdamW's part: embeddings, head, norms, biases
    # what made its steps ~2x faster than TRL's defaults, and the jitter that keeps it from overfitting
    assert not training_args.activation_checkpointing and plate_args.preload_images
    assert plate_args.augment_quad_jitter == [0.05, 0.2] and plate_args.augment_shadow == [0.3, 0.6]
    assert plate_args.augment_warmup_epochs == 1


def test_base_recipe_trains_for_a_step_budget_and_saves_five_searched_beams(tmp_path):
    from lpllm.training.model_setup import configure_generation

    os.chdir(REPO)
    weights = tmp_path / "ppocr.safetensors"  # `lpllm convert-ppocr` writes it; only its presence is checked here
    weights.touch()
    _, training_args, _, plate_args = train_sft.parse_arguments(
        ["--config", str(REPO / "recipes" / "base_cpu.yaml"), "--output_dir", str(tmp_path / "out"),
         "--vision_weights", str(weights)]
    )  # fmt: skip
    assert training_args.max_steps == 2812 and plate_args.max_train_minutes is None  # the machine's load cannot change it
    assert plate_args.ppocr_ctc_features and plate_args.freeze_vision_encoder
    assert plate_args.generation_num_beams == 5
    model, processor = save_tiny_checkpoint(tmp_path / "tiny")
    configure_generation(model, processor, 10, plate_args.generation_num_beams)
    assert model.generation_config.num_beams == 5
    configure_generation(model, processor, 10, None)  # a fine-tuning run keeps its base's
    assert model.generation_config.num_beams == 5 and model.generation_config.max_new_tokens == 10


@pytest.mark.parametrize("start", ["from_scratch", "checkpoint"])
def test_attn_implementation_reaches_the_language_model_and_the_vision_tower(tmp_path, start):
    from lpllm.training.arguments import PlateTrainingArguments
    from lpllm.training.model_setup import load_model_and_processor

    if start == "from_scratch":
        model_name_or_path = str(REPO / "recipes" / "models" / "lpllm_tiny.json")
    else:
        save_tiny_checkpoint(tmp_path)
        model_name_or_path = str(tmp_path)
    model, _ = load_model_and_processor(model_name_or_path, PlateTrainingArguments(), attn_implementation="eager")
    assert model.config.text_config._attn_implementation == "eager"
    assert {block.attn.config._attn_implementation for block in model.model.visual.blocks} == {"eager"}
    model, _ = load_model_and_processor(model_name_or_path, PlateTrainingArguments())
    assert model.config.text_config._attn_implementation == "sdpa"  # transformers' own choice when none is asked


def test_cosine_over_budget_needs_a_budget_and_the_cosine_schedule(dataset_dir, tmp_path):
    from lpllm.training.arguments import PlateTrainingArguments

    with pytest.raises(ValueError, match="`cosine_over_budget` needs `max_train_minutes`"):
        PlateTrainingArguments(cosine_over_budget=True)
    with pytest.raises(ValueError, match="lr_scheduler_type: cosine"):
        run(dataset_dir, tmp_path, "--max_train_minutes", "5", "--cosine_over_budget", "true",
            "--lr_scheduler_type", "linear")


def test_cosine_over_budget_keeps_the_peak_rate_while_the_budget_lasts(dataset_dir, tmp_path):
    import json

    run(dataset_dir, tmp_path, "--max_train_minutes", "30", "--cosine_over_budget", "true", "--max_steps", "4",
        "--save_strategy", "steps", "--save_steps", "4")
    state = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())
    rates = [entry["learning_rate"] for entry in state["log_history"] if "learning_rate" in entry]
    # A step cosine over max_steps=4 would be near zero by step 4; the 30-minute one has barely started to decay.
    assert rates[-1] == pytest.approx(1e-3, rel=1e-2)


def test_muon_option_trains_the_linear_weights_with_muon_and_the_rest_with_adamw(dataset_dir, tmp_path):
    from lpllm.training.optimizers import MuonWithAdamW

    seen = {}

    class OptimizerSpy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            seen["optimizer"] = getattr(optimizer, "optimizer", optimizer)  # inside accelerate's wrapper
            seen["names"] = {id(parameter): name for name, parameter in model.named_parameters()}

    with trainer_callback(OptimizerSpy()):
        run(dataset_dir, tmp_path, "--muon", "true")
    optimizer = seen["optimizer"]
    assert isinstance(optimizer, MuonWithAdamW)
    muon_names = {
        seen["names"][id(parameter)]
        for group in optimizer.param_groups
        if group["use_muon"]
        for parameter in group["params"]
    }
    assert any(name.endswith("self_attn.q_proj.weight") for name in muon_names)
    assert not any("embed" in name or "norm" in name or name.endswith("bias") for name in muon_names)
    assert optimizer.state  # both parts stepped: their state lives in the one optimizer
    assert {"momentum_buffer", "exp_avg"} <= {key for state in optimizer.state.values() for key in state}
    assert "Muon on the linear layers' weight matrices (5 Newton-Schulz steps), adamw_torch on the rest" in (
        tmp_path / "final" / "README.md"
    ).read_text()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--optim", "sgd"], "`muon` runs AdamW beside Muon: it needs `optim` adamw_torch or adamw_torch_fused"),
        (["--muon_newton_schulz_steps", "0"], "`muon_newton_schulz_steps` must be an integer >= 1, got 0"),
    ],
)
def test_bad_muon_settings_fail_before_any_work(dataset_dir, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        run(dataset_dir, tmp_path, "--muon", "true", *options)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_muon_with_lora_takes_the_adapter_and_cmrm_matrices_and_leaves_the_frozen_weights(
    dataset_dir, pretrained_dir, tmp_path
):
    seen = {}

    class OptimizerSpy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            optimizer = getattr(optimizer, "optimizer", optimizer)
            names = {id(parameter): name for name, parameter in model.named_parameters()}
            seen["muon"] = {
                names[id(parameter)]
                for group in optimizer.param_groups
                if group["use_muon"]
                for parameter in group["params"]
            }
            seen["trainable"] = {name for name, parameter in model.named_parameters() if parameter.requires_grad}

    before = load_file(Path(pretrained_dir) / "model.safetensors")
    with trainer_callback(OptimizerSpy()):
        run(dataset_dir, tmp_path, "--model_name_or_path", pretrained_dir, "--ablation", "D", "--learning_rate", "0.01",
            "--lora_r", "4", "--lora_alpha", "8", "--max_steps", "3", "--muon", "true")  # fmt: skip
    assert seen["muon"] <= seen["trainable"]
    assert any("lora_A" in name for name in seen["muon"]) and any("lora_B" in name for name in seen["muon"])
    assert any(".cmrm." in name and "_proj" in name for name in seen["muon"])
    assert all("lora_" in name or ".cmrm." in name for name in seen["muon"])
    assert changed_groups(before, final_weights(tmp_path)) == {"lm_lora_targets", "cmrm"}


@pytest.mark.parametrize("sharding", ["is_fsdp_enabled", "is_deepspeed_enabled"])
def test_muon_refuses_sharded_training(sharding):
    from types import SimpleNamespace

    trainer = SimpleNamespace(muon=True, optimizer=None, is_fsdp_enabled=False, is_deepspeed_enabled=False)
    setattr(trainer, sharding, True)
    with pytest.raises(ValueError, match="FSDP and DeepSpeed shard them"):
        train_sft.PlateSFTTrainer.create_optimizer(trainer)


def test_evaluations_along_the_way_do_not_count_as_training_time(dataset_dir, tmp_path, monkeypatch):
    import time

    original = train_sft.PlateSFTTrainer._evaluate_with_generation
    clock_readings = []

    def slow_evaluation(self, *args):
        before = self.training_clock.seconds()
        time.sleep(0.2)
        metrics = original(self, *args)
        clock_readings.append((before, self.training_clock.seconds()))
        return metrics

    monkeypatch.setattr(train_sft.PlateSFTTrainer, "_evaluate_with_generation", slow_evaluation)
    run(dataset_dir, tmp_path, "--max_train_minutes", "30", "--cosine_over_budget", "true",
        "--eval_strategy", "steps", "--eval_steps", "2")  # fmt: skip
    assert len(clock_readings) >= 2  # at steps 2 and 4
    assert all(before == after > 0 for before, after in clock_readings)  # the training clock stood still


def test_paper_recipe_holds_the_paper_defaults(tmp_path):
    recipe = str(REPO / "recipes" / "qwen3vl_2b_lora_cmrm.yaml")
    # bf16 needs a GPU; everything else is parsed exactly as a GPU user gets it.
    script_args, training_args, model_args, plate_args = train_sft.parse_arguments(
        ["--config", recipe, "--dataset_name", "data/ccpd_blur", "--output_dir", str(tmp_path), "--bf16", "false"]
    )
    assert (model_args.lora_r, model_args.lora_alpha) == (64, 16)
    assert training_args.learning_rate == 1e-4 and training_args.optim.value == "adamw_torch"
    assert training_args.lr_scheduler_type.value == "cosine" and training_args.warmup_steps == 0.1
    assert (training_args.num_train_epochs, training_args.per_device_train_batch_size) == (20, 16)
    assert plate_args.image_size == [448, 448] and plate_args.ablation == "D"
    assert training_args.metric_for_best_model == "eval_exact_match" and training_args.load_best_model_at_end
    assert model_args.model_name_or_path == "Qwen/Qwen3-VL-2B-Instruct"


@pytest.mark.parametrize(
    "value, expected", [(448, [448, 448]), ([448], [448, 448]), ([32, 224], [32, 224]), (None, None)]
)
def test_image_size_accepts_a_side_or_height_and_width(value, expected):
    from lpllm.training.arguments import PlateTrainingArguments

    assert PlateTrainingArguments(image_size=value).image_size == expected


@pytest.mark.parametrize("value", [0, [32, 0], "448", "32x224", [32, 224, 3], [], [32.5, 224], [True, 224], -5])
def test_bad_image_size_names_the_field(value):
    from lpllm.training.arguments import PlateTrainingArguments

    with pytest.raises(ValueError, match="`image_size`"):
        PlateTrainingArguments(image_size=value)


def test_starts_from_a_stock_qwen3_vl_checkpoint(dataset_dir, tmp_path):
    from test_modeling_lpllm import stock_twin
    from tiny_lpllm import tiny_model

    stock_dir = tmp_path / "stock"
    processor = tiny_processor()
    stock_twin(tiny_model(processor, seed=2)).save_pretrained(stock_dir)
    processor.save_pretrained(stock_dir)
    destination = run(
        dataset_dir, tmp_path / "run", "--model_name_or_path", str(stock_dir), "--ablation", "D", "--lora_r", "4",
        "--max_steps", "2",
    )
    config = (destination / "config.json").read_text()
    assert '"model_type": "lpllm"' in config and '"cmrm_enabled": true' in config
    weights = final_weights(tmp_path / "run")
    assert any(".cmrm.slot_queries" in name for name in weights)
