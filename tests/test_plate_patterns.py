"""Plate patterns (`modeling_lpllm/plate_patterns.py`): the syntax, the region table the synthetic generator draws
from, and pattern-constrained decoding (`modeling_lpllm/plate_constraints.py`) with a character-level and a BPE
tokenizer."""

import hashlib
import logging
import string

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LogitsProcessorList, PreTrainedTokenizerFast

from dataset_scripts.regions import LAYOUTS, REGIONS
from dataset_scripts.synthetic.generate import SyntheticConfig, SyntheticSampleMaker
from modeling_lpllm import PlatePatternLogitsProcessor, matching_regions, parse_plate_pattern, resolve_patterns
from modeling_lpllm.plate_patterns import CN_ALNUM, CN_LETTERS, PLATE_LAYOUTS, REGION_PATTERNS, fits_pattern
from modeling_lpllm.plate_patterns import all_region_patterns
from modeling_lpllm.plate_reading import (
    AUTO_PROMOTION_FLOOR,
    generate_plate_outputs,
    plate_reading_inputs,
    rank_by_region,
)
from modeling_lpllm.tokenization_lpllm import CN_PROVINCES
from tiny_lpllm import random_plate_image, tiny_model, tiny_processor


L, D = string.ascii_uppercase, string.digits


def test_pattern_symbols_classes_and_separators():
    assert parse_plate_pattern("@@@#@##") == (L, L, L, D, L, D, D)
    assert parse_plate_pattern("*[A-C]x") == (L + D, "ABC", "x")
    assert parse_plate_pattern("[A-HJ-NP-Z]") == (CN_LETTERS,) and "I" not in CN_LETTERS and "O" not in CN_LETTERS
    assert parse_plate_pattern("[DFD@]") == ("DF@",)  # inside brackets every character is itself, once
    assert parse_plate_pattern("@@ ###-@@") == parse_plate_pattern("@@###@@")
    assert parse_plate_pattern("皖[AB]") == ("皖", "AB")


@pytest.mark.parametrize(
    "pattern, problem",
    [
        ("@@[AB", "never closed"),
        ("@@]", "closes no"),
        ("@[]#", "empty"),
        ("[Z-A]", "reversed"),
        ("[A-]", "'-'"),
        ("[[A]]", "nest"),
        ("", "no character"),
        (" - ", "no character"),
        ("@\t#", "not a plate character"),
        ("[A B]", "not a plate character"),
    ],
)
def test_bad_patterns_are_refused_naming_the_pattern(pattern, problem):
    with pytest.raises(ValueError, match=problem) as error:
        parse_plate_pattern(pattern)
    assert repr(pattern) in str(error.value)


def test_region_layouts_keep_their_positions():
    assert PLATE_LAYOUTS["br_mercosur"].pattern == "@@@#@##"
    assert LAYOUTS["br_mercosur"].positions == (L, L, L, D, L, D, D)
    assert LAYOUTS["cn_green_small"].positions == (CN_PROVINCES, CN_LETTERS, "DF", CN_ALNUM, D, D, D, D)
    assert CN_ALNUM == CN_LETTERS + D
    assert LAYOUTS["cn_yellow_two_row"].rows == (2, 5) and LAYOUTS["us_nlllnnn"].positions == (D, L, L, L, D, D, D)
    assert [layout.name for layout in REGIONS["AR"].layouts] == ["ar_old", "ar_mercosur"]
    assert list(REGION_PATTERNS) == ["CN", "BR", "AR", "EU", "US"]
    assert len(REGION_PATTERNS["CN"]) == 4  # cn_blue and cn_yellow_two_row are written alike


def test_synthetic_texts_are_drawn_as_before_the_table_moved():
    # The digest of these draws taken with the layout table still in dataset_scripts/regions.py.
    lines = []
    for name, layout in sorted(LAYOUTS.items()):
        rng = np.random.default_rng(0)
        lines += [name] + [layout.sample(rng) for _ in range(500)]
    maker = SyntheticSampleMaker(SyntheticConfig(num=500, free_text_fraction=0.3), fonts=None, seed=0)
    lines += [maker.plate_text(index) for index in range(500)]
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert digest == "065491258ce0f84c9ae44d8e31f4cfb0ff901ea4c70d9fcc0e1a953dc8dae085"


