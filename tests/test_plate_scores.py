"""Reading scores: plate and character scores are the model's probabilities (checked by teacher forcing), top-k
candidates are the k most probable readings of a hand-made distribution, the temperature and the score map move
scores and not readings, and the pipeline abstains below `min_score`."""

import math

import pytest
import torch
from transformers import LogitsProcessor, pipeline

from modeling_lpllm.plate_reading import read_plate_readings
from modeling_lpllm.plate_scores import check_score_map, map_plate_score, spell_with_scores
from tiny_lpllm import (
    assert_same_readings,
    random_plate_image,
    save_tiny_checkpoint,
    teacher_forced_step_log_probs,
    tiny_model,
    tiny_processor,
)


@pytest.fixture(scope="module")
def model_and_processor():
    processor = tiny_processor()
    return tiny_model(processor, seed=5).eval(), processor


def teacher_forced_log_probs(model, processor, image, tokens: list[int], temperature: float = 1.0) -> list[float]:
    """The log-probability of each of `tokens` after the plate prompt, at `temperature`, from one forward pass."""
    step_log_probs = torch.log_softmax(teacher_forced_step_log_probs(model, processor, image, tokens) / temperature, -1)
    return step_log_probs.gather(1, torch.tensor(tokens).unsqueeze(1)).squeeze(1).tolist()


def reading_tokens(processor, text: str) -> list[int]:
    return processor.tokenizer.encode(text, add_special_tokens=False) + [processor.tokenizer.eos_token_id]


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_score_and_char_scores_are_the_models_probabilities(model_and_processor, temperature):
    model, processor = model_and_processor
    processor.set_score_calibration(temperature)
    try:
        image = random_plate_image(3)
        (reading,) = read_plate_readings(model, processor, [[image]], max_new_tokens=12)
    finally:
        processor.set_score_calibration(1.0)
    tokens = reading_tokens(processor, reading["text"])
    expected = teacher_forced_log_probs(model, processor, image, tokens, temperature)
    assert reading["score"] == pytest.approx(math.exp(sum(expected)), rel=1e-4)
    assert len(reading["char_scores"]) == len(reading["text"]) > 0
    assert reading["char_scores"] == pytest.approx([math.exp(value) for value in expected[:-1]], rel=1e-4)
    # The plate score is never above its weakest character.
    assert reading["score"] <= min(reading["char_scores"])


def test_temperature_changes_scores_not_readings(model_and_processor):
    model, processor = model_and_processor
    images = [[random_plate_image(seed)] for seed in range(4)]
    plain = read_plate_readings(model, processor, images, max_new_tokens=10)
    processor.set_score_calibration(3.0, abstain_threshold=0.5)
    try:
        softened = read_plate_readings(model, processor, images, max_new_tokens=10)
    finally:
        processor.set_score_calibration(1.0)
    assert [reading["text"] for reading in softened] == [reading["text"] for reading in plain]
    # A random model's readings are improbable: a higher temperature flattens its distributions and lowers them more.
    assert all(soft["score"] < hard["score"] * 0.5 for soft, hard in zip(softened, plain))
    with pytest.raises(ValueError, match="score_temperature"):
        processor.set_score_calibration(0.0)
    with pytest.raises(ValueError, match="abstain_threshold"):
        processor.set_score_calibration(1.0, abstain_threshold=1.5)


def test_the_score_map_is_increasing_and_identity_at_1_1_0():
    scores = [1e-12, 0.01, 0.3, 0.5, 0.9, 0.999999, 1.0]
    assert [map_plate_score(score, (1.0, 1.0, 0.0)) for score in scores] == pytest.approx(scores, rel=1e-9)
    assert [map_plate_score(score, None) for score in scores] == scores
    mapped = [map_plate_score(score, (2.0, 0.5, 1.0)) for score in scores]
    assert all(0.0 <= value <= 1.0 for value in mapped)
    assert mapped == sorted(mapped) and len(set(mapped)) == len(mapped)
    for bad in [(1.0, 1.0), "abc", (1.0, -0.1, 0.0), (1.0, 1.0, float("nan")), (True, 1.0, 0.0)]:
        with pytest.raises(ValueError, match="score_map"):
            check_score_map(bad)


