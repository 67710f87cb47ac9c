"""Levelling tilted plate crops (`modeling_lpllm/deskew.py`) and the processor option that applies it."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from tiny_lpllm import TINY_MAX_PIXELS, TINY_MIN_PIXELS, run_without_the_package

from lpllm_train.arguments import PlateTrainingArguments
from lpllm_train.augmentation import RandomQuadJitter
from lpllm_train.data import DecodedPlateSplit
from modeling_lpllm import build_offline_processor
from modeling_lpllm.deskew import MIN_TILT_DEGREES, check_max_degrees, deskew, estimate_tilt
from modeling_lpllm.processing_lpllm import plate_messages


BACKGROUND = (120, 110, 140)
INK = (200, 0, 0)  # pure red: nothing else in the picture has it, so the characters can be counted after resampling


def plate_crop(tilt_degrees: float = 0.0) -> Image.Image:
    """A detector's crop of a plate turned counter-clockwise by `tilt_degrees`: a white plate with a black border and
    seven red character blocks, on a plain background, inside the turned plate's bounding box."""
    crop = Image.new("RGB", (240, 90), BACKGROUND)
    draw = ImageDraw.Draw(crop)
    draw.rectangle((20, 20, 219, 69), fill="white", outline="black", width=3)
    for index in range(7):
        left = 32 + 26 * index
        draw.rectangle((left, 28, left + 15, 61), fill=INK)
    if tilt_degrees:
        crop = crop.rotate(tilt_degrees, resample=Image.BICUBIC, expand=True, fillcolor=BACKGROUND)
    return crop