def test_resolve_patterns_and_matching_regions():
    assert resolve_patterns(" br ") == REGION_PATTERNS["BR"]
    extra = {"uz": ["##@###@@", "##[A-Z]###@@"], "BR": ["@@@#@##"]}
    assert resolve_patterns("UZ", extra) == (parse_plate_pattern("##@###@@"),)  # the two are written alike
    assert resolve_patterns("BR", extra) == (parse_plate_pattern("@@@#@##"),)  # a table region is replaced
    with pytest.raises(ValueError, match="known regions: CN, BR, AR, EU, US"):
        resolve_patterns("UZ")
    with pytest.raises(ValueError, match="'UZ'.*list of pattern strings"):
        resolve_patterns("UZ", {"UZ": "##@###@@"})
    with pytest.raises(ValueError, match=r"Region 'UZ': Plate pattern '##\[@': the '\[' at position 2 is never"):
        resolve_patterns("UZ", {"UZ": ["##[@"]})

    assert matching_regions("ABC1D23") == ["BR"]
    assert matching_regions("ABC-1234") == ["BR", "US"]
    assert matching_regions("AB123CD") == ["AR", "EU"]
    assert matching_regions("皖A12345") == ["CN"] and matching_regions("皖AD12345") == ["CN"]
    assert matching_regions("皖AI2345") == [] and matching_regions("ABC") == []
    table = {"UZ": resolve_patterns("UZ", extra), **REGION_PATTERNS}
    assert matching_regions("01A123BC", table) == ["UZ"]


@pytest.fixture(scope="module")
def tiny():
    processor = tiny_processor()
    return processor, tiny_model(processor)


def _read_constrained(model, processor, patterns, images, num_views=1, **generate_kwargs):
    inputs = plate_reading_inputs(processor, [[image] for image in images], None, num_views)
    constraint = PlatePatternLogitsProcessor(processor.tokenizer, patterns, model.generation_config.eos_token_id)
    outputs = generate_plate_outputs(
        model, processor, inputs, num_views, 10, logits_processor=LogitsProcessorList([constraint]), **generate_kwargs
    )
    return processor.batch_decode(outputs["sequences"], skip_special_tokens=True)


@pytest.mark.parametrize("patterns", [resolve_patterns("BR"), resolve_patterns("CN"), ["##[A-Z]###@@", "皖@####"]])
def test_constrained_greedy_reading_from_a_random_model_fits_a_pattern(tiny, patterns):
    processor, model = tiny
    # Sizes differ, so prompts hold different numbers of visual tokens and are left-padded.
    images = [random_plate_image(seed, size=(40 + 9 * seed, 16 + seed)) for seed in range(20)]
    texts = _read_constrained(model, processor, patterns, images)
    resolved = [parse_plate_pattern(p) if isinstance(p, str) else p for p in patterns]
    assert len(texts) == 20
    assert all(any(fits_pattern(text, positions) for positions in resolved) for text in texts), texts


def test_constrained_reading_with_beams_and_views(tiny):
    processor, model = tiny
    images = [random_plate_image(seed) for seed in range(3)]
    for kwargs in ({"num_views": 2}, {"num_beams": 3}, {"num_views": 2, "num_beams": 2}):
        texts = _read_constrained(model, processor, ["@@@#@##"], images, **kwargs)
        assert len(texts) == len(images) * kwargs.get("num_views", 1) * kwargs.get("num_beams", 1)  # every view, beam
        assert all(fits_pattern(text, parse_plate_pattern("@@@#@##")) for text in texts), (kwargs, texts)


def test_constraint_arguments_are_checked(tiny):
    tokenizer = tiny[0].tokenizer
    for patterns, problem in (([], "non-empty list"), ([("A", "")], "tuple of the characters"), ("[A", "never closed")):
        with pytest.raises(ValueError, match=problem):
            PlatePatternLogitsProcessor(tokenizer, patterns)
    with pytest.raises(ValueError, match="eos_token_id"):
        PlatePatternLogitsProcessor(tokenizer, "@@", eos_token_id=[])


