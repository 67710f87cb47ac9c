"""Reading a plate from several views of its crop: the views, the averaging, and the pipeline's `num_views`."""

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList, pipeline

from modeling_lpllm import plate_messages
from modeling_lpllm.plate_views import ViewAveragingLogitsProcessor, check_num_views, view_corner_shifts
from tiny_lpllm import assert_same_readings, random_plate_image, save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_lpllm_views")
    model, processor = save_tiny_checkpoint(directory, seed=5)
    return directory, model, processor


def test_view_zero_is_the_crop_and_views_do_not_depend_on_their_number():
    shifts = view_corner_shifts(5, (0.05, 0.2))
    assert shifts.shape == (5, 4, 2)
    assert not shifts[0].any() and shifts[1:].any()
    assert np.abs(shifts[..., 0]).max() <= 0.05 and np.abs(shifts[..., 1]).max() <= 0.2
    np.testing.assert_array_equal(view_corner_shifts(3, (0.05, 0.2)), shifts[:3])


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_num_views_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="num_views"):
        check_num_views(bad)


def test_averaging_gives_each_plate_the_renormalised_mean_log_probability_of_its_views():
    scores = torch.randn(6, 11)
    averaged = ViewAveragingLogitsProcessor(3)(None, scores)
    expected = torch.log_softmax(torch.log_softmax(scores, -1).view(2, 3, 11).mean(1), -1)
    torch.testing.assert_close(averaged[:3], expected[0].expand(3, -1))
    torch.testing.assert_close(averaged[3:], expected[1].expand(3, -1))
    torch.testing.assert_close(averaged.exp().sum(-1), torch.ones(6))
    with pytest.raises(ValueError, match="multiple of num_views=4"):
        ViewAveragingLogitsProcessor(4)(None, scores)


def test_averaging_with_beams_pairs_each_views_beam_with_the_same_beam_of_the_other_views():
    # rows: (plate, view, beam) in that order, as generate lays out beams of consecutive input rows
    scores = torch.randn(2 * 3 * 2, 11)
    averaged = ViewAveragingLogitsProcessor(3, num_beams=2)(None, scores).view(2, 3, 2, 11)
    grouped = torch.log_softmax(scores, -1).view(2, 3, 2, 11)
    for plate in range(2):
        for beam in range(2):
            expected = torch.log_softmax(grouped[plate, :, beam].mean(0), -1)
            for view in range(3):
                torch.testing.assert_close(averaged[plate, view, beam], expected)
    with pytest.raises(ValueError, match="num_beams=2"):
        ViewAveragingLogitsProcessor(3, num_beams=2)(None, torch.randn(9, 11))


def test_one_view_is_what_the_processor_prepares(checkpoint):
    _, _, processor = checkpoint
    image = random_plate_image(3)
    (view,) = processor.plate_views([image], 1)
    np.testing.assert_array_equal(view, np.asarray(processor.prepare_images(image)))
    views = processor.plate_views([image, random_plate_image(4)], 3)
    assert len(views) == 6 and all(v.dtype == np.uint8 and v.shape == views[0].shape for v in views[:3])
    assert not np.array_equal(views[0], views[1])


def test_the_processors_views_do_not_depend_on_their_number(checkpoint):
    # A track takes view j of a frame from that frame's first j + 1 views.
    _, _, processor = checkpoint
    image = random_plate_image(3)
    for made, expected in zip(processor.plate_views([image], 3), processor.plate_views([image], 5)):
        np.testing.assert_array_equal(made, expected)


def test_pipeline_reads_from_views_like_averaged_generation(checkpoint):
    directory, model, processor = checkpoint
    images = [random_plate_image(seed) for seed in (1, 2)]
    reader = pipeline("image-to-text", model=str(directory), trust_remote_code=True)
    plain = reader(images)
    assert_same_readings(reader(images, num_views=1), plain)

    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    views = processor.plate_views(images, 3)
    inputs = processor(images=views, text=[prompt] * len(views), padding=True, return_tensors="pt")
    averaging = LogitsProcessorList([ViewAveragingLogitsProcessor(3)])
    generated = model.generate(**inputs, do_sample=False, max_new_tokens=8, logits_processor=averaging)
    texts = processor.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert texts[0] == texts[1] == texts[2] and texts[3] == texts[4] == texts[5]
    readings = reader(images, num_views=3)
    assert [reading[0]["generated_text"] for reading in readings] == [texts[0].strip(), texts[3].strip()]
    with pytest.raises(ValueError, match="num_views"):
        reader(images, num_views=0)


def test_saved_processor_keeps_num_views(checkpoint, tmp_path):
    from transformers import AutoProcessor

    _, _, processor = checkpoint
    processor.num_views = 4
    try:
        processor.save_pretrained(tmp_path)
    finally:
        processor.num_views = 1
    assert AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True).num_views == 4


def test_baseline_views_vote_and_ties_go_to_the_crop_itself():
    from lpllm.baselines.recognizer import vote

    assert vote(["AB1", "AB7", "AB7", "AB1", "AB7"]) == "AB7"
    assert vote(["AB1", "AB7", "AB7", "AB1", "XX"]) == "AB1"
    assert vote(["AB1", "CD2", "EF3"]) == "AB1"