def red_pixels(image: Image.Image) -> int:
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return int(((pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).sum())


@pytest.mark.parametrize("tilt", [-15, -8, 6, 12, 18])
def test_the_estimate_undoes_the_tilt_to_a_degree(tilt):
    assert abs(estimate_tilt(plate_crop(tilt), 20) + tilt) <= 1


def test_upright_and_flat_crops_come_back_untouched():
    upright = plate_crop(0)
    assert estimate_tilt(upright, 20) == 0
    assert deskew(upright, 20) is upright
    flat = Image.new("RGB", (90, 30), "gray")
    assert estimate_tilt(flat, 20) == 0 and deskew(flat, 20) is flat
    slight = plate_crop(MIN_TILT_DEGREES / 2)
    assert deskew(slight, 20) is slight


def test_tilts_beyond_the_range_are_not_searched():
    assert abs(estimate_tilt(plate_crop(12), 6)) <= 6
    assert estimate_tilt(plate_crop(12), 0) == 0


@pytest.mark.parametrize("tilt", [-14, 10])
def test_a_levelled_crop_is_level_trimmed_to_the_plate_and_keeps_every_character(tilt):
    tilted = plate_crop(tilt)
    levelled = deskew(tilted, 20)
    assert abs(estimate_tilt(levelled, 20)) <= 1
    # The turn grows the bounding box; what it added around the plate (white, 200x50) is trimmed again.
    turned = tilted.rotate(-tilt, expand=True)
    assert levelled.height < 0.8 * turned.height and levelled.width < 0.9 * turned.width
    assert 200 <= levelled.width <= 240 and 50 <= levelled.height <= 90
    # No character is cut: the red ink survives the turn and the trim (resampling blurs its edges a little).
    assert red_pixels(levelled) == pytest.approx(red_pixels(plate_crop(0)), rel=0.1)
    # Level characters: every red block spans the same rows, so the red rows are about one block high.
    pixels = np.asarray(levelled).astype(int)
    red_rows = np.nonzero(pixels[..., 0] - pixels[..., 1] > 150)[0]
    assert red_rows.max() - red_rows.min() <= 34 + 4


@pytest.mark.parametrize("value", [-1, 45, 90, "steep", None, True, float("nan")])
def test_invalid_angle_ranges_are_refused_naming_the_field(value):
    with pytest.raises(ValueError, match="deskew_max_degrees"):
        check_max_degrees(value)
    with pytest.raises(ValueError, match="deskew_max_degrees"):
        build_offline_processor(deskew_max_degrees=value)
    if value is not None:  # None means "the checkpoint's setting" in the training arguments
        with pytest.raises(ValueError, match="deskew_max_degrees"):
            PlateTrainingArguments(deskew_max_degrees=value)


def test_processor_levels_before_resizing_and_off_is_unchanged():
    tilted = plate_crop(12)
    plain = build_offline_processor(image_size=[32, 224])
    levelling = build_offline_processor(image_size=[32, 224], deskew_max_degrees=20)
    assert plain.deskew_max_degrees == 0
    np.testing.assert_array_equal(
        np.asarray(plain.prepare_images(tilted)), np.asarray(tilted.resize((224, 32), Image.BICUBIC))
    )
    np.testing.assert_array_equal(
        np.asarray(levelling.prepare_images(tilted)),
        np.asarray(deskew(tilted, 20).resize((224, 32), Image.BICUBIC)),
    )
    assert levelling.prepare_images(tilted, resize=False).size == deskew(tilted, 20).size
    upright = plate_crop(0)
    np.testing.assert_array_equal(
        np.asarray(levelling.prepare_images(upright)), np.asarray(plain.prepare_images(upright))
    )


def test_decoded_training_split_keeps_levelled_crops_for_the_jitter():
    processor = build_offline_processor(image_size=[32, 224], deskew_max_degrees=20)
    rows = [{"images": [plate_crop(12)], "prompt": [], "completion": []}]
    decoded = DecodedPlateSplit(rows, processor.prepare_images, augment=RandomQuadJitter((0.0, 0.0), (32, 224)))
    stored = decoded.rows[0]["images"][0]
    assert stored.size == deskew(plate_crop(12), 20).size
    np.testing.assert_array_equal(np.asarray(stored), np.asarray(deskew(plate_crop(12), 20)))
    jittered = decoded[0]["images"][0]
    # an array, which the processor takes as prepared: a jittered strip is not levelled again after its resize
    assert isinstance(jittered, np.ndarray) and jittered.shape == (32, 224, 3) and jittered.dtype == np.uint8
    np.testing.assert_array_equal(processor.prepare_images([jittered])[0], jittered)


FRESH_PROCESS_SCRIPT = """
import sys
import torch
from PIL import Image
from transformers import AutoProcessor

processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
inputs = processor(images=[Image.open(sys.argv[2])], text=[sys.argv[3]], return_tensors="pt")
torch.save({"deskew_max_degrees": processor.deskew_max_degrees, "pixel_values": inputs["pixel_values"]}, sys.argv[4])
"""


def test_the_setting_is_saved_and_applied_by_the_remote_code_in_a_fresh_process(tmp_path):
    processor = build_offline_processor(
        min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS, image_size=[32, 192], deskew_max_degrees=15
    )
    checkpoint = tmp_path / "checkpoint"
    processor.save_pretrained(checkpoint)
    assert (checkpoint / "deskew.py").is_file()
    tilted = plate_crop(-10)
    tilted.save(tmp_path / "tilted.png")
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    expected = processor(images=[tilted], text=[prompt], return_tensors="pt")["pixel_values"]
    run_without_the_package(
        FRESH_PROCESS_SCRIPT, checkpoint, tmp_path / "tilted.png", prompt, tmp_path / "out.pt", work_dir=tmp_path
    )
    results = torch.load(tmp_path / "out.pt")
    assert results["deskew_max_degrees"] == 15
    assert torch.equal(results["pixel_values"], expected)
    # ...and differs from what the processor reads without levelling.
    processor.deskew_max_degrees = 0.0
    assert not torch.equal(processor(images=[tilted], text=[prompt], return_tensors="pt")["pixel_values"], expected)
