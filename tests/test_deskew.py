"""Levelling tilted plate crops and undoing plates' keystone (`modeling_lpllm/deskew.py`), and the processor options
that apply them."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from tiny_lpllm import TINY_MAX_PIXELS, TINY_MIN_PIXELS, run_without_the_package

from lpllm.training.arguments import PlateTrainingArguments
from lpllm.training.augmentation import RandomQuadJitter
from lpllm.training.data import DecodedPlateSplit
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


def keystone_crop(left_share: float = 0.5) -> Image.Image:
    """`plate_crop(0)` seen from the side: its left end `left_share` as tall as its right end, which is unchanged."""
    upright = plate_crop(0)
    width, height = upright.size
    # Output column 0 samples a source span 1/left_share as tall as the crop, so everything there shrinks.
    spill = height * (1 / left_share - 1) / 2
    quad = (0, -spill, 0, height + spill, width, height, width, 0)
    return upright.transform(upright.size, Image.QUAD, quad, resample=Image.BICUBIC, fillcolor=BACKGROUND)


def red_block_heights(image: Image.Image) -> list[int]:
    """The height in rows of each red character block, left to right."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    columns = red.any(axis=0)
    starts = np.flatnonzero(columns & ~np.concatenate([[False], columns[:-1]]))
    stops = np.flatnonzero(columns & ~np.concatenate([columns[1:], [False]])) + 1
    return [int(np.ptp(np.flatnonzero(red[:, a:b].any(axis=1)))) + 1 for a, b in zip(starts, stops)]


def test_rectifying_undoes_the_keystone_so_every_character_spans_the_crop_alike():
    crop = keystone_crop(0.5)
    assert deskew(crop, 20) is crop  # not tilted: levelling alone leaves it as it is
    before = red_block_heights(crop)
    assert len(before) == 7 and before[0] < 0.7 * before[-1]
    rectified = deskew(crop, 20, rectify=True)
    after = red_block_heights(rectified)
    assert len(after) == 7
    assert max(after) - min(after) <= 0.1 * max(after)
    # Trimmed to the plate: a character block (34 of the plate's 50 rows) fills most of the crop height.
    assert min(after) >= 0.55 * rectified.height
    assert rectified.width >= 0.8 * crop.width


@pytest.mark.parametrize("tilt", [0, 12])
def test_rectifying_an_upright_or_tilted_plate_trims_it_and_keeps_every_character(tilt):
    crop = plate_crop(tilt)
    rectified = deskew(crop, 20, rectify=True)
    heights = red_block_heights(rectified)
    assert len(heights) == 7 and max(heights) - min(heights) <= 3
    assert min(heights) >= 0.55 * rectified.height and 50 <= rectified.height <= 70
    assert red_pixels(rectified) == pytest.approx(red_pixels(plate_crop(0)), rel=0.15)


def test_rectifying_a_crop_without_edges_keeps_it_whole():
    flat = Image.new("RGB", (90, 30), "gray")
    assert deskew(flat, 20, rectify=True).size == flat.size


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_non_boolean_rectify_setting_is_refused_naming_the_field(value):
    with pytest.raises(ValueError, match="rectify_plate"):
        build_offline_processor(rectify_plate=value)


def test_processor_rectifies_before_resizing_when_asked():
    crop = keystone_crop(0.5)
    rectifying = build_offline_processor(image_size=[32, 224], deskew_max_degrees=20, rectify_plate=True)
    np.testing.assert_array_equal(
        np.asarray(rectifying.prepare_images(crop)),
        np.asarray(deskew(crop, 20, rectify=True).resize((224, 32), Image.BICUBIC)),
    )
    assert not build_offline_processor(image_size=[32, 224]).rectify_plate


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
torch.save(
    {
        "deskew_max_degrees": processor.deskew_max_degrees,
        "rectify_plate": processor.rectify_plate,
        "pixel_values": inputs["pixel_values"],
    },
    sys.argv[4],
)
"""


def test_the_setting_is_saved_and_applied_by_the_remote_code_in_a_fresh_process(tmp_path):
    processor = build_offline_processor(
        min_pixels=TINY_MIN_PIXELS,
        max_pixels=TINY_MAX_PIXELS,
        image_size=[32, 192],
        deskew_max_degrees=15,
        rectify_plate=True,
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
    assert results["deskew_max_degrees"] == 15 and results["rectify_plate"] is True
    assert torch.equal(results["pixel_values"], expected)
    # ...and differs from what the processor reads without rectifying, and without levelling either.
    processor.rectify_plate = False
    levelled_only = processor(images=[tilted], text=[prompt], return_tensors="pt")["pixel_values"]
    assert not torch.equal(levelled_only, expected)
    processor.deskew_max_degrees = 0.0
    assert not torch.equal(processor(images=[tilted], text=[prompt], return_tensors="pt")["pixel_values"], levelled_only)