def test_score_map_maps_every_score_and_changes_no_reading_or_ranking(model_and_processor, tmp_path):
    model, processor = model_and_processor
    images = [[random_plate_image(seed)] for seed in range(3)]
    plain = read_plate_readings(model, processor, images, max_new_tokens=10, top_k=3, region=None)
    score_map = (1.7, 0.4, 2.0)
    processor.set_score_calibration(1.0, score_map=score_map)
    try:
        mapped = read_plate_readings(model, processor, images, max_new_tokens=10, top_k=3, region=None)
        processor.save_pretrained(tmp_path)
    finally:
        processor.set_score_calibration(1.0)
    assert processor.score_map is None
    for before, after in zip(plain, mapped):
        assert after["text"] == before["text"] and after["char_scores"] == before["char_scores"]
        assert after["score"] == pytest.approx(map_plate_score(before["score"], score_map), rel=1e-9)
        assert [c["text"] for c in after["candidates"]] == [c["text"] for c in before["candidates"]]
        assert [c["score"] for c in after["candidates"]] == pytest.approx(
            [map_plate_score(c["score"], score_map) for c in before["candidates"]], rel=1e-9
        )
    assert type(processor).from_pretrained(tmp_path).score_map == pytest.approx(list(score_map))
    with pytest.raises(ValueError, match="score_map"):
        processor.set_score_calibration(1.0, score_map=(1.0, 1.0))


class HandMadeDistribution(LogitsProcessor):
    """Replaces the model's next-token distribution with a fixed one over the tokens of "A", "B" and the end:
    first A 0.6, B 0.3, end 0.1; after A: end; after B: A 0.6, end 0.4; after BA: end. The readings and their
    probabilities are A 0.6, BA 0.18, B 0.12, "" 0.1: they sum to 1."""

    def __init__(self, tokenizer):
        self.a, self.b = tokenizer.convert_tokens_to_ids(["A", "B"])
        self.end = tokenizer.eos_token_id
        self.prompt_length = None

    def __call__(self, input_ids, scores):
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        table = {(): {self.a: 0.6, self.b: 0.3, self.end: 0.1}, (self.b,): {self.a: 0.6, self.end: 0.4}}
        result = torch.full_like(scores, -math.inf)
        for row, sequence in enumerate(input_ids[:, self.prompt_length :].tolist()):
            for token, probability in table.get(tuple(sequence), {self.end: 1.0}).items():
                result[row, token] = math.log(probability)
        return result


def test_top_k_candidates_are_the_most_probable_readings_with_their_probabilities(model_and_processor):
    model, processor = model_and_processor
    (reading,) = read_plate_readings(
        model, processor, [[random_plate_image(1)]], max_new_tokens=4, top_k=4,
        logits_processor=[HandMadeDistribution(processor.tokenizer)],
    )  # fmt: skip
    candidates = [(candidate["text"], candidate["score"]) for candidate in reading["candidates"]]
    assert [text for text, _ in candidates] == ["A", "BA", "B", ""]
    assert [score for _, score in candidates] == pytest.approx([0.6, 0.18, 0.12, 0.1], rel=1e-5)
    assert sum(score for _, score in candidates) == pytest.approx(1.0, rel=1e-5)
    assert reading["text"] == "A" and reading["score"] == pytest.approx(0.6, rel=1e-5)
    assert reading["candidates"][1]["char_scores"] == pytest.approx([0.3, 0.6], rel=1e-5)


