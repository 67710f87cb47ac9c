"""One reader: `pipeline("image-to-text")`, the evaluation's `VisionLanguageRecognizer` and training's generation
evaluation read plates through `modeling_lpllm/plate_reading.py`, with the model's saved `max_new_tokens`."""

import os
import textwrap
from types import SimpleNamespace

import datasets
import pytest
import torch
from transformers import LogitsProcessorList, pipeline

from lpllm.evaluation.recognizers import VisionLanguageRecognizer, load_vision_language_recognizer
from lpllm.training.trainer import read_dataset
from modeling_lpllm import DEFAULT_MAX_NEW_TOKENS, build_offline_processor, plate_messages, read_plates
from modeling_lpllm.plate_reading import plate_reading_inputs, resolve_max_new_tokens, resolve_num_views
from modeling_lpllm.plate_views import ViewAveragingLogitsProcessor
from tiny_lpllm import random_plate_image, run_without_the_package, save_tiny_checkpoint


CPU = torch.device("cpu")
CROPS = [random_plate_image(seed, size=size) for seed, size in ((1, (94, 24)), (2, (160, 40)), (3, (40, 40)))]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_lpllm_reading")
    model, processor = save_tiny_checkpoint(directory, seed=3)
    return directory, model, processor


@pytest.mark.parametrize("num_views", [1, 3])
def test_pipeline_and_evaluation_reader_read_alike(checkpoint, num_views):
    directory, _, _ = checkpoint
    reader = pipeline("image-to-text", model=str(directory), trust_remote_code=True)
    recognizer = load_vision_language_recognizer(str(directory), CPU, num_views=num_views)
    from_pipeline = [result[0]["generated_text"] for result in reader(CROPS, batch_size=2, num_views=num_views)]
    assert recognizer.read([[crop] for crop in CROPS]) == from_pipeline
    assert recognizer.read([[CROPS[1]]]) == from_pipeline[1:2]


def test_a_multi_frame_sample_reads_alike_alone_and_in_a_batch(checkpoint):
    _, model, processor = checkpoint
    batch = [[CROPS[0]], [CROPS[1], CROPS[2]], [CROPS[2]]]
    for num_views, fusion in ((1, "late"), (3, "late"), (3, "joint")):
        together = read_plates(model, processor, batch, num_views=num_views, fusion=fusion)
        assert together == [
            read_plates(model, processor, [sample], num_views=num_views, fusion=fusion)[0] for sample in batch
        ]


def test_views_are_averaged_over_each_samples_rows(checkpoint):
    _, model, processor = checkpoint
    # Joint fusion: a sample's rows hold its frames' view v, v = 0..2, in one prompt; the plate is read from the
    # averaged next-token scores.
    frames = [CROPS[0], CROPS[2]]
    views = processor.plate_views(frames, 3)
    rows = [[views[view], views[3 + view]] for view in range(3)]
    prompt = processor.apply_chat_template(plate_messages(num_images=2), add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[i for row in rows for i in row], text=[prompt] * 3, padding=True, return_tensors="pt")
    averaging = LogitsProcessorList([ViewAveragingLogitsProcessor(3)])
    generated = model.generate(**inputs, do_sample=False, max_new_tokens=8, logits_processor=averaging)
    expected = processor.batch_decode(generated[:1, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert read_plates(model, processor, [frames], num_views=3, fusion="joint") == [expected[0].strip()]


def test_readers_without_max_new_tokens_use_the_models_generation_config(checkpoint, tmp_path):
    directory, model, processor = checkpoint
    assert model.generation_config.max_new_tokens == 8
    assert load_vision_language_recognizer(str(directory), CPU).max_new_tokens == 8
    assert load_vision_language_recognizer(str(directory), CPU, max_new_tokens=3).max_new_tokens == 3

    short_dir = tmp_path / "short"
    short_model, _ = save_tiny_checkpoint(short_dir, seed=3)
    short_model.generation_config.max_new_tokens = 2
    short_model.save_pretrained(short_dir)
    recognizer = load_vision_language_recognizer(str(short_dir), CPU)
    assert recognizer.max_new_tokens == 2 and recognizer.describe()["generation"]["max_new_tokens"] == 2
    readings = recognizer.read([[crop] for crop in CROPS])
    assert all(len(text) <= 2 for text in readings)
    assert readings == VisionLanguageRecognizer(model, processor, "same weights", CPU, max_new_tokens=2).read(
        [[crop] for crop in CROPS]
    )
    reader = pipeline("image-to-text", model=str(short_dir), trust_remote_code=True)
    assert [result[0]["generated_text"] for result in reader(CROPS)] == readings

    # Training's generation evaluation reads with the model's setting too.
    rows = datasets.Dataset.from_list(
        [
            {"images": [crop], "completion": [{"role": "assistant", "content": [{"type": "text", "text": "AB1"}]}]}
            for crop in CROPS
        ]
    )
    predictions, labels = read_dataset(short_model, processor, rows, batch_size=2, device=CPU)
    assert predictions == readings and labels == ["AB1"] * 3


def test_a_model_without_a_generation_length_reads_with_the_package_default():
    assert resolve_max_new_tokens(SimpleNamespace(max_new_tokens=None)) == DEFAULT_MAX_NEW_TOKENS
    assert resolve_max_new_tokens(SimpleNamespace(max_new_tokens=5)) == 5
    assert resolve_max_new_tokens(SimpleNamespace(max_new_tokens=5), 7) == 7


def test_a_processor_without_views_reads_one_view_and_refuses_more():
    stock = SimpleNamespace()
    assert resolve_num_views(stock) == 1
    with pytest.raises(ValueError, match="num_views=3 needs an LP-LLM processor"):
        resolve_num_views(stock, 3)
    with pytest.raises(ValueError, match="num_views"):
        resolve_num_views(SimpleNamespace(num_views=1, plate_views=None), 0)


def test_saved_checkpoint_reads_in_a_fresh_process_without_the_package(checkpoint, tmp_path):
    directory, _, _ = checkpoint
    assert {"plate_reading.py", "pipeline_lpllm.py", "plate_views.py"} <= set(os.listdir(directory))
    expected = [result[0]["generated_text"] for result in pipeline(
        "image-to-text", model=str(directory), trust_remote_code=True
    )(CROPS[:2], num_views=3)]
    for index, crop in enumerate(CROPS[:2]):
        crop.save(tmp_path / f"{index}.png")
    script = textwrap.dedent(
        """
        from transformers import LogitsProcessorList, pipeline
        reader = pipeline("image-to-text", model=sys.argv[1], trust_remote_code=True)
        print("|".join(result[0]["generated_text"] for result in reader(sys.argv[2:], num_views=3)))
        """
    )
    completed = run_without_the_package(
        script, directory, *(tmp_path / f"{index}.png" for index in range(2)), work_dir=tmp_path
    )
    assert completed.stdout.strip().splitlines()[-1] == "|".join(expected)


def test_prompts_must_match_the_batch_and_be_short_sentences():
    processor = build_offline_processor()
    batch = [[random_plate_image(1)], [random_plate_image(2)]]
    with pytest.raises(ValueError, match="`prompts` has 1 entries for 2 samples"):
        plate_reading_inputs(processor, batch, ["Read the license plate."])
    with pytest.raises(ValueError, match=r"`prompts\[1\]` has 3000 characters; at most 2000"):
        plate_reading_inputs(processor, batch, [None, "x" * 3000])
    with pytest.raises(ValueError, match=r"`generation_config.max_new_tokens` must be a whole number in \[1, 1024\]"):
        resolve_max_new_tokens(SimpleNamespace(max_new_tokens=10**6))
