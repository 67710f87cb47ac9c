"""The image gate every entry point shares (`modeling_lpllm/image_checks.py`), and the dataset builder's use of it."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dataset_scripts.images import CROP_LIMITS, load_image
from dataset_scripts.reports import InputProblem
from modeling_lpllm.image_checks import PLATE_IMAGE_LIMITS, ImageInputError, load_image_input, open_image, pixel_array


def png_header_only(width, height) -> bytes:
    """A PNG that declares `width` x `height` pixels but holds one byte of pixel data: a decompression-bomb shape."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_the_builder_and_the_model_share_one_definition_of_the_limits():
    assert CROP_LIMITS is PLATE_IMAGE_LIMITS


@pytest.mark.parametrize(
    "size, code", [((12_000, 12_000), "too_large"), ((10_000, 6_000), "too_large"), ((1, 1), "too_small")]
)
def test_sizes_are_refused_from_the_header_before_decoding(tmp_path, size, code):
    path = tmp_path / "plate.png"
    path.write_bytes(png_header_only(*size))
    with pytest.raises(ImageInputError) as caught:
        open_image(path)
    assert caught.value.code == code and str(caught.value).startswith(f"{path}: ")
    with pytest.raises(ImageInputError, match="crop #4: ") as caught:
        open_image(path.read_bytes(), "crop #4")
    # The builder reports the same problem, as a skip reason naming the file.
    with pytest.raises(InputProblem) as caught:
        load_image(path, name="plates/plate.png")
    assert caught.value.code == code and caught.value.file == "plates/plate.png"


def test_arrays_are_uint8_pixels_or_fractions_in_zero_one():
    pixels = np.arange(24 * 94 * 3, dtype=np.int64).reshape(24, 94, 3) % 256
    as_uint8 = pixels.astype(np.uint8)
    assert pixel_array(as_uint8, "a") is as_uint8
    assert np.array_equal(pixel_array(as_uint8 / 255.0, "a"), as_uint8)
    assert np.array_equal(np.asarray(load_image_input(as_uint8.astype(np.float32) / 255)), as_uint8)
    for bad, message in (
        (as_uint8.astype(np.float32), r"values in \[0, 255\]; expected fractions in \[0, 1\]"),
        (np.full((24, 94), np.nan), r"expected fractions in \[0, 1\]"),
        (pixels, "dtype int64; expected uint8 pixels"),
        (as_uint8.astype(bool), "dtype bool"),
        (np.zeros((3, 24, 94), dtype=np.uint8), r"\(3, 24, 94\) is not an image"),
    ):
        with pytest.raises(ImageInputError, match=f"image #2: .*{message}"):
            load_image_input(bad, "image #2")
    # The processor's pre-made arrays may be channels first.
    assert pixel_array(np.zeros((3, 24, 94), dtype=np.uint8), "a", channels_first=True).shape == (3, 24, 94)


def test_a_file_is_named_by_its_place_and_its_path(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(ImageInputError, match=r"image #3 \(.*notes.png\): cannot identify image file") as caught:
        load_image_input(str(path), "image #3")
    assert caught.value.code == "not_an_image"
    buffer = io.BytesIO()
    Image.new("RGB", (94, 24), (10, 20, 30)).save(buffer, format="PNG")
    assert load_image_input(buffer.getvalue()).getpixel((0, 0)) == (10, 20, 30)
