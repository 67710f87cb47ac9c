"""Reading a track (several frames of one plate) as one plate: late fusion averages the frames' next-token
log-probabilities, joint fusion reads all frames in one prompt; the pipeline, the evaluation's reader and batching."""

import math

import pytest
import torch
from transformers import pipeline

from lpllm.evaluation.recognizers import VisionLanguageRecognizer
from modeling_lpllm import plate_messages
from modeling_lpllm.plate_reading import (
    check_fusion,
    first_rows,
    generate_plate_outputs,
    late_fusion_rows,
    plate_reading_inputs,
    read_plate_readings,
    read_plates,
    reading_group_sizes,
)
from modeling_lpllm.plate_views import ViewAveragingLogitsProcessor
from tiny_lpllm import assert_same_readings, random_plate_image, save_tiny_checkpoint, teacher_forced_step_log_probs


CPU = torch.device("cpu")
FRAMES = [random_plate_image(seed, size=size) for seed, size in ((1, (94, 24)), (2, (160, 40)), (3, (40, 40)))]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_lpllm_tracks")
    model, processor = save_tiny_checkpoint(directory, seed=5)
    return directory, model, processor


@pytest.fixture(scope="module")
def reader(checkpoint):
    directory, _, _ = checkpoint
    return pipeline("image-to-text", model=str(directory), trust_remote_code=True)


def fused_score(model, processor, frames, tokens: list[int]) -> float:
    """exp(sum over steps of the taken token's log-probability under the frames' mean log-probabilities,
    renormalised): a late-fused track's score for the reading `tokens`, computed by hand."""
    steps = torch.stack([teacher_forced_step_log_probs(model, processor, frame, tokens) for frame in frames])
    fused = torch.log_softmax(steps.mean(dim=0), dim=-1)
    return math.exp(float(fused.gather(1, torch.tensor(tokens).unsqueeze(1)).sum()))


def reading_tokens(processor, text: str) -> list[int]:
    return processor.tokenizer.encode(text, add_special_tokens=False) + [processor.tokenizer.eos_token_id]


def test_a_tracks_views_are_spread_over_its_frames():
    # Every frame's crop first, then the frames' jitters in turn: max(V, F) rows.
    assert late_fusion_rows(1, 5) == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)]
    assert late_fusion_rows(3, 5) == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1)]
    assert late_fusion_rows(2, 5) == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]
    assert late_fusion_rows(5, 5) == [(frame, 0) for frame in range(5)]
    assert late_fusion_rows(7, 5) == late_fusion_rows(7, 1) == [(frame, 0) for frame in range(7)]


def test_group_sizes_first_rows_and_fusion_names():
    batch = [[FRAMES[0]], FRAMES, FRAMES[:2]]
    assert reading_group_sizes(batch, 1) == [1, 3, 2]
    assert reading_group_sizes(batch, 2, "late") == [2, 3, 2]
    assert reading_group_sizes(batch, 5, "late") == [5, 5, 5]
    assert reading_group_sizes(batch, 2, "joint") == [2, 2, 2]
    assert first_rows([2, 6, 4], 12) == [0, 2, 8] and first_rows(3, 9) == [0, 3, 6]
    with pytest.raises(ValueError, match="add up to 12 rows; the batch holds 10"):
        first_rows([2, 6, 4], 10)
    with pytest.raises(ValueError, match="`fusion` must be 'late'"):
        check_fusion("early")
    with pytest.raises(ValueError, match="Sample #1 of the batch"):
        reading_group_sizes([[FRAMES[0]], []])


def test_averaging_groups_of_different_sizes_with_beams():
    # rows: (plate, row of the plate, beam), plates of 1, 3 and 2 rows, 2 beams each
    sizes, beams, vocab = [1, 3, 2], 2, 11
    scores = torch.randn(sum(sizes) * beams, vocab)
    averaged = ViewAveragingLogitsProcessor(sizes, num_beams=beams)(None, scores).view(-1, beams, vocab)
    log_probs = torch.log_softmax(scores, -1).view(-1, beams, vocab)
    for first, size in zip(first_rows(sizes, sum(sizes)), sizes):
        for beam in range(beams):
            expected = torch.log_softmax(log_probs[first : first + size, beam].mean(0), -1)
            for row in range(first, first + size):
                torch.testing.assert_close(averaged[row, beam], expected)
    # Equal sizes given as a list average as the fixed number of views does.
    torch.testing.assert_close(
        ViewAveragingLogitsProcessor([3, 3], num_beams=2)(None, scores),
        ViewAveragingLogitsProcessor(3, num_beams=2)(None, scores),
    )
    with pytest.raises(ValueError, match=r"sum\(group_sizes\)=6 x num_beams=1"):
        ViewAveragingLogitsProcessor(sizes)(None, scores)
    with pytest.raises(ValueError, match=r"group_sizes\[1\]"):
        ViewAveragingLogitsProcessor([2, 0])


