"""PP-OCR's pretrained CTC head as extra visual features (`ppocr_ctc_classes`, `--ppocr_ctc_features`): the config's
checks, the features (the encoder's, then the head's log-probabilities of the kept classes), save/load in a fresh
process, loading and freezing the head with the encoder, and the class list built from a tokenizer charset."""

import json
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from lpllm.training.arguments import PlateTrainingArguments
from lpllm.training.model_setup import (
    load_model_and_processor,
    load_vision_weights,
    ppocr_ctc_classes,
    set_trainable_parameters,
)
from lpllm.training.ppocr_conversion import load_dictionary, save_recognizer
from modeling_lpllm import LPLLMConfig
from modeling_lpllm.configuration_lpllm import PPOCR_CTC_NUM_CLASSES
from modeling_lpllm.ppocr_recognizer import PPOCRRecognizer, PPOCRRecognizerConfig, ctc_greedy_decode
from modeling_lpllm.ppocr_vision import CTC_CHUNK_LOGITS
from test_modeling_lpllm import plate_inputs
from tiny_lpllm import TINY_MODEL_CONFIG, forward_in_a_fresh_process, random_plate_image, tiny_model, tiny_processor


# Every image read at 48x96 by the encoder (12 positions), as in test_modeling_ppocr.py.
PPOCR = {"vision_encoder": "ppocr", "ppocr_image_width": 96}
CLASSES = [0, 42, 33, 18709, 7]
NECK = PPOCRRecognizerConfig().neck_hidden_size


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


@pytest.fixture(scope="module")
def recognizer():
    torch.manual_seed(7)
    return PPOCRRecognizer().eval()


def fake_dictionary() -> list[str]:
    """A dictionary of the head's size: private-use fillers, a few plate characters at known places."""
    characters = [chr(0xF0000 + index) for index in range(PPOCR_CTC_NUM_CLASSES - 2)]
    for index, character in ((41, "A"), (32, "1"), (100, "B"), (5000, "京")):
        characters[index] = character
    return characters


@pytest.fixture
def weights_file(recognizer, tmp_path):
    path = tmp_path / "ppocr.safetensors"
    save_recognizer(recognizer, fake_dictionary(), path)
    return path


def image_inputs(processor):
    return plate_inputs(processor, [random_plate_image(1), random_plate_image(2, size=(160, 40))])


def features_and_neck(model, inputs):
    """The vision tower's features before the merger, and the encoder's outputs (one batch per image size)."""
    necks = []
    hook = model.model.visual.encoder.register_forward_hook(lambda module, args, output: necks.append(output))
    try:
        with torch.no_grad():
            output = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    finally:
        hook.remove()
    return output.last_hidden_state, necks


def pooled(sequences: torch.Tensor, inputs) -> torch.Tensor:
    """`(images, L, features)` pooled to each image's number of visual tokens, the images' tokens concatenated."""
    counts = (inputs["image_grid_thw"].prod(-1) // 4).tolist()
    return torch.cat([
        F.adaptive_avg_pool1d(sequence.T[None], count)[0].T for sequence, count in zip(sequences, counts)
    ])  # fmt: skip


class TestConfig:
    def test_off_by_default_and_the_head_size_is_the_recognizers(self):
        assert LPLLMConfig().ppocr_ctc_classes is None
        assert PPOCR_CTC_NUM_CLASSES == PPOCRRecognizerConfig().vocab_size

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"ppocr_ctc_classes": [0, 1]}, 'needs `vision_encoder="ppocr"`'),
            ({**PPOCR, "ppocr_ctc_classes": [0, PPOCR_CTC_NUM_CLASSES]}, r"class indices in \[0, 18710\)"),
            ({**PPOCR, "ppocr_ctc_classes": [0, -1]}, r"class indices in \[0, 18710\)"),
            ({**PPOCR, "ppocr_ctc_classes": [0, 5, 5]}, "names a class twice"),
            ({**PPOCR, "ppocr_ctc_classes": [5, 6]}, "must include the blank, class 0"),
            ({**PPOCR, "ppocr_ctc_classes": []}, "must include the blank, class 0"),
        ],
        ids=["qwen_tower", "too_large", "negative", "duplicate", "no_blank", "empty"],
    )
    def test_classes_that_cannot_work_are_refused_naming_the_field(self, overrides, message):
        with pytest.raises(ValueError, match=rf"`ppocr_ctc_classes`.*{message}"):
            LPLLMConfig(**overrides)


