"""The offline processor: character-level tokenizer, Qwen3-VL prompt format, left padding, plate pixel budget,
image modes."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from modeling_lpllm import (
    CN_PROVINCES,
    DEFAULT_PLATE_CHARSET,
    DEFAULT_PROMPT,
    LPLLMProcessor,
    build_char_tokenizer,
    build_offline_processor,
    plate_messages,
    to_rgb,
)
from tiny_lpllm import random_plate_image


@pytest.fixture(scope="module")
def processor():
    return build_offline_processor()


def test_every_plate_character_is_one_token_and_decodes_back():
    tokenizer = build_char_tokenizer()
    for plate in ("皖A12345", "粤BD12345", "ABC1D23", "京A·F0236".replace("·", "")):
        ids = tokenizer(plate, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(plate)
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == plate
    assert len(CN_PROVINCES) == 31 and set(CN_PROVINCES) <= set(DEFAULT_PLATE_CHARSET)


def test_unknown_characters_map_to_unk_and_bad_charsets_are_rejected():
    tokenizer = build_char_tokenizer("0123456789")
    assert tokenizer("Ω", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
    with pytest.raises(ValueError, match="at least one character"):
        build_char_tokenizer("")
    with pytest.raises(ValueError, match="printable"):
        build_char_tokenizer("AB\tC")


def test_whole_tokens_are_one_token_each_and_plates_stay_one_token_per_character(processor):
    tokenizer = processor.tokenizer
    prompt = processor.apply_chat_template(plate_messages(answer="ABC1D23"), tokenize=False)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert tokens == [
        "<|im_start|>", "user", "\n", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>", DEFAULT_PROMPT,
        "<|im_end|>", "\n", "<|im_start|>", "assistant", "\n", *"ABC1D23", "<|im_end|>", "\n",
    ]  # fmt: skip
    # Another prompt is still read, character by character, and decodes back.
    other = "Read the user's plate"
    other_ids = tokenizer(other, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in other_ids and tokenizer.decode(other_ids) == other
    assert len(other_ids) == len(other) - len("user") + 1
    # Without whole tokens, the same prompt is spelled out.
    spelled = build_char_tokenizer()(prompt, add_special_tokens=False)["input_ids"]
    assert len(spelled) == len(tokens) - 3 + len("user") + len("assistant") + len(DEFAULT_PROMPT)
    # A character outside the vocabulary becomes a token of its own instead of `<unk>`.
    digits = build_char_tokenizer("0123456789", whole_tokens=("Ω",))
    assert digits.unk_token_id not in digits("Ω1", add_special_tokens=False)["input_ids"]


def test_bad_whole_tokens_are_rejected():
    with pytest.raises(ValueError, match="distinct non-empty"):
        build_char_tokenizer(whole_tokens=("user", ""))
    with pytest.raises(ValueError, match="distinct non-empty"):
        build_char_tokenizer(whole_tokens=("user", "user"))
    with pytest.raises(ValueError, match=r"\['AB1'\] are spelled only with plate characters"):
        build_char_tokenizer(whole_tokens=("user", "AB1"))


def test_chat_template_gives_the_qwen3_vl_prompt_format(processor):
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Read the license plate.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    full = processor.apply_chat_template(plate_messages(answer="皖A12345"), tokenize=False)
    assert full == prompt + "皖A12345<|im_end|>\n"
    two_frames = processor.apply_chat_template(plate_messages(num_images=2), add_generation_prompt=True, tokenize=False)
    assert two_frames.count("<|vision_start|><|image_pad|><|vision_end|>") == 2


def test_image_placeholder_expands_to_the_image_token_count(processor):
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[random_plate_image(0, size=(94, 24))], text=[prompt], return_tensors="pt")
    grid = inputs["image_grid_thw"][0].tolist()
    assert (inputs["input_ids"][0] == processor.image_token_id).sum().item() == grid[1] * grid[2] // 4
    assert (inputs["mm_token_type_ids"][0] == 1).sum().item() == grid[1] * grid[2] // 4


def test_plate_crop_keeps_its_aspect_ratio_and_is_not_blown_up(processor):
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    for width, height in ((94, 24), (288, 96), (520, 110), (200, 100)):
        inputs = processor(images=[random_plate_image(0, size=(width, height))], text=[prompt], return_tensors="pt")
        _, grid_h, grid_w = inputs["image_grid_thw"][0].tolist()
        pixels = grid_h * grid_w * 16 * 16
        assert pixels <= 48 * 32 * 32, (width, height)  # Qwen3-VL's stock minimum alone is 65,536 pixels
        assert abs((grid_w / grid_h) / (width / height) - 1) < 0.3, (width, height, grid_h, grid_w)
    # The LPRNet-style 94x24 crop becomes 96x320 pixels: 30 visual tokens.
    inputs = processor(images=[random_plate_image(0, size=(94, 24))], text=[prompt], return_tensors="pt")
    assert inputs["image_grid_thw"][0].tolist() == [1, 6, 20]


def test_pads_on_the_left(processor):
    # The default prompt is one token; another is spelled out character by character.
    short = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    long = processor.apply_chat_template(plate_messages(prompt="Plate?"), add_generation_prompt=True, tokenize=False)
    images = [random_plate_image(0), random_plate_image(1)]
    inputs = processor(images=images, text=[short, long], padding=True, return_tensors="pt")
    mask = inputs["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and mask[1].all()


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA", "I;16", "I", "F", "1"])
def test_non_rgb_images_are_converted(processor, mode):
    image = random_plate_image(0, mode="RGB")
    if mode in ("I;16", "I", "F"):
        image = Image.fromarray((np.asarray(image.convert("L"), dtype=np.uint16) * 257)).convert(mode)
    else:
        image = image.convert(mode)
    converted = to_rgb(image)
    assert converted.mode == "RGB" and converted.size == image.size
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    assert inputs["pixel_values"].shape[-1] == 3 * 2 * 16 * 16


def test_sixteen_bit_gray_uses_the_full_8_bit_range():
    gradient = np.linspace(1000, 3000, 94 * 24).reshape(24, 94).astype(np.uint16)
    converted = np.asarray(to_rgb(Image.fromarray(gradient)))
    assert converted.min() == 0 and converted.max() == 255


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (10, 4), (0, 0, 0, 0))
    assert np.asarray(to_rgb(image)).min() == 255


def test_empty_image_list_is_a_clear_error(processor):
    with pytest.raises(ValueError, match="empty list"):
        processor(images=[], text=["x"])


def test_save_and_load_round_trip(tmp_path, processor):
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(reloaded).__name__ == "LPLLMProcessor"
    assert reloaded.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert reloaded.tokenizer.padding_side == "left"
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    image = random_plate_image(3)
    original = processor(images=[image], text=[prompt], return_tensors="np")
    again = reloaded(images=[image], text=[prompt], return_tensors="np")
    for key in ("input_ids", "pixel_values", "image_grid_thw"):
        np.testing.assert_array_equal(original[key], again[key])
    assert isinstance(LPLLMProcessor.from_pretrained(tmp_path), LPLLMProcessor)


def test_fixed_image_size_resizes_every_image_and_is_saved_with_the_processor(tmp_path):
    processor = build_offline_processor(patch_size=16, merge_size=2, image_size=[32, 224])
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    wide, square = Image.new("RGB", (300, 60), "white"), Image.new("RGB", (80, 80), "white")
    grids = processor(images=[wide, square], text=[prompt, prompt], return_tensors="np")["image_grid_thw"]
    assert grids.tolist() == [[1, 2, 14], [1, 2, 14]]  # 32x224 pixels = 2x14 patches of 16, whatever the input
    resized = processor(images=[wide.resize((224, 32), Image.BICUBIC)], text=[prompt], return_tensors="np")
    np.testing.assert_array_equal(
        processor(images=[wide], text=[prompt], return_tensors="np")["pixel_values"], resized["pixel_values"]
    )
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert reloaded.image_size == [32, 224]
    assert reloaded(images=[square], text=[prompt], return_tensors="np")["image_grid_thw"].tolist() == [[1, 2, 14]]


@pytest.mark.parametrize(
    "image_size, message",
    [([30, 224], "multiples of patch_size"), ([32], r"\[height, width\]"), ([64, 224], "pixel budget")],
)
def test_bad_fixed_image_size_is_a_clear_error(image_size, message):
    processor = build_offline_processor(patch_size=16, merge_size=2, image_size=[32, 224])
    with pytest.raises(ValueError, match=message):
        processor.set_image_size(image_size)
    assert processor.image_size == [32, 224]  # unchanged by the refused size


def test_jpeg_bytes_round_trip_through_pil(processor):
    buffer = io.BytesIO()
    random_plate_image(2).save(buffer, format="JPEG")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    assert processor(images=[image], text=[prompt], return_tensors="pt")["pixel_values"].shape[0] > 0


def test_fixed_size_crops_get_the_image_processors_pixel_values_in_one_batched_pass():
    processor = build_offline_processor(patch_size=16, merge_size=2, image_size=[32, 224])
    generator = np.random.default_rng(0)
    crops = [generator.integers(0, 256, size=(32, 224, 3), dtype=np.uint8) for _ in range(3)]
    reference = processor.image_processor(images=crops, return_tensors="pt")
    for images in (crops, [torch.from_numpy(crop) for crop in crops]):
        batched = processor.fixed_size_image_inputs(images)
        assert batched["pixel_values"].dtype == reference["pixel_values"].dtype
        assert torch.equal(batched["pixel_values"], reference["pixel_values"])  # float for float
        assert torch.equal(batched["image_grid_thw"], reference["image_grid_thw"])

    other_size = [crops[0], crops[1][:, :192]]
    not_8_bit = [crops[0].astype(np.float32)]
    pil = [Image.fromarray(crops[0])]
    assert all(processor.fixed_size_image_inputs(images) is None for images in (other_size, not_8_bit, pil, []))
    assert build_offline_processor().fixed_size_image_inputs(crops) is None  # no fixed size
    processor.image_processor.do_normalize = False
    assert processor.fixed_size_image_inputs(crops) is None


def test_set_plate_options_sets_what_is_given_keeps_the_rest_and_names_a_bad_value():
    processor = build_offline_processor(deskew_max_degrees=10, num_views=3)
    processor.set_plate_options(rectify_plate=True)
    assert (processor.deskew_max_degrees, processor.rectify_plate, processor.num_views) == (10, True, 3)
    processor.set_plate_options(image_size=[128, 256], deskew_max_degrees=0, num_views=1)
    assert (processor.image_size, processor.deskew_max_degrees, processor.num_views) == ([128, 256], 0, 1)
    with pytest.raises(ValueError, match="num_views"):
        processor.set_plate_options(num_views=0)
    with pytest.raises(ValueError, match="deskew_max_degrees"):
        processor.set_plate_options(deskew_max_degrees=90)
    assert processor.num_views == 1 and processor.deskew_max_degrees == 0


def test_float_arrays_are_fractions_scaled_once_and_other_arrays_are_refused(processor):
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    pixels = np.asarray(random_plate_image(3))
    as_uint8 = processor(images=[pixels], text=[prompt], return_tensors="pt")["pixel_values"]
    as_fractions = processor(images=[pixels.astype(np.float32) / 255.0], text=[prompt], return_tensors="pt")
    as_tensor = processor(images=[torch.from_numpy(pixels.astype(np.float64) / 255.0)], text=[prompt], return_tensors="pt")
    assert torch.equal(as_fractions["pixel_values"], as_uint8)
    assert torch.equal(as_tensor["pixel_values"], as_uint8)
    with pytest.raises(ValueError, match=r"image #1: float array has values in \[0, 255\]; expected fractions"):
        processor(images=[pixels, pixels.astype(np.float32)], text=[prompt, prompt])
    with pytest.raises(ValueError, match="image #0: array has dtype int32"):
        processor(images=[pixels.astype(np.int32)], text=[prompt])


def test_images_outside_the_size_limits_are_refused_by_place(processor):
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    with pytest.raises(ValueError, match="image #1: image is 1x1; each side must be at least 8 pixels"):
        processor(images=[random_plate_image(1), Image.new("RGB", (1, 1))], text=[prompt, prompt])
    with pytest.raises(ValueError, match=r"image #0: image is 400x10 \(aspect 40:1\)"):
        processor(images=[Image.new("RGB", (400, 10))], text=[prompt])