def test_top_k_candidates_of_a_random_model_are_scored_by_teacher_forcing(model_and_processor):
    model, processor = model_and_processor
    image = random_plate_image(2)
    (reading,) = read_plate_readings(model, processor, [[image]], max_new_tokens=6, top_k=3)
    texts = [candidate["text"] for candidate in reading["candidates"]]
    assert len(texts) == len(set(texts)) == 3 and reading["text"] == texts[0]
    scores = [candidate["score"] for candidate in reading["candidates"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) <= 1.0
    for candidate in reading["candidates"]:
        tokens = processor.tokenizer.encode(candidate["text"], add_special_tokens=False)
        if len(tokens) < 6:  # a reading cut by max_new_tokens has no end token to score
            expected = teacher_forced_log_probs(model, processor, image, tokens + [processor.tokenizer.eos_token_id])
            assert candidate["score"] == pytest.approx(math.exp(sum(expected)), rel=1e-4)


def test_identical_views_read_and_score_like_one_view_with_beams(model_and_processor):
    """Views and beams share the batch; with every view the same crop, they must not mix plates or beams."""
    model, processor = model_and_processor
    images = [[random_plate_image(seed)] for seed in (6, 7)]
    one_view = read_plate_readings(model, processor, images, num_views=1, max_new_tokens=6, top_k=3)
    shift = processor.view_shift
    processor.view_shift = [0.0, 0.0]
    try:
        three_views = read_plate_readings(model, processor, images, num_views=3, max_new_tokens=6, top_k=3)
    finally:
        processor.view_shift = shift
    assert_same_readings(three_views, one_view)


def test_batched_readings_equal_one_by_one(model_and_processor):
    model, processor = model_and_processor
    images = [[random_plate_image(seed, size=size)] for seed, size in ((1, (94, 24)), (2, (160, 40)), (3, (40, 40)))]
    batched = read_plate_readings(model, processor, images, num_views=2, max_new_tokens=6, top_k=2)
    one_by_one = [read_plate_readings(model, processor, [image], num_views=2, max_new_tokens=6, top_k=2)[0]
                  for image in images]  # fmt: skip
    assert_same_readings(batched, one_by_one)


class SplittingTokenizer:
    """A byte-level tokenizer's behaviour in miniature: token 1 and 2 together write one character."""

    eos_token_id = 0

    def decode(self, tokens, skip_special_tokens=True):
        pieces = {0: "", 1: "\ufffd", 2: "", 3: "A", 4: " "}
        text = "".join(pieces[token] for token in tokens)
        if 1 in tokens and 2 in tokens:
            text = text.replace("\ufffd", "皖")
        return text


def test_a_character_written_by_several_tokens_gets_their_product_and_spaces_are_stripped():
    tokenizer = SplittingTokenizer()
    text, scores = spell_with_scores(tokenizer, [4, 1, 2, 3, 4, 0], [math.log(p) for p in (0.9, 0.5, 0.8, 0.7, 0.6, 1.0)])
    assert text == "皖A"
    assert scores == pytest.approx([0.4, 0.7])


def test_pipeline_returns_scores_candidates_and_abstains_below_min_score(tmp_path):
    model, processor = save_tiny_checkpoint(tmp_path, seed=2)
    reader = pipeline("image-to-text", model=str(tmp_path), trust_remote_code=True)
    image = random_plate_image(8)
    (plain,) = reader(image)
    (with_candidates,) = reader(image, top_k=3)
    assert len(with_candidates["candidates"]) == 3
    assert with_candidates["generated_text"] == with_candidates["candidates"][0]["text"]
    (accepted,) = reader(image, min_score=0.0)
    assert accepted["unreadable"] is False and accepted["generated_text"] == plain["generated_text"]
    (refused,) = reader(image, min_score=1.0)
    assert refused["unreadable"] is True and refused["generated_text"] == ""
    assert refused["rejected_text"] == plain["generated_text"] and refused["score"] == pytest.approx(plain["score"])
    with pytest.raises(ValueError, match="not calibrated"):
        reader(image, min_score="saved")
    with pytest.raises(ValueError, match="min_score"):
        reader(image, min_score=1.5)
    with pytest.raises(ValueError, match="top_k"):
        reader(image, top_k=0)
    # A saved threshold travels with the processor.
    processor.set_score_calibration(1.0, abstain_threshold=1.0)
    processor.save_pretrained(tmp_path)
    reloaded = pipeline("image-to-text", model=str(tmp_path), trust_remote_code=True)
    (saved_threshold,) = reloaded(image, min_score="saved")
    assert saved_threshold["unreadable"] is True


def test_candidates_fitting_the_region_come_first_and_nothing_is_forced(model_and_processor):
    model, processor = model_and_processor
    image = [[random_plate_image(1)]]
    hand_made = lambda: [HandMadeDistribution(processor.tokenizer)]  # noqa: E731 (a fresh one per generate call)
    processor.plate_patterns = {"XB": ["B"], "XA": ["@@"]}
    try:
        (by_model,) = read_plate_readings(model, processor, image, max_new_tokens=4, top_k=4, region=None,
                                          logits_processor=hand_made())  # fmt: skip
        (by_xb,) = read_plate_readings(model, processor, image, max_new_tokens=4, top_k=4, region="xb",
                                       logits_processor=hand_made())  # fmt: skip
        (by_any,) = read_plate_readings(model, processor, image, max_new_tokens=4, top_k=4, region="auto",
                                        logits_processor=hand_made())  # fmt: skip
    finally:
        processor.plate_patterns = None
    assert [candidate["text"] for candidate in by_model["candidates"]] == ["A", "BA", "B", ""]
    assert [candidate["regions"] for candidate in by_model["candidates"]] == [[], ["XA"], ["XB"], []]
    assert [candidate["text"] for candidate in by_xb["candidates"]] == ["B", "A", "BA", ""]
    assert by_xb["text"] == "B" and by_xb["score"] == pytest.approx(0.12, rel=1e-5) and by_xb["regions"] == ["XB"]
    assert [candidate["text"] for candidate in by_any["candidates"]] == ["BA", "B", "A", ""]
    with pytest.raises(ValueError, match="No plate patterns for region 'ZZ'"):
        read_plate_readings(model, processor, image, region="ZZ")
    with pytest.raises(ValueError, match="constrain"):
        read_plate_readings(model, processor, image, constrain=True)


@pytest.mark.parametrize("region", ["BR", "CN"])
def test_constrained_pipeline_readings_fit_the_region_with_views_and_beams(tmp_path, region):
    from modeling_lpllm.plate_patterns import REGION_PATTERNS, fits_pattern

    save_tiny_checkpoint(tmp_path, seed=4)
    reader = pipeline("image-to-text", model=str(tmp_path), trust_remote_code=True)
    images = [random_plate_image(seed) for seed in range(6)]
    for readings in (
        reader(images, region=region, constrain=True, max_new_tokens=10),
        reader(images, region=region, constrain=True, max_new_tokens=10, top_k=2, num_views=2),
    ):
        for (reading,) in readings:
            texts = [reading["generated_text"], *(c["text"] for c in reading.get("candidates", []))]
            assert all(any(fits_pattern(text, p) for p in REGION_PATTERNS[region]) for text in texts), texts
            assert region in reading["regions"]


def test_searched_beams_give_the_first_ranked_candidate_and_no_candidate_list(model_and_processor):
    model, processor = model_and_processor
    image = [[random_plate_image(1)]]
    hand_made = lambda: [HandMadeDistribution(processor.tokenizer)]  # noqa: E731 (a fresh one per generate call)
    processor.plate_patterns = {"XB": ["B"]}
    try:
        (greedy,) = read_plate_readings(model, processor, image, max_new_tokens=4, region="xb",
                                        logits_processor=hand_made())  # fmt: skip
        (searched,) = read_plate_readings(model, processor, image, max_new_tokens=4, region="xb", num_beams=4,
                                          logits_processor=hand_made())  # fmt: skip
        (listed,) = read_plate_readings(model, processor, image, max_new_tokens=4, region="xb", top_k=2, num_beams=4,
                                        logits_processor=hand_made())  # fmt: skip
        # The model's saved generation config decides when the caller does not.
        model.generation_config.num_beams = 4
        (saved,) = read_plate_readings(model, processor, image, max_new_tokens=4, region="xb",
                                       logits_processor=hand_made())  # fmt: skip
        (overridden,) = read_plate_readings(model, processor, image, max_new_tokens=4, region="xb", num_beams=1,
                                            logits_processor=hand_made())  # fmt: skip
    finally:
        processor.plate_patterns = None
        model.generation_config.num_beams = 1
    # Greedy writes the most probable first token, A, and nothing fits XB; four beams find B (0.12), which fits it.
    assert greedy["text"] == "A" and "candidates" not in greedy
    assert searched["text"] == saved["text"] == "B" and searched["score"] == pytest.approx(0.12, rel=1e-5)
    assert "candidates" not in searched and searched["regions"] == ["XB"]
    assert [candidate["text"] for candidate in listed["candidates"]] == ["B", "A"] and listed["text"] == "B"
    assert overridden == greedy
    with pytest.raises(ValueError, match="num_beams"):
        read_plate_readings(model, processor, image, num_beams=0)


def test_pipeline_reads_with_the_saved_number_of_beams(tmp_path):
    model, _ = save_tiny_checkpoint(tmp_path, seed=2)
    reader = pipeline("image-to-text", model=str(tmp_path), trust_remote_code=True)
    images = [random_plate_image(seed) for seed in range(4)]
    searched = reader(images, num_beams=3, region=None)
    by_score = [reading["candidates"][0] for (reading,) in reader(images, top_k=3, region=None)]
    assert [reading["generated_text"] for (reading,) in searched] == [candidate["text"] for candidate in by_score]
    assert all("candidates" not in reading for (reading,) in searched)
    model.generation_config.num_beams = 3
    model.generation_config.save_pretrained(tmp_path)
    saved = pipeline("image-to-text", model=str(tmp_path), trust_remote_code=True)(images, region=None)
    assert saved == searched
    with pytest.raises(ValueError, match="num_beams"):
        reader(images[0], num_beams=0)
    with pytest.raises(ValueError, match="`num_beams` cannot go to `model.generate` directly"):
        reader(images[0], generate_kwargs={"num_beams": 3})