@pytest.mark.parametrize("num_frames, num_views, top_k", [(3, 1, 1), (3, 1, 3), (5, 1, 1), (1, 5, 1), (1, 5, 3)])
def test_a_track_of_identical_frames_reads_as_the_single_frame(checkpoint, num_frames, num_views, top_k):
    # Averaging F copies of one distribution gives that distribution back: the same reading and scores.
    _, model, processor = checkpoint
    frame = FRAMES[0]
    single = read_plate_readings(model, processor, [[frame]], num_views=num_views, max_new_tokens=6, top_k=top_k)
    track = read_plate_readings(
        model, processor, [[frame] * num_frames], num_views=num_views, max_new_tokens=6, top_k=top_k
    )
    assert_same_readings(track, single, rtol=1e-5)
    assert len(track[0].get("candidates", [track[0]])) == top_k


def test_a_track_of_fewer_frames_than_views_reads_every_crop_then_the_jitters_in_turn(checkpoint):
    _, _, processor = checkpoint
    frames = FRAMES[:2]
    inputs = plate_reading_inputs(processor, [frames], num_views=5)
    views = [processor.plate_views([frame], 5) for frame in frames]
    prompt = processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    expected = processor(
        images=[views[row % 2][row // 2] for row in range(5)], text=[prompt] * 5, padding=True, padding_side="left",
        return_tensors="pt",
    )
    assert reading_group_sizes([frames], 5) == [inputs["input_ids"].shape[0]] == [5]
    for key in ("input_ids", "pixel_values", "image_grid_thw"):
        torch.testing.assert_close(inputs[key], expected[key], rtol=0, atol=0)


@pytest.mark.parametrize("top_k", [1, 3])
def test_a_track_of_more_frames_than_views_reads_each_frame_once_from_its_crop(checkpoint, top_k):
    _, model, processor = checkpoint
    track = [*FRAMES, FRAMES[1].transpose(0)]  # four different frames
    assert reading_group_sizes([track], 2) == reading_group_sizes([track], 1) == [4]
    assert plate_reading_inputs(processor, [track], num_views=2)["input_ids"].shape[0] == 4
    two_views = read_plate_readings(model, processor, [track], num_views=2, max_new_tokens=6, top_k=top_k)
    one_view = read_plate_readings(model, processor, [track], num_views=1, max_new_tokens=6, top_k=top_k)
    assert_same_readings(two_views, one_view, rtol=1e-5)


def test_batched_tracks_of_different_lengths_equal_one_by_one(checkpoint):
    _, model, processor = checkpoint
    # Tracks of fewer, as many and more frames than views, and a single crop.
    batch = [FRAMES, [FRAMES[1]], FRAMES[:2][::-1], [FRAMES[2], FRAMES[0]], [*FRAMES, FRAMES[0]]]
    for num_views, top_k in ((1, 1), (2, 2), (3, 1), (3, 3)):
        together = read_plate_readings(model, processor, batch, num_views=num_views, max_new_tokens=6, top_k=top_k)
        alone = [
            read_plate_readings(model, processor, [track], num_views=num_views, max_new_tokens=6, top_k=top_k)[0]
            for track in batch
        ]
        assert_same_readings(together, alone)
        assert all(len(reading.get("candidates", [reading])) == top_k for reading in together)


def test_a_tracks_score_is_the_product_of_its_frames_renormalised_mean_probabilities(checkpoint):
    _, model, processor = checkpoint
    (reading,) = read_plate_readings(model, processor, [FRAMES], max_new_tokens=6)
    # The generated tokens themselves: a random model's reading may be cut by max_new_tokens before its end token.
    inputs = plate_reading_inputs(processor, [FRAMES])
    outputs = generate_plate_outputs(model, processor, inputs, reading_group_sizes([FRAMES]), max_new_tokens=6)
    end = processor.tokenizer.eos_token_id
    tokens = outputs["sequences"][0].tolist()
    tokens = tokens[: tokens.index(end) + 1] if end in tokens else tokens
    assert processor.tokenizer.decode(tokens, skip_special_tokens=True).strip() == reading["text"]
    assert reading["score"] == pytest.approx(fused_score(model, processor, FRAMES, tokens), rel=1e-4)
    # The fused score is not any single frame's.
    alone = [fused_score(model, processor, [frame], tokens) for frame in FRAMES]
    assert all(not math.isclose(score, reading["score"], rel_tol=1e-3) for score in alone)


def test_a_tracks_beam_candidates_are_scored_by_the_fused_distribution(checkpoint):
    _, model, processor = checkpoint
    frames = FRAMES[:2]
    (reading,) = read_plate_readings(model, processor, [frames], max_new_tokens=6, top_k=3)
    texts = [candidate["text"] for candidate in reading["candidates"]]
    assert len(set(texts)) == 3 and reading["text"] == texts[0]
    ended = [
        candidate for candidate in reading["candidates"]
        if len(processor.tokenizer.encode(candidate["text"], add_special_tokens=False)) < 6
    ]
    assert ended  # candidates that ended before max_new_tokens, scored in full
    for candidate in ended:
        expected = fused_score(model, processor, frames, reading_tokens(processor, candidate["text"]))
        assert candidate["score"] == pytest.approx(expected, rel=1e-4)


def test_joint_fusion_reads_all_frames_in_one_prompt(checkpoint):
    _, model, processor = checkpoint
    frames = [FRAMES[0], FRAMES[2]]
    joint = plate_reading_inputs(processor, [frames], fusion="joint")
    late = plate_reading_inputs(processor, [frames])
    assert joint["input_ids"].shape[0] == 1 and joint["image_grid_thw"].shape[0] == 2
    assert late["input_ids"].shape[0] == 2 and late["image_grid_thw"].shape[0] == 2

    prompt = processor.apply_chat_template(plate_messages(num_images=2), add_generation_prompt=True, tokenize=False)
    inputs = processor(images=frames, text=[prompt], return_tensors="pt")
    torch.testing.assert_close(joint["input_ids"], inputs["input_ids"])
    generated = model.generate(**inputs, do_sample=False, max_new_tokens=8)
    expected = processor.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert read_plates(model, processor, [frames], fusion="joint") == [expected[0].strip()]
    assert read_plates(model, processor, [frames]) != [expected[0].strip()]  # this model reads the two apart


def test_pipeline_reads_tracks_and_single_images_in_one_call(checkpoint, reader):
    _, model, processor = checkpoint
    tracks = [FRAMES, FRAMES[1], (FRAMES[2], FRAMES[0])]
    results = reader(tracks, batch_size=2)
    expected = read_plate_readings(model, processor, [FRAMES, [FRAMES[1]], [FRAMES[2], FRAMES[0]]])
    assert [result[0]["generated_text"] for result in results] == [reading["text"] for reading in expected]
    assert [result[0]["score"] for result in results] == pytest.approx([reading["score"] for reading in expected])
    assert_same_readings(results[1], reader(FRAMES[1]))
    assert_same_readings(reader([[FRAMES[0]] * 2]), [reader(FRAMES[0])])
    (joint,) = reader([FRAMES[:2]], fusion="joint")
    assert joint[0]["generated_text"] == read_plates(model, processor, [FRAMES[:2]], fusion="joint")[0]
    with pytest.raises(ValueError, match="`fusion` must be"):
        reader([FRAMES[:2]], fusion="early")


def test_a_bad_frame_is_named_by_its_track_and_place(tmp_path, reader):
    good = tmp_path / "good.png"
    FRAMES[0].save(good)
    with pytest.raises(ValueError, match=r"image #1 frame #1 \(/nonexistent/frame\.png\): no such file"):
        reader([[good], [FRAMES[1], "/nonexistent/frame.png"]])
    with pytest.raises(ValueError, match="image #0 frame #2: image is 1x1"):
        reader([[FRAMES[0], FRAMES[1], FRAMES[0].resize((1, 1))]])
    with pytest.raises(ValueError, match="image #1: an empty track"):
        reader([FRAMES[0], []])


def test_the_evaluation_reader_reads_multi_frame_samples_by_late_fusion_by_default(checkpoint):
    _, model, processor = checkpoint
    batch = [FRAMES, [FRAMES[1]]]
    late = VisionLanguageRecognizer(model, processor, "tiny", CPU)
    joint = VisionLanguageRecognizer(model, processor, "tiny", CPU, fusion="joint")
    assert late.fusion == "late" and late.describe()["generation"]["fusion"] == "late"
    assert_same_readings(late.read_scored(batch), read_plate_readings(model, processor, batch, fusion="late"))
    assert joint.read(batch) == read_plates(model, processor, batch, fusion="joint")
    with pytest.raises(ValueError, match="`fusion` must be"):
        VisionLanguageRecognizer(model, processor, "tiny", CPU, fusion="mean")
