"""pipeline("image-to-text") and pipeline("image-text-to-text") on a saved tiny LP-LLM checkpoint."""

import numpy as np
import pytest
from PIL import Image
from transformers import pipeline

from modeling_lpllm import plate_messages
from tiny_lpllm import assert_same_readings, random_plate_image, save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_lpllm")
    model, processor = save_tiny_checkpoint(directory, seed=11)
    return directory, model, processor


@pytest.fixture(scope="module")
def reader(checkpoint):
    directory, _, _ = checkpoint
    return pipeline("image-to-text", model=str(directory), trust_remote_code=True)


def generate_directly(model, processor, image, max_new_tokens):
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0].strip()


def test_single_image_reads_like_direct_greedy_generation(checkpoint, reader):
    _, model, processor = checkpoint
    image = random_plate_image(1)
    result = reader(image)
    assert isinstance(result, list) and sorted(result[0]) == ["char_scores", "generated_text", "regions", "score"]
    # The saved generation config says max_new_tokens=8; the pipeline must use it.
    assert result[0]["generated_text"] == generate_directly(model, processor, image, max_new_tokens=8)


def test_batched_equals_one_by_one(reader):
    images = [random_plate_image(seed, size=size) for seed, size in ((1, (94, 24)), (2, (160, 40)), (3, (40, 40)))]
    batched = reader(images, batch_size=3)
    one_by_one = [reader(image) for image in images]
    assert_same_readings(batched, one_by_one)
    assert_same_readings(reader(images, batch_size=2), one_by_one)


def test_accepts_paths_pil_images_and_numpy_arrays(tmp_path, reader):
    image = random_plate_image(4)
    path = tmp_path / "plate.png"
    image.save(path)
    expected = reader(image)
    assert_same_readings(reader(str(path)), expected)
    assert_same_readings(reader(path), expected)
    assert_same_readings(reader(np.asarray(image)), expected)
    gray = np.asarray(image.convert("L"))
    assert_same_readings(reader(gray), reader(image.convert("L")))


def test_max_new_tokens_and_prompt_are_honoured(reader):
    image = random_plate_image(5)
    short = reader(image, max_new_tokens=2)[0]["generated_text"]
    assert len(short) <= 2
    assert reader(image, prompt="Plate?")[0]["generated_text"] is not None


@pytest.mark.parametrize(
    "bad_input, message",
    [
        ("/nonexistent/plate.png", "no such file: /nonexistent/plate.png"),
        (np.zeros((24, 94, 2), dtype=np.uint8), r"image #0: array of shape \(24, 94, 2\) is not an image"),
        (np.full((24, 94, 3), 2.0, dtype=np.float32), r"image #0: float array has values in \[2, 2\]; expected fractions"),
        (np.zeros((24, 94, 3), dtype=np.int64), "image #0: array has dtype int64; expected uint8 pixels"),
        (np.zeros((1, 1, 3), dtype=np.uint8), "image #0: image is 1x1; each side must be at least 8 pixels"),
        (Image.new("RGB", (300, 8)), r"image #0: image is 300x8 \(aspect 38:1\); at most 25:1"),
        (42, "image #0: got a int"),
        ([], "empty list"),
    ],
)
def test_bad_inputs_get_clear_errors(reader, bad_input, message):
    with pytest.raises(ValueError, match=message):
        reader(bad_input)


def test_non_image_file_is_a_clear_error(tmp_path, reader):
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    with pytest.raises(ValueError, match="notes.png"):
        reader(str(text_file))


def test_image_text_to_text_pipeline_works_too(checkpoint):
    directory, model, processor = checkpoint
    chat = pipeline("image-text-to-text", model=str(directory), trust_remote_code=True)
    image = random_plate_image(6)
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Read the license plate."}]}
    ]
    output = chat(text=messages, max_new_tokens=8)
    answer = output[0]["generated_text"][-1]
    assert answer["role"] == "assistant"
    assert answer["content"].strip() == generate_directly(model, processor, image, max_new_tokens=8)


def test_rgba_and_cmyk_images_are_read(reader):
    image = random_plate_image(7)
    assert reader(image.convert("CMYK"))[0]["generated_text"] is not None
    rgba = image.convert("RGBA")
    flattened = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    assert_same_readings(reader(rgba), reader(flattened))


def test_float_array_in_zero_one_is_scaled_once(reader):
    # A float array holds fractions of full intensity: it must read as the uint8 image it came from, not be divided
    # by 255 a second time (which made every float image black).
    image = random_plate_image(7)
    pixels = np.asarray(image)
    assert_same_readings(reader(pixels.astype(np.float32) / 255.0), reader(pixels))


def test_in_memory_images_are_named_by_their_place_in_the_call(reader):
    images = [random_plate_image(1), random_plate_image(2), np.zeros((2, 2, 3), dtype=np.uint8)]
    with pytest.raises(ValueError, match="image #2: image is 2x2"):
        reader(images, batch_size=2)


def big_png_header_only(path, width, height):
    """A valid PNG header of `width` x `height` pixels with one tiny IDAT: refusing it must not need decoding."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))
    return path


def test_huge_images_are_refused_from_the_header_with_the_file_named(tmp_path, reader):
    # 144 megapixels is past Pillow's bomb warning (89 MP): wrapped, the file named, nothing decoded.
    bomb = big_png_header_only(tmp_path / "bomb.png", 12_000, 12_000)
    with pytest.raises(ValueError, match=r"bomb.png.*decompression bomb"):
        reader(str(bomb))
    # 60 megapixels passes Pillow's check; the gate's own limit refuses it before decoding.
    large = big_png_header_only(tmp_path / "large.png", 10_000, 6_000)
    with pytest.raises(ValueError, match=r"large.png\): image is 10000x6000 = 60000000 pixels; at most"):
        reader(str(large))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"batch_size": -1}, r"`batch_size` must be a whole number >= 1"),
        ({"batch_size": 0}, r"`batch_size` must be a whole number >= 1"),
        ({"batch_size": 2.5}, r"`batch_size` must be a whole number >= 1"),
        ({"prompt": "x" * 100_000}, r"`prompt` has 100000 characters; at most 2000"),
        ({"prompt": "   "}, r"`prompt` must be a non-blank string"),
        ({"max_new_tokens": 0}, r"`max_new_tokens` must be a whole number in \[1, 1024\]"),
        ({"max_new_tokens": 10**6}, r"`max_new_tokens` must be a whole number in \[1, 1024\]"),
        ({"max_new_tokens": "8"}, r"`max_new_tokens` must be a whole number"),
        ({"num_views": 0}, r"`num_views` must be a whole number >= 1"),
        ({"num_views": 1.5}, r"`num_views` must be a whole number >= 1"),
        ({"generate_kwargs": "greedy"}, r"`generate_kwargs` must be a dict"),
    ],
)
def test_bad_call_arguments_are_refused_before_reading(reader, arguments, message):
    with pytest.raises(ValueError, match=message):
        reader([random_plate_image(1)], **arguments)
