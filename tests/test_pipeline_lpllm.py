"""pipeline("image-to-text") and pipeline("image-text-to-text") on a saved tiny LP-LLM checkpoint."""

import numpy as np
import pytest
from PIL import Image
from transformers import pipeline

from modeling_lpllm import plate_messages
from tiny_lpllm import random_plate_image, save_tiny_checkpoint


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
    assert isinstance(result, list) and list(result[0]) == ["generated_text"]
    # The saved generation config says max_new_tokens=8; the pipeline must use it.
    assert result[0]["generated_text"] == generate_directly(model, processor, image, max_new_tokens=8)


def test_batched_equals_one_by_one(reader):
    images = [random_plate_image(seed, size=size) for seed, size in ((1, (94, 24)), (2, (160, 40)), (3, (40, 40)))]
    batched = reader(images, batch_size=3)
    one_by_one = [reader(image) for image in images]
    assert batched == one_by_one
    assert reader(images, batch_size=2) == one_by_one


def test_accepts_paths_pil_images_and_numpy_arrays(tmp_path, reader):
    image = random_plate_image(4)
    path = tmp_path / "plate.png"
    image.save(path)
    expected = reader(image)
    assert reader(str(path)) == expected
    assert reader(path) == expected
    assert reader(np.asarray(image)) == expected
    gray = np.asarray(image.convert("L"))
    assert reader(gray) == reader(image.convert("L"))


def test_max_new_tokens_and_prompt_are_honoured(reader):
    image = random_plate_image(5)
    short = reader(image, max_new_tokens=2)[0]["generated_text"]
    assert len(short) <= 2
    assert reader(image, prompt="Plate?")[0]["generated_text"] is not None


@pytest.mark.parametrize(
    "bad_input, message",
    [
        ("/nonexistent/plate.png", "Cannot read the image file '/nonexistent/plate.png'"),
        (np.zeros((4, 4, 2), dtype=np.uint8), r"got shape \(4, 4, 2\)"),
        (np.zeros((4, 4, 3), dtype=np.float32), "must be uint8"),
        (42, "got int"),
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
    assert reader(rgba) == reader(Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB"))