class TestFeatures:
    def test_without_classes_the_tower_is_the_encoders_features_pooled_and_merged(self, processor):
        model = tiny_model(processor, **PPOCR)
        visual = model.model.visual
        assert visual.head is None and visual.merger.linear_fc1.in_features == NECK
        assert not any(".visual.head." in name for name in model.state_dict())
        inputs = image_inputs(processor)
        features, necks = features_and_neck(model, inputs)
        torch.testing.assert_close(features, pooled(torch.cat(necks), inputs), rtol=0, atol=1e-6)

    def test_with_classes_the_heads_log_probabilities_of_those_classes_follow_the_encoders_features(self, processor):
        plain = tiny_model(processor, **PPOCR)
        model = tiny_model(processor, **PPOCR, ppocr_ctc_classes=CLASSES)
        visual = model.model.visual
        assert visual.merger.norm.normalized_shape == (NECK + len(CLASSES),)
        assert visual.merger.linear_fc1.in_features == NECK + len(CLASSES)
        assert tuple(visual.head.weight.shape) == (PPOCR_CTC_NUM_CLASSES, NECK)
        visual.encoder.load_state_dict(plain.model.visual.encoder.state_dict())
        inputs = image_inputs(processor)
        features, necks = features_and_neck(model, inputs)
        plain_features, _ = features_and_neck(plain, inputs)
        assert features.shape == (plain_features.shape[0], NECK + len(CLASSES))
        # The first columns are what the tower without the head gives.
        torch.testing.assert_close(features[:, :NECK], plain_features, rtol=0, atol=0)
        with torch.no_grad():
            log_probs = torch.cat([torch.log_softmax(visual.head(neck), dim=-1)[..., CLASSES] for neck in necks])
        torch.testing.assert_close(features[:, NECK:], pooled(log_probs, inputs), rtol=1e-5, atol=1e-5)
        assert (features[:, NECK:] <= 0).all()
        # The merger reads them: the visual tokens change with the head's weights.
        with torch.no_grad():
            before = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
            visual.head.bias[CLASSES[1]] += 5.0
            after = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
        assert not torch.allclose(before, after, atol=1e-4)


    def test_the_head_runs_in_chunks_of_rows_and_gives_the_whole_heads_log_softmax_and_gradients(self, processor):
        model = tiny_model(processor, **PPOCR, ppocr_ctc_classes=CLASSES)
        visual = model.model.visual
        torch.manual_seed(3)
        images = torch.rand(6, 3, 48, 96)  # 72 positions: more than one chunk, the last one partial
        weights = torch.randn(6, 12, NECK + len(CLASSES))

        def reference(images):
            features = visual.encoder(images)
            log_probs = F.log_softmax(visual.head(features).float(), dim=-1)[..., CLASSES]
            return torch.cat([features, log_probs.to(features.dtype)], dim=-1)

        def features_and_gradients(encode):
            model.zero_grad()
            features = encode(images)
            (features * weights).sum().backward()
            return features, {name: parameter.grad.clone() for name, parameter in visual.named_parameters()
                              if parameter.grad is not None}

        chunk_sizes = []
        hook = visual.head.register_forward_hook(lambda module, args, output: chunk_sizes.append(output.shape))
        try:
            features, gradients = features_and_gradients(visual.encode)
        finally:
            hook.remove()
        assert len(chunk_sizes) > 1
        assert all(rows * classes <= CTC_CHUNK_LOGITS for rows, classes in chunk_sizes)
        expected, expected_gradients = features_and_gradients(reference)
        torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)
        # The head and the encoder (trainable without `freeze_vision_encoder`) get the same gradients too.
        assert gradients.keys() == expected_gradients.keys()
        assert any(name.startswith("head.") for name in gradients)
        for name, gradient in gradients.items():
            torch.testing.assert_close(gradient, expected_gradients[name], rtol=1e-4, atol=1e-5, msg=name)


FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import torch
    from transformers import AutoModelForImageTextToText

    checkpoint, inputs_file, output_file = sys.argv[1:4]
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**torch.load(inputs_file)).logits
    visual = model.model.visual
    torch.save(
        {"classes": model.config.ppocr_ctc_classes, "head": visual.head.state_dict(), "logits": logits}, output_file
    )
    """
)


def test_save_and_load_in_a_fresh_process_keep_the_classes_and_the_head(processor, tmp_path):
    model = tiny_model(processor, **PPOCR, ppocr_ctc_classes=CLASSES)
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    assert json.loads((checkpoint / "config.json").read_text())["ppocr_ctc_classes"] == CLASSES
    inputs = dict(image_inputs(processor))
    expected, results = forward_in_a_fresh_process(FRESH_PROCESS_SCRIPT, model, inputs, checkpoint, tmp_path)
    assert results["classes"] == CLASSES
    for name, tensor in model.model.visual.head.state_dict().items():
        assert torch.equal(results["head"][name], tensor), name
    # The convolution kernels oneDNN picks may sum in another order in another process.
    torch.testing.assert_close(results["logits"], expected, rtol=1e-5, atol=1e-6)


class TestVisionWeights:
    def test_the_head_loads_from_the_recognizer_file_and_freezes_with_the_encoder(
        self, processor, recognizer, weights_file
    ):
        model = tiny_model(processor, **PPOCR, ppocr_ctc_classes=CLASSES).train()
        load_vision_weights(model, str(weights_file))
        visual = model.model.visual
        for name, tensor in recognizer.head.state_dict().items():
            assert torch.equal(visual.head.state_dict()[name], tensor), name
        for name, tensor in recognizer.encoder.state_dict().items():
            assert torch.equal(visual.encoder.state_dict()[name], tensor), name
        set_trainable_parameters(model, None, freeze_vision_encoder=True)
        trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        assert not any(".visual.head." in name or ".visual.encoder." in name for name in trainable)
        assert any(".visual.merger." in name for name in trainable)
        inputs = plate_inputs(processor, [random_plate_image(1)], answers=["AB12"])
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        assert visual.head.weight.grad is None and visual.merger.linear_fc1.weight.grad.abs().sum() > 0
        # Without freezing, the head trains with the encoder.
        set_trainable_parameters(model, None)
        assert visual.head.weight.requires_grad

    def test_a_file_without_the_head_is_refused_when_the_model_keeps_one(self, processor, recognizer, tmp_path):
        encoder_only = tmp_path / "encoder_only.safetensors"
        save_file({f"encoder.{name}": tensor for name, tensor in recognizer.encoder.state_dict().items()}, encoder_only)
        load_vision_weights(tiny_model(processor, **PPOCR), str(encoder_only))  # no head kept, none needed
        with pytest.raises(ValueError, match="encoder_only.safetensors does not hold the PP-OCRv6 small encoder and"):
            load_vision_weights(tiny_model(processor, **PPOCR, ppocr_ctc_classes=CLASSES), str(encoder_only))


class TestTrainingOption:
    def test_the_classes_are_the_blank_then_the_charsets_characters_the_dictionary_has(self):
        characters = ["x", "A", "y", "1", "A", "B"]  # a repeated character keeps its first class
        assert ppocr_ctc_classes(characters, "1AZB1") == [0, 4, 2, 6]
        # Class i + 1 is character i, as the greedy decoder reads the head's logits.
        logits = F.one_hot(torch.tensor([[4, 0, 2, 6]]), len(characters) + 2).float()
        assert ctc_greedy_decode(logits, characters) == ["1AB"]

    @pytest.fixture
    def config_file(self, tmp_path):
        path = tmp_path / "lpllm_tiny_ppocr.json"
        path.write_text(json.dumps({**json.loads(TINY_MODEL_CONFIG.read_text()), **PPOCR}))
        return path

    def test_a_from_scratch_model_keeps_the_files_head_for_the_charsets_classes(
        self, config_file, weights_file, recognizer
    ):
        assert load_dictionary(weights_file) == fake_dictionary()
        args = PlateTrainingArguments(vision_weights=str(weights_file), ppocr_ctc_features=True, charset="1AZ京B")
        model, processor = load_model_and_processor(str(config_file), args)
        assert model.config.ppocr_ctc_classes == [0, 33, 42, 5001, 101]
        assert torch.equal(model.model.visual.head.weight, recognizer.head.weight)
        assert set("1AZ京B") <= set(processor.tokenizer.get_vocab())

    def test_wrong_uses_are_refused_before_any_training(self, config_file, weights_file, recognizer, tmp_path):
        with pytest.raises(ValueError, match="`ppocr_ctc_features` keeps the CTC head .* set `vision_weights`"):
            PlateTrainingArguments(ppocr_ctc_features=True)
        args = PlateTrainingArguments(vision_weights=str(weights_file), ppocr_ctc_features=True)
        with pytest.raises(ValueError, match="`ppocr_ctc_features` sets the CTC classes of a from-scratch config"):
            load_model_and_processor(str(tmp_path), args)
        with_classes = tmp_path / "with_classes.json"
        with_classes.write_text(json.dumps({**json.loads(config_file.read_text()), "ppocr_ctc_classes": [0, 1]}))
        with pytest.raises(ValueError, match="with_classes.json sets `ppocr_ctc_classes`"):
            load_model_and_processor(str(with_classes), args)
        no_dictionary = tmp_path / "no_dictionary.safetensors"
        save_file(load_file(weights_file), no_dictionary)
        with pytest.raises(ValueError, match="no_dictionary.safetensors has no character dictionary"):
            load_model_and_processor(
                str(config_file), PlateTrainingArguments(vision_weights=str(no_dictionary), ppocr_ctc_features=True)
            )
        short = tmp_path / "short.safetensors"
        save_recognizer(recognizer, fake_dictionary()[:100], short)
        with pytest.raises(ValueError, match="short.safetensors: a dictionary of 100 characters"):
            load_model_and_processor(
                str(config_file), PlateTrainingArguments(vision_weights=str(short), ppocr_ctc_features=True)
            )