def _tiny_bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer as Qwen3's: tokens of several characters, with a leading space ("Ġ"), of
    separators only, and the CJK character 沪 spelled only as bytes (皖 has a token)."""
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    cjk = ["".join(piece for piece, _ in level.pre_tokenize_str(char)) for char in "皖沪"]
    merged = ["AB", "12", "ĠX", "ĠAB", "A-", "Ġ-", "ĠĠ", "AB12", "ab", "Ċ", "X1Y2Z3W4", cjk[0], cjk[1][:2]]
    vocab = {token: index for index, token in enumerate(specials + sorted(byte_chars) + merged)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = level
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", clean_up_tokenization_spaces=False
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    return tokenizer


def _expected_allowed(tokenizer, prefix, patterns, eos_ids):
    """Brute force: the ids whose text, separators removed, extends `prefix` towards some pattern."""
    special = set(tokenizer.all_special_ids)
    allowed = set()
    for index in range(len(tokenizer)):
        piece = tokenizer.decode([index]).replace(" ", "").replace("-", "")
        text = prefix + piece
        if index in special or not piece:
            continue
        if any(len(text) <= len(p) and all(c in p[j] for j, c in enumerate(text)) for p in patterns):
            allowed.add(index)
    if any(fits_pattern(prefix, p) for p in patterns) or not allowed:
        allowed |= set(eos_ids)
    return allowed


def test_bpe_token_masks_match_a_brute_force_check(caplog):
    tokenizer = _tiny_bpe_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.get_vocab()}
    province = [index for index in range(len(tokenizer)) if tokenizer.decode([index]) == "皖"]
    eos = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    patterns = [parse_plate_pattern(p) for p in ("@@@#@##", "[皖沪]@##", "X###")]
    with caplog.at_level(logging.WARNING):
        constraint = PlatePatternLogitsProcessor(tokenizer, patterns, eos, prompt_length=2)
    assert "'沪'" in caplog.text  # spelled only with byte tokens that are not characters alone
    prompt = [tokenizer.convert_tokens_to_ids("<|im_start|>")] * 2
    rows = [[], [ids["AB"]], [ids["A-"], ids["AB"]], [ids["ĠX"], ids["12"]], [ids["AB"], ids["12"]]]
    rows += [province + [ids["A"], ids["12"]], [ids["AB"], tokenizer.eos_token_id]]
    width = len(tokenizer) + 5  # a model's embedding padded beyond the tokenizer
    length = max(map(len, rows))
    input_ids = torch.tensor([prompt + row + [0] * (length - len(row)) for row in rows])
    allowed_after = {}
    for cut in range(length + 1):
        live = [index for index, row in enumerate(rows) if len(row) == cut]
        if not live:
            continue
        scores = constraint(input_ids[live, : 2 + cut], torch.zeros(len(live), width))
        for position, index in enumerate(live):
            row = rows[index]
            allowed = set(torch.nonzero(scores[position].isfinite()).flatten().tolist())
            if tokenizer.eos_token_id in row:
                expected = set(eos)  # an ended row may only end
            else:
                prefix = tokenizer.decode(row).replace(" ", "").replace("-", "")
                expected = _expected_allowed(tokenizer, prefix, patterns, eos)
            assert allowed == expected, (tokenizer.decode(row), sorted(allowed ^ expected))
            allowed_after[tokenizer.decode(row)] = allowed
    start = allowed_after[""]
    assert {ids["AB"], ids["ĠX"], ids["A-"], ids["ĠAB"], province[0]} <= start
    assert not {ids["Ġ-"], ids["ĠĠ"], ids["AB12"], ids["ab"], ids["Ċ"], ids["<|im_start|>"], *eos} & start
    assert allowed_after["皖A12"] == set(eos)


def test_bpe_random_decoding_always_ends_with_a_pattern_text():
    tokenizer = _tiny_bpe_tokenizer()
    eos = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    patterns = ["@@@#@##", "X###", "皖@##"]
    constraint = PlatePatternLogitsProcessor(tokenizer, patterns, eos)
    generator = torch.Generator().manual_seed(0)
    rows, width = 64, len(tokenizer)
    input_ids = torch.full((rows, 3), tokenizer.pad_token_id)
    finished = torch.zeros(rows, dtype=torch.bool)
    for _ in range(10):
        scores = constraint(input_ids, torch.randn(rows, width, generator=generator) * 5)
        next_tokens = torch.where(finished, tokenizer.pad_token_id, scores.argmax(-1))
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=1)
        finished |= torch.isin(next_tokens, torch.tensor(eos))
    assert finished.all()
    texts = tokenizer.batch_decode(input_ids[:, 3:], skip_special_tokens=True)
    resolved = [parse_plate_pattern(p) for p in patterns]
    assert all(any(fits_pattern(text, positions) for positions in resolved) for text in texts), texts
    assert any(" " in text for text in texts) and len(set(texts)) > 10


def test_auto_ranking_promotes_a_fitting_candidate_only_above_its_share_of_the_best():
    table = all_region_patterns({"XA": ["@@"]})
    assert [matching_regions(text, table) for text in ("QQ", "Q1Q", "Q2Q")] == [["XA"], [], []]

    def reading(fitting_score):
        candidates = [
            {"text": "Q1Q", "score": 0.9}, {"text": "Q2Q", "score": 0.05}, {"text": "QQ", "score": fitting_score}
        ]
        return {**candidates[0], "candidates": candidates}

    above, below = AUTO_PROMOTION_FLOOR * 0.9 * 1.01, AUTO_PROMOTION_FLOOR * 0.9 * 0.99
    (promoted,) = rank_by_region([reading(above)], "auto", table)
    (kept,) = rank_by_region([reading(below)], "auto", table)
    assert promoted["text"] == "QQ" and [c["text"] for c in promoted["candidates"]] == ["QQ", "Q1Q", "Q2Q"]
    assert kept["text"] == "Q1Q" and [c["text"] for c in kept["candidates"]] == ["Q1Q", "Q2Q", "QQ"]
    # A region named outright prefers its fitting candidates however improbable; None keeps the model's order.
    assert rank_by_region([reading(below)], "XA", table)[0]["text"] == "QQ"
    assert rank_by_region([reading(above)], None, table)[0]["text"] == "Q1Q"
